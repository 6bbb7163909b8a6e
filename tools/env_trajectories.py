"""Does a change to worldmodels/envs keep every preset's frames, rewards and flags? Play a few hundred steps
of fixed, seeded actions on each preset with the working tree and with a git revision, and compare.

    OMP_NUM_THREADS=1 python tools/env_trajectories.py --baseline HEAD~3
    OMP_NUM_THREADS=1 python tools/env_trajectories.py            # this tree's digests only

Each preset plays ``--steps`` agent steps from ``reset(seed=0)``, with actions drawn from
``numpy.random.default_rng(0)`` and a reset after each terminated or truncated step; it hashes every
observation's bytes, shape and dtype, every reward, the terminated and truncated flags and each finished
game's statistics (``info["episode"]``). The revision is checked out in a temporary ``git worktree`` and
imported by a process of its own. Prints one line per preset (``equal`` or ``DIFFERENT``); exits 1 if any
preset differs. A digest is no test value: MuJoCo's pixels depend on the renderer of the machine, so
only two trees on one machine compare.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (name, EnvConfig keyword arguments): each preset family the envs package makes.
PRESETS = [
    ("pong dqn", dict(suite="atari", task="pong", preset="dqn")),
    ("breakout world_model", dict(suite="atari", task="breakout", preset="world_model")),
    ("walker-walk dmc_model_free", dict(suite="dmc", task="walker-walk", preset="dmc_model_free")),
    ("cartpole-swingup dmc_world_model", dict(suite="dmc", task="cartpole-swingup", preset="dmc_world_model")),
    ("catch gray stack 2", dict(suite="test", task="catch", image_size=16, grayscale=True, frame_stack=2)),
    ("reach rgb", dict(suite="test", task="reach", image_size=24)),
    ("reach_sparse zero-padded stack 3", dict(suite="test", task="reach_sparse", image_size=32, frame_stack=3,
                                              stack_padding="zero")),
]


def digest(kwargs: dict, steps: int, training: bool) -> str:
    """The hash of ``steps`` seeded steps of the environment ``kwargs`` describes, with this tree's package."""
    import numpy as np

    from worldmodels.envs import EnvConfig, make_env

    env = make_env(EnvConfig(**kwargs), seed=0, training=training)
    rng, sha = np.random.default_rng(0), hashlib.sha256()

    def add_obs(obs):
        for value in (obs.values() if isinstance(obs, dict) else [obs]):
            sha.update(repr((value.shape, value.dtype.str)).encode())
            sha.update(np.ascontiguousarray(value).tobytes())

    obs, _ = env.reset(seed=0)
    add_obs(obs)
    space = env.action_space
    for _ in range(steps):
        if hasattr(space, "n"):
            action = int(rng.integers(space.n))
        else:
            action = rng.uniform(-1, 1, space.shape).astype(np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        add_obs(obs)
        sha.update(repr((float(reward), bool(terminated), bool(truncated))).encode())
        if "episode" in info:
            sha.update(repr((float(info["episode"]["r"]), int(info["episode"]["l"]))).encode())
        if terminated or truncated:
            obs, _ = env.reset()
            add_obs(obs)
    return sha.hexdigest()


def digests_of(tree: Path, steps: int, training: bool) -> dict[str, str]:
    """Every preset's digest, computed by a process that imports ``tree``'s package."""
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--digests", "--steps", str(steps)]
                          + ([] if training else ["--evaluation"]), cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", help="git revision to compare the working tree with")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--evaluation", action="store_true", help="the evaluation variant (make_env training=False)")
    parser.add_argument("--digests", action="store_true", help=argparse.SUPPRESS)  # one side's digests, as JSON
    args = parser.parse_args()
    if args.digests:
        print(json.dumps({name: digest(kwargs, args.steps, not args.evaluation) for name, kwargs in PRESETS}))
        return 0
    mine = digests_of(ROOT, args.steps, not args.evaluation)
    if not args.baseline:
        for name, value in mine.items():
            print(f"{name:36s} {value[:16]}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), args.baseline], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            theirs = digests_of(tree, args.steps, not args.evaluation)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)
    differ = [name for name in mine if mine[name] != theirs.get(name)]
    for name in mine:
        print(f"{name:36s} {'DIFFERENT' if name in differ else 'equal'} ({mine[name][:16]})")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
