"""Agents must clearly beat a random policy on the small test tasks within minutes on 2 cores."""

import csv
import os

import numpy as np
import pytest

from worldmodels.envs import EnvConfig, make_env

pytestmark = pytest.mark.learning


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


def final_eval_return(run_dir) -> float:
    rows = list(csv.DictReader(open(run_dir / "csv" / "metrics.csv")))
    return float([r for r in rows if r.get("eval/return_mean")][-1]["eval/return_mean"])


def test_nddqn_learns_catch(fit, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    done = fit("--config", "tests/configs/nddqn_catch.yaml", "--run_dir", str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr[-3000:]
    random = random_policy_return(EnvConfig("test", "catch", image_size=44, grayscale=True))
    learned = final_eval_return(tmp_path / "run")
    print(f"NDDQN on catch: {learned:.2f}, random policy: {random:.2f}")
    assert random < -0.4  # catch's random policy misses most balls
    assert learned > random + 0.6, f"NDDQN scored {learned:.2f} against random {random:.2f}"
