"""The training-health diagnostics' share of training time at the default interval, per agent.

    python tools/bench_health.py [--repeats 2] [--updates 2] [--agents nddqn_atari,drq_atari,...]

Each agent is built at its shipped config's size (configs/*.yaml: networks, batch, frame stack,
image size) and trained outside Lightning on random frames from a replay of random episodes.
Alternately, ``--repeats`` times: ``--updates`` training updates (the run without diagnostics) and
one health check as the ``Health`` callback makes it (held batch of ``HELD_TRANSITIONS``
transitions, or the agent's own B x T sequences; forked random state). The held batch is redrawn
every ``refresh_every`` checks, so its drawing (timed separately) counts for 1/refresh_every of a
check. With the default interval N = ``Health().every_updates``:

    share = check / (N x update + check),   check = health + draw / refresh_every   (medians)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from worldmodels.replay import Replay
from worldmodels.training import EnvSpec, Health
from worldmodels.training.health import held_batch

ATARI = EnvSpec((4, 84, 84), 1, num_actions=6)  # dqn preset: gray 84x84, stack 4; Pong's 6 actions
CARTPOLE = EnvSpec((9, 84, 84), 3, action_dim=1)  # dmc_model_free: RGB 84x84, stack 3
WALKER = EnvSpec((9, 84, 84), 3, action_dim=6)
DREAMER_ATARI = EnvSpec((3, 64, 64), 3, num_actions=6)  # world_model preset: RGB 64x64, no stack

ROOT = Path(__file__).resolve().parent.parent
ATARI_PRESETS = {name: (yaml.safe_load((ROOT / "configs" / f"{name}_atari.yaml").read_text())["model"].get("init_args")
                        or {}) for name in ("nddqn", "drq", "der", "alix")}
# label: (class path, constructor arguments of the shipped config, env spec)
WALKER_CONFIG = {"n_step": 1, "batch_size": 512, "stddev_schedule": "linear(1.0,0.1,100000)"}  # drqv2/alix_dmc
AGENTS = {
    **{f"{name}_atari": ("model_free.Rainbow", init_args, ATARI) for name, init_args in ATARI_PRESETS.items()},
    "drq_dmc": ("model_free.SAC", {}, CARTPOLE),
    "drqv2_dmc": ("model_free.DrQv2", WALKER_CONFIG, WALKER),
    "alix_dmc": ("model_free.ALIX", WALKER_CONFIG, WALKER),
    "dreamer_atari": ("worldmodels.dreamer.DreamerV3", {"size": "S", "train_ratio": 1024, "video_every": 0},
                      DREAMER_ATARI),
}


def build(class_path: str, kwargs: dict, spec: EnvSpec):
    import importlib

    module, name = class_path.rsplit(".", 1)
    torch.manual_seed(0)
    agent = getattr(importlib.import_module(module), name)(**kwargs)
    agent.build(spec)
    optimizers = agent.configure_optimizers()
    agent.optimizers = lambda: optimizers  # outside a Trainer: the step is called directly
    agent.manual_backward = lambda loss: loss.backward()
    agent.log_scalars = lambda metrics: None
    agent.log = lambda *args, **kwargs: None
    return agent


def random_replay(spec: EnvSpec, rows: int = 3000, episode: int = 250) -> Replay:
    """Random frames and rewards; episodes of ``episode`` steps, alternately terminal and truncated."""
    rng = np.random.default_rng(0)
    replay = Replay(rows, 1, spec.frame_stack, spec.frame_channels)
    for t in range(rows):
        obs = rng.integers(0, 256, (1, *spec.obs_shape), dtype=np.uint8)
        action = rng.integers(0, spec.num_actions, 1) if spec.discrete else rng.uniform(-1, 1, (1, spec.action_dim))
        end = t % episode == episode - 1
        replay.add(obs, action, rng.normal(size=1).astype(np.float32), np.array([end and t % (2 * episode) < episode]),
                   np.array([end and t % (2 * episode) >= episode]), np.array([t % episode == 0]))
    return replay


def median_seconds(run, times: int) -> float:
    out = []
    for _ in range(times):
        start = time.perf_counter()
        run()
        out.append(time.perf_counter() - start)
    return statistics.median(out)


def measure(label: str, repeats: int, updates: int, defaults: Health) -> dict:
    class_path, kwargs, spec = AGENTS[label]
    agent = build(class_path, kwargs, spec)
    replay = random_replay(spec)
    view = agent.replay_view()
    batch = view.sample(replay)
    generator = torch.Generator().manual_seed(0)
    held = held_batch(agent, replay, generator, defaults.transitions)

    def update():
        agent.counters.updates += 1
        agent.training_step(batch, agent.counters.updates)

    def check():
        with torch.random.fork_rng():
            torch.manual_seed(0)
            agent.health(held)

    update(), check()  # warm-up
    update_s, check_s, draw_s = [], [], []
    for _ in range(repeats):  # alternate so both see the same machine load
        update_s.append(median_seconds(update, updates))
        check_s.append(median_seconds(check, 1))
        draw_s.append(median_seconds(lambda: held_batch(agent, replay, generator, defaults.transitions), 1))
    u, h, d = (statistics.median(x) for x in (update_s, check_s, draw_s))
    amortized = h + d / defaults.refresh_every
    return {"update": u, "health": h, "draw": d, "share": amortized / (defaults.every_updates * u + amortized)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--updates", type=int, default=2, help="timed training updates per repeat")
    parser.add_argument("--agents", default=",".join(AGENTS), help=f"comma-separated, from {', '.join(AGENTS)}")
    args = parser.parse_args()
    defaults = Health()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; default interval {defaults.every_updates} updates, "
          f"held batch {defaults.transitions} transitions, redrawn every {defaults.refresh_every} checks")
    print("\n| agent (shipped config) | s / update | s / health check | s / held-batch draw "
          "| share at the default interval |")
    print("|---|---|---|---|---|")
    for label in args.agents.split(","):
        try:
            r = measure(label, args.repeats, args.updates, defaults)
        except (ImportError, AttributeError, TypeError) as error:
            print(f"| {label} | skipped: {error} | | | |")
            continue
        print(f"| {label} | {r['update']:.3f} | {r['health']:.3f} | {r['draw']:.3f} | {100 * r['share']:.2f}% |",
              flush=True)


if __name__ == "__main__":
    main()
