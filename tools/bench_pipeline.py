"""Pipeline benchmark: how much of the raw environment speed survives the pipeline, how fast the
replay samples, and how many bytes each stored frame costs.

    python tools/bench_pipeline.py [--steps 3000] [--dmc-steps 300] [--repeats 3]

For Atari (Pong, the ``dqn`` preset) and DMC (walker-walk, ``dmc_model_free``):
- raw: one env through its wrappers, random actions, ``reset`` on episode end;
- pipeline: the training loop's interaction path (lock-step vector env, replay writes, counters)
  with a random policy, through ``Experience.batches`` with warm-up covering the whole budget;
measured alternately in the same process, ``--repeats`` times each; the median is reported.
Then replay sample throughput and stored bytes per frame for a 100k-frame buffer.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import torch

from worldmodels.envs import EnvConfig, make_env
from worldmodels.replay import Replay, SequenceView, TransitionView
from worldmodels.training import Agent, Experience


def raw_steps_per_second(cfg: EnvConfig, steps: int) -> float:
    env = make_env(cfg, seed=0)
    env.reset(seed=0)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


class NoLearning(Agent):
    """Never asked to act (warm-up spans the whole budget) and never updated."""

    def __init__(self):
        super().__init__(updates_per_env_step=0.0)

    def replay_view(self):
        return TransitionView()


def pipeline_steps_per_second(cfg: EnvConfig, steps: int) -> float:
    data = Experience(cfg, total_env_steps=steps, warmup_steps=steps, replay_capacity=max(steps * 2, 1000),
                      progress_bar=False)
    data.setup("fit")
    data.begin_episodes()  # envs built and reset (ALE reloads the ROM on a seeded reset) before the clock, like raw's
    start = time.perf_counter()
    for _ in data.batches(NoLearning()):
        pass
    return data.counters.env_steps / (time.perf_counter() - start)


def filled_replay(frame_shape: tuple[int, int, int], frame_stack: int, frames: int = 100_000,
                  storage: str = "memory") -> Replay:
    replay = Replay(frames, 1, frame_stack, frame_shape[0], storage=storage, directory=None)
    obs = np.random.default_rng(0).integers(0, 255, (1, frame_stack * frame_shape[0], *frame_shape[1:]), np.uint8)
    for t in range(frames):
        replay.add(obs, np.zeros(1, np.int64), np.zeros(1, np.float32), np.array([t % 1000 == 999]),
                   np.zeros(1, bool), np.array([t % 1000 == 0]))
    replay.flush()
    return replay


def samples_per_second(replay: Replay, view, seconds: float = 3.0) -> float:
    view.sample(replay)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        view.sample(replay)
        count += 1
    return count / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000, help="Atari env steps per measurement")
    parser.add_argument("--dmc-steps", type=int, default=300, help="DMC env steps per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")

    print("\n| suite | raw env steps/s | pipeline steps/s (random policy) | pipeline / raw |")
    print("|---|---|---|---|")
    for name, cfg, steps in [("Atari pong (dqn preset)", EnvConfig("atari", "pong", preset="dqn"), args.steps),
                             ("DMC walker-walk (84px, stack 3)", EnvConfig("dmc", "walker-walk", preset="dmc_model_free"), args.dmc_steps)]:
        raw, pipe = [], []
        for _ in range(args.repeats):  # alternate, so both see the same machine load
            raw.append(raw_steps_per_second(cfg, steps))
            pipe.append(pipeline_steps_per_second(cfg, steps))
        r, p = statistics.median(raw), statistics.median(pipe)
        print(f"| {name} | {r:.0f} | {p:.0f} | {p / r:.2f} |")

    print("\n| buffer (100k frames) | storage | bytes per stored frame | raw frame bytes | ratio | view | batches/s | frames/s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, shape, stack, view, storage in [
        ("Atari 84x84 gray, stack 4", (1, 84, 84), 4, TransitionView(32, 10, 0.99), "memory"),
        ("Atari 84x84 gray, stack 4", (1, 84, 84), 4, TransitionView(32, 10, 0.99), "memmap"),
        ("DMC 84x84 RGB, stack 3", (3, 84, 84), 3, TransitionView(256, 3, 0.99), "memory"),
        ("64x64 RGB sequences", (3, 64, 64), 1, SequenceView(16, 64), "memory"),
    ]:
        replay = filled_replay(shape, stack, storage=storage)
        per_frame = replay.nbytes() / (replay.rows * replay.num_envs)  # the tensors TorchRL allocated
        raw_bytes = int(np.prod(shape))
        rate = samples_per_second(replay, view)
        per_batch = view.batch_size * (view.seq_len if isinstance(view, SequenceView) else 2 * stack)
        label = f"{type(view).__name__}({view.batch_size}" + (f"x{view.seq_len})" if isinstance(view, SequenceView) else f", n={view.n_step})")
        print(f"| {name} | {storage} | {per_frame:.0f} | {raw_bytes} | {per_frame / raw_bytes:.3f} | {label} | {rate:.0f} | {rate * per_batch:.0f} |")
        del replay


if __name__ == "__main__":
    main()
