"""Overlap benchmark: pipeline throughput with the environments in one process, where each update
waits for the environments and they for it, against environments in their own processes, which step
while the updates run (``Experience(env_processes=True)``).

    python tools/bench_overlap.py [--envs 2] [--update-ms 4] [--steps 2000] [--repeats 3]

The update is a model-sized sleep (``--update-ms``, about a small agent's update on a GPU): a sleep
holds no core, so on this 2-core machine what is measured is the overlap itself, not a race for cores
between the update and the environments. Batches are drawn from the real replay (NDDQN's view: 32
transitions, 10-step returns) at one update per env step, and consumed the way Lightning consumes
them: the next batch is fetched before the current one trains.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from worldmodels.envs import EnvConfig
from worldmodels.replay import TransitionView
from worldmodels.training import Agent, Experience


class SleepingAgent(Agent):
    """Plays a constant action after the warm-up and 'trains' by sleeping."""

    def __init__(self, action_shape: tuple[int, ...]):
        super().__init__(updates_per_env_step=1.0)
        self.view = TransitionView(32, 10, 0.99)
        self.action_shape = action_shape

    def replay_view(self):
        return self.view

    def act(self, obs, state, first, explore):
        dtype = torch.float32 if self.action_shape else torch.int64
        return torch.zeros(obs.shape[0], *self.action_shape, dtype=dtype), None


def steps_per_second(cfg: EnvConfig, envs: int, processes: bool, steps: int, update_s: float, warmup: int) -> float:
    data = Experience(cfg, num_envs=envs, total_env_steps=warmup + steps, warmup_steps=warmup,
                      replay_capacity=4 * (warmup + steps), progress_bar=False, env_processes=processes)
    data.setup("fit")
    agent = SleepingAgent(data.envs.single_action_space.shape)
    batches = data.batches(agent)
    data.begin_episodes()
    data.begin_episodes()
    for _ in range(warmup // envs):  # fill the replay past the view's span before the clock starts
        data._interact(agent)
    start, start_steps = time.perf_counter(), data.counters.env_steps
    fetched = next(batches)
    for following in batches:  # Lightning: fetch batch k + 1, then train batch k
        time.sleep(update_s)
        fetched = following
    time.sleep(update_s)
    rate = (data.counters.env_steps - start_steps) / (time.perf_counter() - start)
    data.teardown("fit")
    return rate


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, default=2)
    parser.add_argument("--update-ms", type=float, default=4.0)
    parser.add_argument("--steps", type=int, default=2000, help="env steps per measurement, after the warm-up")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")
    print(f"{args.envs} environments, one update per env step, update = {args.update_ms} ms sleep\n")
    print("| environment | one process: env steps/s | own processes: env steps/s | speed-up | no overlap possible above |")
    print("|---|---|---|---|---|")
    for name, cfg in [("Atari pong (dqn preset)", EnvConfig("atari", "pong", preset="dqn")),
                      ("DMC walker-walk (84px, stack 3)", EnvConfig("dmc", "walker-walk", preset="dmc_model_free"))]:
        together, apart = [], []
        for _ in range(args.repeats):  # alternate, so both see the same machine load
            together.append(steps_per_second(cfg, args.envs, False, args.steps, args.update_ms / 1000, 400))
            apart.append(steps_per_second(cfg, args.envs, True, args.steps, args.update_ms / 1000, 400))
        t, a = statistics.median(together), statistics.median(apart)
        print(f"| {name} | {t:.0f} | {a:.0f} | {a / t:.2f}x | {1000 / args.update_ms:.0f} (updates alone) |")


if __name__ == "__main__":
    main()
