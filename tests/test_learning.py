"""Agents must clearly beat a random policy on the small test tasks within minutes on 2 cores."""

import csv
import os

import numpy as np
import pytest

from worldmodels.envs import EnvConfig, make_env

pytestmark = pytest.mark.learning(minutes=2.5)


def random_policy_return(cfg: EnvConfig, episodes: int = 300) -> float:
    env = make_env(cfg, seed=123, training=False)
    scores = []
    for i in range(episodes):
        env.reset(seed=123 + i)
        score, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            score, done = score + reward, terminated or truncated
        scores.append(score)
    return float(np.mean(scores))


def logged(run_dir, key: str) -> list[float]:
    """Every value of ``key`` in the run's metrics CSV, in logging order."""
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        return [float(r[key]) for r in csv.DictReader(f) if r.get(key)]


def final_eval_return(run_dir) -> float:
    return logged(run_dir, "eval/return_mean")[-1]


def dreamer_learning_run(fit, run_dir, config: str, env: EnvConfig, timeout: int):
    """Train DreamerV3 with ``config`` into ``run_dir``; return (final evaluation return, the random
    policy's return on ``env``, logged image losses, logged reward losses), printed as well."""
    done = fit("--config", config, "--run_dir", str(run_dir), timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    image, reward = logged(run_dir, "wm/image_loss"), logged(run_dir, "wm/reward_loss")
    random, learned = random_policy_return(env), final_eval_return(run_dir)
    print(f"DreamerV3 on {env.task}: {learned:.2f}, random policy: {random:.2f}; image loss {image[0]:.1f} -> "
          f"{image[-1]:.1f}, reward loss {reward[0]:.3f} -> {reward[-1]:.3f}")
    return learned, random, image, reward


# The value-based learner's published presets (configs/*_atari.yaml) on catch.
DISCRETE_AGENTS = {
    "DQN": ["--config", "tests/configs/dqn_catch.yaml"],
    "NDDQN": [],
    "DrQ(eps)": ["--model.init_args.augment", "true", "--model.init_args.epsilon_train", "0.01",
                 "--model.init_args.epsilon_eval", "0.001"],
    "DER": ["--config", "tests/configs/der_catch.yaml"],
    "A-LIX-Atari": ["--config", "tests/configs/alix_atari_catch.yaml"],
}


@pytest.mark.parametrize("agent", [pytest.param(name, marks=pytest.mark.learning(minutes=3.5)) if name == "A-LIX-Atari"
                                   else name for name in DISCRETE_AGENTS])
def test_discrete_agents_learn_catch(fit, tmp_path, monkeypatch, agent):
    """The Atari agents with their published settings on catch, 3000 env steps; 100 evaluation
    games, so a margin of 0.4 over random is about four standard errors."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    done = fit("--config", "tests/configs/nddqn_catch.yaml", *DISCRETE_AGENTS[agent], "--run_dir", str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr[-3000:]
    random = random_policy_return(EnvConfig("test", "catch", image_size=44, grayscale=True))
    learned = final_eval_return(tmp_path / "run")
    print(f"{agent} on catch: {learned:.2f}, random policy: {random:.2f}")
    assert random < -0.4  # catch's random policy misses most balls
    assert learned > random + 0.4, f"{agent} scored {learned:.2f} against random {random:.2f}"


@pytest.mark.learning(minutes=6)
def test_dreamer_learns_catch_and_its_world_model_the_images_and_rewards(fit, tmp_path, monkeypatch):
    """DreamerV3 (2023 algorithm, a small model: tests/configs/dreamer_catch.yaml) on catch, 4000 env
    steps: the world model's image and reward losses must halve, and the policy beat random by 0.4
    (30 evaluation games: about three standard errors)."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    learned, random, image, reward = dreamer_learning_run(fit, tmp_path / "run", "tests/configs/dreamer_catch.yaml",
                                                          EnvConfig("test", "catch", image_size=32, grayscale=False),
                                                          timeout=1200)
    assert np.mean(image[-3:]) < 0.5 * np.mean(image[:3])
    assert np.mean(reward[-3:]) < 0.5 * np.mean(reward[:3])
    assert learned > random + 0.4, f"DreamerV3 scored {learned:.2f} against random {random:.2f}"
