"""DreamerV3 gradient updates per second and peak memory, against sheeprl 0.8.4 in the same run.

    python tools/bench_dreamer.py [--size S] [--updates 3] [--repeats 2] [--compile [parts|full]] \
        [--sheeprl-python /path/to/sheeprl-venv/bin/python]

Both sides train on the same random batch shape: 16 sequences x 64 steps of 64x64 RGB uint8 frames
with 6 discrete actions (Atari Pong's minimal set), size S, on this machine's CPU threads. Each side
runs in its own process (peak memory is per process), alternately, ``--repeats`` times; medians are
reported. sheeprl is not a dependency: install it in its own virtual environment
(``pip install torch==2.13.0 "sheeprl[atari,dmc]==0.8.4" "mujoco==3.17.0"``) and pass its python;
its side is ``tools/sheeprl_dreamer_peer.py``.

``--compile`` compiles our agent as ``--compile parts`` (or ``--compile true``) does in a run
(``worldmodels.training.compile``), ``--compile full`` as ``--compile full`` does (the whole update), and
also reports the first update, which compiles; the timed updates come after it. The peer runs as
sheeprl's config has it (uncompiled) either way.

    python tools/bench_dreamer.py --count-ops [--size S] [--continuous]

counts instead the aten operators one eager update dispatches (after a warm-up update), on an update
whose metrics are not logged (most updates): each operator the profiler records that is not called by
another aten operator (the ops of the backward pass included), views (``view``, ``select``, ``expand``,
``detach``...: an operator that returns an alias of its input) counted apart. On a GPU each non-view
operator is at least one kernel launched from the host. It reads only ``training_step`` and
``configure_optimizers``, so it counts an older checkout's update too (``PYTHONPATH=<checkout>``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def random_batch(batch: int, seq: int, actions: int, continuous: bool = False) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "obs": torch.randint(0, 256, (batch, seq, 3, 64, 64), dtype=torch.uint8, generator=g),
        "action": (torch.rand(batch, seq, actions, generator=g) * 2 - 1) if continuous
        else torch.randint(0, actions, (batch, seq), generator=g),
        "reward": torch.randn(batch, seq, generator=g),
        "first": torch.rand(batch, seq, generator=g) < 0.01,
        "terminal": torch.rand(batch, seq, generator=g) < 0.01,
    }


def is_view(name: str) -> bool:
    """Whether the aten operator ``name`` (``aten::view``) returns an alias of an input in every overload."""
    schemas = torch._C._jit_get_schemas_for_operator(name)
    return bool(schemas) and all(
        schema.returns and all(r.alias_info is not None and not r.alias_info.is_write for r in schema.returns)
        for schema in schemas)


def count_ops(size: str, continuous: bool) -> dict:
    """Aten operators dispatched by one eager update whose metrics are not logged (see the docstring)."""
    from collections import Counter

    from torch.profiler import ProfilerActivity, profile

    from worldmodels.dreamer import DreamerV3
    from worldmodels.training import EnvSpec

    torch.manual_seed(0)
    agent = DreamerV3(size=size, video_every=0)
    agent.build(EnvSpec((3, 64, 64), 3, action_dim=6) if continuous else EnvSpec((3, 64, 64), 3, num_actions=6))
    optimizers = agent.configure_optimizers()
    agent.optimizers = lambda: optimizers
    agent.manual_backward = lambda loss: loss.backward()
    agent.logs_now = lambda: False
    batch = random_batch(16, 64, 6, continuous)
    agent.training_step(batch, 0)  # optimizer state made, as in every later update
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        agent.training_step(batch, 1)
    top = Counter()
    for event in prof.events():
        parent = event.cpu_parent
        while parent is not None and not parent.name.startswith("aten::"):
            parent = parent.cpu_parent
        if event.name.startswith("aten::") and parent is None:
            top[event.name] += 1
    views = {name: n for name, n in top.items() if is_view(name)}
    ops = {name: n for name, n in top.items() if name not in views}
    return {"non_view_ops": sum(ops.values()), "view_ops": sum(views.values()),
            "most_common": Counter(ops).most_common(12)}


def measure_ours(size: str, updates: int, continuous: bool, device: str, precision: str, compile_: bool | str,
                 seq_len: int = 64) -> dict:
    """One process's measurement: a warm-up update, then ``updates`` timed ones."""
    from worldmodels.dreamer import DreamerV3
    from worldmodels.training import EnvSpec

    agent = DreamerV3(size=size, video_every=0)
    spec = EnvSpec((3, 64, 64), 3, action_dim=6) if continuous else EnvSpec((3, 64, 64), 3, num_actions=6)
    agent.build(spec)
    agent.to(device)
    optimizers = agent.configure_optimizers()
    agent.optimizers = lambda: optimizers  # outside a Trainer: the step is called directly
    agent.manual_backward = lambda loss: loss.backward()
    agent.log_scalars = lambda metrics: None
    if compile_:
        from worldmodels.training.compile import compile_agent

        compile_agent(agent, "full" if compile_ == "full" else "parts")
    batch = {k: v.to(device) for k, v in random_batch(16, seq_len, 6, continuous).items()}
    autocast = torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=precision == "bf16-mixed")

    def step():
        with autocast:
            agent.training_step(batch, 0)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    start = time.perf_counter()
    step()  # the warm-up; with --compile it traces and compiles every target (each at its first call)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(updates):
        step()
    seconds = (time.perf_counter() - start) / updates
    out = {"seconds_per_update": seconds, "updates_per_second": 1 / seconds,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "torch_threads": torch.get_num_threads(),
           "first_update_seconds": first}
    if device.startswith("cuda"):
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def run_json(cmd: list[str]) -> dict:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="S")
    parser.add_argument("--updates", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--continuous", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="32", choices=["32", "bf16-mixed"])
    parser.add_argument("--compile", nargs="?", const="parts", default=None, choices=["parts", "full"])
    parser.add_argument("--count-ops", action="store_true")
    parser.add_argument("--seq-len", type=int, default=64, help="steps per sequence of the batch (ours only)")
    parser.add_argument("--sheeprl-python", default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.count_ops:
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, size {args.size}, "
              f"{'continuous' if args.continuous else 'discrete'} actions, batch 16 x 64")
        print(json.dumps(count_ops(args.size, args.continuous)))
        return
    if args.child:
        print(json.dumps(measure_ours(args.size, args.updates, args.continuous, args.device, args.precision, args.compile,
                                      args.seq_len)))
        return

    ours_cmd = [sys.executable, __file__, "--child", "--size", args.size, "--updates", str(args.updates),
                "--seq-len", str(args.seq_len),
                "--device", args.device, "--precision", args.precision] + (["--continuous"] if args.continuous else []) \
        + (["--compile", args.compile] if args.compile else [])
    peer_cmd = None if args.sheeprl_python is None else [args.sheeprl_python, str(HERE / "sheeprl_dreamer_peer.py"),
                                                         "--updates", str(args.updates)]
    ours, peer = [], []
    for _ in range(args.repeats):  # alternate so both see the same machine load
        ours.append(run_json(ours_cmd))
        if peer_cmd:
            peer.append(run_json(peer_cmd))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, device {args.device}, "
          f"precision {args.precision}, compile {args.compile}")
    print("\n| implementation | size | batch | s / update | updates / s | peak memory (MB) |")
    print("|---|---|---|---|---|---|")

    def row(name, results):
        s = statistics.median(r["seconds_per_update"] for r in results)
        mem = max(r.get("peak_gpu_mb", r["peak_rss_mb"]) for r in results)
        print(f"| {name} | {args.size} | 16 x {args.seq_len} | {s:.2f} | {1 / s:.3f} | {mem:.0f} |")
        return s

    def first_update(results):
        return statistics.median(r["first_update_seconds"] for r in results)

    ours_s = row("worldmodels DreamerV3" + (f" (compile {args.compile})" if args.compile else ""), ours)
    if args.compile:
        print(f"\nfirst update, which compiles (inductor's on-disk cache as this machine holds it): "
              f"{first_update(ours):.1f} s; later updates {ours_s:.2f} s")
    if peer:
        peer_s = row("sheeprl 0.8.4 dreamer_v3", peer)
        print(f"\nspeed-up over sheeprl: {peer_s / ours_s:.2f}x")


if __name__ == "__main__":
    main()
