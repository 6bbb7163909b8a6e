"""Agents on state vectors (the test tasks' ``observation: states``) must clearly beat a random policy
within a few minutes of one core: DreamerV3 with its symlog MLP encoder and symlog-squared decoder on
catch, the value-based learner with Dopamine's classic-control network on catch, and state-based SAC
(pytorch_sac) on reach. Each config says what it changes from its reference and why.

DreamerV3's policy needs as many env steps on catch's states as on its pixels (5000, about 5.5 minutes
of one core), and the actor and critic are the same code either way; so the default suite checks the
part that differs, the vector encoder and decoder, on a shorter run, and the policy run is opt-in
(``pytest -m long``)."""

from pathlib import Path

import numpy as np
import pytest
import yaml
from test_learning import final_eval_return, logged, random_policy_return, trivial_world_model_losses

from worldmodels.envs import EnvConfig

# (agent, config, margin over the random policy's return, task): tests/configs/learning_runs.yaml.
# A random policy scores about -0.77 on catch (100 evaluation games: a margin of 0.4 is about four
# standard errors) and about -33 on reach (a solved policy about -8; 100 games, a standard error of
# about 1.5). Measured final evaluations, seeds 0 / 1 / 2 (tools/learning_seeds.py --seeds 0 1 2):
#   DreamerV3 on catch states  0.68 / 0.68 / 0.56   (random -0.77, pass mark -0.37; about 5.5 minutes
#                                                    of one core; opt-in: pytest -m long)
#   DQN on catch states        0.82 / 0.64 / 0.74   (random -0.77, pass mark -0.37; about 40 s)
#   SAC on reach states       -2.69 / -2.42 / -2.37 (random about -33, pass mark about -23; about 60 s)
MINUTES = {"DreamerV3": 5, "DQN": 1, "SAC": 2}  # of one core: the suite runs the dearest first
OPT_IN = {"DreamerV3"}  # pytest -m long
RUNS = [pytest.param(*run, id=run[0], marks=[pytest.mark.learning(minutes=MINUTES[run[0]])]
                     + ([pytest.mark.long] if run[0] in OPT_IN else []))
        for run in yaml.safe_load((Path(__file__).parent / "configs" / "learning_runs.yaml").read_text())["vectors"]]


@pytest.mark.parametrize("agent, config, margin, task", RUNS)
def test_agents_on_state_vectors_beat_a_random_policy(agent, config, margin, task, fit, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    done = fit("--config", config, "--run_dir", str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr[-3000:]
    random = random_policy_return(EnvConfig("test", task, observation="states"))
    learned = final_eval_return(tmp_path / "run")
    print(f"{agent} on {task} states: {learned:.2f}, random policy: {random:.2f}")
    assert learned > random + margin, f"{agent} scored {learned:.2f} against random {random:.2f}"


@pytest.mark.learning(minutes=2)
def test_dreamer_world_model_learns_catch_states_and_rewards(fit, tmp_path, monkeypatch):
    """DreamerV3's world model with its vector encoder and decoder (tests/configs/dreamer_catch_states.yaml)
    on catch's states, 2000 env steps (750 updates, about 2 minutes of one core; the policy is still
    random there, hence no evaluation but the run's last, of 10 games). Against the predictors that ignore
    the state, on the run's own replay: the state loss (symlog-squared error, summed over the 24 values)
    must end below 0.6 of the mean state's, the reward loss below half the best constant reward
    distribution's. A decoder that learns only the mean state stays at about 1.0 of it. Measured, seeds
    0 / 1 / 2 (mean of the last 3 logged): state loss 0.34 / 0.29 / 0.35 of the mean state's (about
    1.25), reward loss 0.13 / 0.12 / 0.13 against the constant prediction's 0.56."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    run = tmp_path / "run"
    done = fit("--config", "tests/configs/dreamer_catch_states.yaml", "--data.total_env_steps", "2000",
               "--evaluation.every_env_steps", "1000000", "--evaluation.episodes", "10", "--run_dir", str(run))
    assert done.returncode == 0, done.stderr[-3000:]
    state, reward = logged(run, "wm/vector_loss"), logged(run, "wm/reward_loss")
    trivial_state, trivial_reward = trivial_world_model_losses(run)
    print(f"DreamerV3 on catch states: state loss {np.mean(state[-3:]):.3f} (mean state's {trivial_state:.3f}), "
          f"reward loss {np.mean(reward[-3:]):.3f} (constant's {trivial_reward:.3f})")
    assert np.mean(state[-3:]) < 0.6 * trivial_state, (state[-3:], trivial_state)
    assert np.mean(reward[-3:]) < 0.5 * trivial_reward, (reward[-3:], trivial_reward)
