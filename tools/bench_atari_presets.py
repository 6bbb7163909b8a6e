"""Seconds per update of each value-based Atari preset at its published size, with and without the
exact shortcut of a target synced every update, the cost of acting, and the estimated hours of one
core for a full Atari 100k run.

    OMP_NUM_THREADS=1 python tools/bench_atari_presets.py [--updates 30] [--repeats 3] [--actions 18]

Batch 32, 84x84 gray, stack 4 (the presets of configs/*_atari.yaml), one torch thread. "straightforward"
is the same update computed the way it was before the shortcut: a separate target network copied
from the online one after every update, and its own pass of s'. Runs alternate between variants;
medians are reported.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import yaml

from model_free import Rainbow
from worldmodels.training import EnvSpec

ROOT = Path(__file__).resolve().parent.parent
PRESETS = {name: (yaml.safe_load((ROOT / "configs" / f"{name}_atari.yaml").read_text())["model"].get("init_args") or {})
           for name in ("nddqn", "drq", "der", "alix")}  # the shipped configs' settings


def straightforward(agent: Rainbow) -> Rainbow:
    """The agent computing its target with a separate network synced after every update."""
    agent.sync_every = 0  # no shortcut branch, no periodic sync: done below
    agent.q_target = copy.deepcopy(agent.q).requires_grad_(False)
    agent.sync_target = lambda: agent.q_target.load_state_dict(agent.q.state_dict())
    return agent


def make(preset: str, spec: EnvSpec, plain: bool = False) -> Rainbow:
    agent = Rainbow(**PRESETS[preset])
    agent.build(spec)
    if plain:
        agent = straightforward(agent)
    optimizers = agent.configure_optimizers()
    agent.optimizers, agent.log_scalars = (lambda: optimizers), (lambda metrics: None)
    agent.manual_backward = lambda loss: loss.backward()
    return agent


def batch(spec: EnvSpec, b: int = 32, prioritized: bool = False) -> dict:
    out = {"obs": torch.randint(0, 256, (b, *spec.obs_shape), dtype=torch.uint8),
           "next_obs": torch.randint(0, 256, (b, *spec.obs_shape), dtype=torch.uint8),
           "action": torch.randint(0, spec.num_actions, (b,)), "reward": torch.randn(b), "discount": torch.full((b,), 0.9)}
    if prioritized:
        out["weight"] = torch.rand(b)
        out["index"] = torch.stack([torch.arange(b), torch.zeros(b, dtype=torch.long)])
    return out


def seconds_per_update(agent: Rainbow, data: dict, updates: int) -> float:
    agent.training_step(data, 0)  # warm-up
    start = time.perf_counter()
    for _ in range(updates):
        agent.training_step(data, 0)
    return (time.perf_counter() - start) / updates


def seconds_per_action(agent: Rainbow, spec: EnvSpec, steps: int = 200) -> float:
    obs = torch.randint(0, 256, (1, *spec.obs_shape), dtype=torch.uint8)
    first = torch.zeros(1, dtype=torch.bool)
    with agent.acting():
        agent.act(obs, None, first, explore=True)
        start = time.perf_counter()
        for _ in range(steps):
            agent.act(obs, None, first, explore=True)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--updates", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--actions", type=int, default=18, help="18: the full action set (Boxing's minimal set)")
    args = parser.parse_args()
    torch.manual_seed(0)
    spec = EnvSpec((4, 84, 84), 1, num_actions=args.actions)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores; batch 32, 84x84x4, {args.actions} actions; medians of {args.repeats} x {args.updates} updates")
    print("| preset | s / update (straightforward) | s / update | s / action | updates per run | est. hours of one core per run |")
    print("|---|---|---|---|---|---|")
    for preset in PRESETS:  # nddqn, drq (DrQ(eps)), der, alix
        prioritized = PRESETS[preset].get("prioritized", True)
        variants = {"fast": make(preset, spec)}
        if variants["fast"].sync_every == 1:
            variants["plain"] = make(preset, spec, plain=True)
            variants["plain"].q.load_state_dict(variants["fast"].q.state_dict())
        for agent in variants.values():  # updates write priorities into a stand-in table
            if prioritized:
                agent.view.priority = torch.ones(64, 1, dtype=torch.float64)
                agent.view.admitted = 32
        data = batch(spec, prioritized=prioritized)
        times = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, agent in variants.items():
                times[name].append(seconds_per_update(agent, data, args.updates))
        fast = statistics.median(times["fast"])
        plain = f"{statistics.median(times['plain']):.3f}" if "plain" in times else "(no shortcut: target kept)"
        act = seconds_per_action(variants["fast"], spec)
        agent = variants["fast"]
        updates = round((100_000 - 1_600) * agent.updates_per_env_step)
        # Env steps (~2000/s through the preprocessing, SETUP-NOTES) and acting for 100k steps; the final
        # 100 evaluation games (~180k agent steps on Boxing) act the same way.
        hours = (updates * fast + 100_000 * (act + 1 / 2000) + 180_000 * (act + 1 / 2000)) / 3600
        print(f"| {preset} | {plain} | {fast:.3f} | {act * 1000:.1f} ms | {updates} | {hours:.1f} |")


if __name__ == "__main__":
    main()
