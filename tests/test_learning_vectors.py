"""Agents on state vectors (the test tasks' ``observation: states``) must clearly beat a random policy
within a few minutes of one core: DreamerV3 with its symlog MLP encoder and symlog-squared decoder on
catch, the value-based learner with Dopamine's classic-control network on catch, and state-based SAC
(pytorch_sac) on reach. Each config says what it changes from its reference and why."""

from pathlib import Path

import pytest
import yaml
from test_learning import final_eval_return, random_policy_return

from worldmodels.envs import EnvConfig

# (agent, config, margin over the random policy's return, task): tests/configs/learning_runs.yaml.
# A random policy scores about -0.77 on catch (100 evaluation games: a margin of 0.4 is about four
# standard errors) and about -33 on reach (a solved policy about -8; 100 games, a standard error of
# about 1.5). Measured final evaluations, seeds 0 / 1 / 2 (tools/learning_seeds.py --seeds 0 1 2):
#   DreamerV3 on catch states  0.68 / 0.68 / 0.56   (random -0.77, pass mark -0.37; about 5 minutes of one core)
#   DQN on catch states        0.82 / 0.64 / 0.74   (random -0.77, pass mark -0.37; about 40 s)
#   SAC on reach states       -2.69 / -2.42 / -2.37 (random about -33, pass mark about -23; about 60 s)
MINUTES = {"DreamerV3": 5, "DQN": 1, "SAC": 2}  # of one core: the suite runs the dearest first
RUNS = [pytest.param(*run, id=run[0], marks=pytest.mark.learning(minutes=MINUTES[run[0]]))
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
