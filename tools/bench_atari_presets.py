"""Seconds per update of each value-based Atari preset at its published size, the cost of acting, and
the estimated hours of one core for a full Atari 100k run; with ``--baseline REV``, the same update of
the code at git revision REV measured in the same run, alternating, for a before/after.

    OMP_NUM_THREADS=1 python tools/bench_atari_presets.py [--updates 30] [--repeats 3] [--baseline c91e3eb]

Batch 32, 84x84 gray, stack 4, the settings of configs/*_atari.yaml (a setting the baseline's learner does
not know is left out there), one torch thread, prioritized replay where the preset has it. Each side runs
in a process of its own that imports its own tree (a temporary ``git worktree`` for the baseline) and sets
up the process as that tree's ``worldmodels.fit`` does (malloc's thresholds, where it sets them); the
two alternate ``--repeats`` times and the medians are reported. Seconds are wall-clock; the CPU columns
are the process's CPU time (``time.process_time``), which leaves out the time spent waiting for a core
on a shared machine.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAMES = {"nddqn": "NDDQN", "drq": "DrQ(ε)", "der": "DER", "alix": "A-LIX-Atari"}


def preset_settings() -> dict[str, dict]:
    import yaml

    return {name: (yaml.safe_load((ROOT / "configs" / f"{name}_atari.yaml").read_text())["model"].get("init_args") or {})
            for name in NAMES}


def measure(settings: dict[str, dict], updates: int, actions: int) -> dict[str, dict[str, float]]:
    """Seconds per update and per action of each preset, with the learner this process imports."""
    import torch

    from model_free import Rainbow
    from worldmodels.training import EnvSpec

    known = inspect.signature(Rainbow).parameters
    spec = EnvSpec((4, 84, 84), 1, num_actions=actions)
    out = {}
    for name, preset in settings.items():
        torch.manual_seed(0)
        agent = Rainbow(**{k: v for k, v in preset.items() if k in known})
        agent.build(spec)
        optimizers = agent.configure_optimizers()
        agent.optimizers, agent.log_scalars = (lambda o=optimizers: o), (lambda metrics: None)
        agent.manual_backward = lambda loss: loss.backward()
        g = torch.Generator().manual_seed(1)
        batch = {"obs": torch.randint(0, 256, (32, *spec.obs_shape), dtype=torch.uint8, generator=g),
                 "next_obs": torch.randint(0, 256, (32, *spec.obs_shape), dtype=torch.uint8, generator=g),
                 "action": torch.randint(0, actions, (32,), generator=g), "reward": torch.randn(32, generator=g),
                 "discount": torch.full((32,), 0.9)}
        if preset.get("prioritized", True):  # updates write priorities into a stand-in table
            agent.view.priority = torch.ones(64, 1, dtype=torch.float64)
            agent.view.admitted = 32
            batch["weight"] = torch.rand(32, generator=g)
            batch["index"] = torch.stack([torch.arange(32), torch.zeros(32, dtype=torch.long)])
        for update in range(2):  # warm-up
            agent.counters.updates = update + 1
            agent.training_step(batch, update)
        start, start_cpu = time.perf_counter(), time.process_time()
        for update in range(2, 2 + updates):
            agent.counters.updates = update + 1  # the loop counts the update before it runs (target syncs)
            agent.training_step(batch, update)
        per_update = (time.perf_counter() - start) / updates
        cpu_per_update = (time.process_time() - start_cpu) / updates
        obs, first = batch["obs"][:1], torch.zeros(1, dtype=torch.bool)
        with agent.acting():
            agent.act(obs, None, first, explore=True)
            start = time.perf_counter()
            for _ in range(200):
                agent.act(obs, None, first, explore=True)
        out[name] = {"update": per_update, "update_cpu": cpu_per_update, "action": (time.perf_counter() - start) / 200,
                     "updates_per_env_step": float(agent.updates_per_env_step)}
    return out


def run_side(tree: Path, updates: int, actions: int) -> dict:
    """One measurement in a fresh process importing the package from ``tree``."""
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    done = subprocess.run([sys.executable, __file__, "--side", "--updates", str(updates), "--actions", str(actions)],
                          cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the measurement in {tree} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--actions", type=int, default=18, help="18: the full action set (Boxing's minimal set)")
    parser.add_argument("--baseline", default=None, help="a git revision to measure beside the working tree")
    parser.add_argument("--side", action="store_true", help=argparse.SUPPRESS)  # one measurement, as JSON
    args = parser.parse_args()
    if args.side:
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        try:  # malloc settings as worldmodels.fit makes them at start-up (revisions before it have none)
            from worldmodels.training.host_memory import reuse_freed_host_memory
        except ImportError:
            pass
        else:
            reuse_freed_host_memory()
        print(json.dumps(measure(preset_settings(), args.updates, args.actions)))
        return
    import torch

    with tempfile.TemporaryDirectory() as scratch:
        trees = {"now": ROOT}
        if args.baseline:
            trees["before"] = Path(scratch) / "baseline"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(trees["before"]), args.baseline],
                           check=True, capture_output=True)
        try:
            results = {side: [] for side in trees}
            for _ in range(args.repeats):
                for side, tree in trees.items():
                    results[side].append(run_side(tree, args.updates, args.actions))
        finally:
            if args.baseline:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(trees["before"])],
                               capture_output=True)
    median = lambda side, name, key: statistics.median(r[name][key] for r in results[side])
    print(f"torch {torch.__version__}, {os.environ.get('OMP_NUM_THREADS', '1')} thread(s), "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; batch 32, 84x84x4, {args.actions} "
          f"actions; medians of {args.repeats} x {args.updates} updates" + (f"; baseline {args.baseline}" if args.baseline else ""))
    compared = (" s / update before | s / update | speed-up | CPU s / update before | CPU s / update | speed-up |"
                if args.baseline else " s / update | CPU s / update |")
    hours_before = " est. hours before |" if args.baseline else ""
    print(f"| preset |{compared} s / action | updates per run |{hours_before} est. hours of one core per run |")
    print("|---|" + ("---|" * 7 if args.baseline else "---|---|") + "---|---|---|")

    def run_hours(side: str, name: str, updates: int) -> float:
        # Env steps (~2000/s through the preprocessing) and acting for 100k steps; the final 100 evaluation
        # games (~180k agent steps on Boxing) act the same way.
        act = median(side, name, "action")
        return (updates * median(side, name, "update") + 100_000 * (act + 1 / 2000) + 180_000 * (act + 1 / 2000)) / 3600

    for name, label in NAMES.items():
        now = median("now", name, "update")
        act = median("now", name, "action")
        updates = round((100_000 - 1_600) * results["now"][0][name]["updates_per_env_step"])
        columns = [label]
        cpu = median("now", name, "update_cpu")
        if args.baseline:
            old, old_cpu = median("before", name, "update"), median("before", name, "update_cpu")
            columns += [f"{old:.3f}", f"{now:.3f}", f"{old / now:.2f}x", f"{old_cpu:.3f}", f"{cpu:.3f}", f"{old_cpu / cpu:.2f}x"]
        else:
            columns += [f"{now:.3f}", f"{cpu:.3f}"]
        columns += [f"{act * 1000:.1f} ms", f"{updates}"]
        if args.baseline:
            columns += [f"{run_hours('before', name, updates):.1f}"]
        columns += [f"{run_hours('now', name, updates):.1f}"]
        print("| " + " | ".join(columns) + " |")


if __name__ == "__main__":
    main()
