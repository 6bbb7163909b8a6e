"""The cost of the digest each checkpoint and replay file carries (worldmodels/atomic.py): seconds to
write a file through ``save_atomically`` (fsync included) with and without it, and to verify it at load
against ``torch.load``'s own time.

    python tools/bench_digest.py [--rows 100000] [--ckpt-mb 200] [--repeats 3] [--dir /tmp/bench-digest]

- replay: a chunk file of ``--rows`` Atari frames (84x84 gray, one env), as ``Replay.persist`` writes it
  (``Replay.rows_between``): 100k rows is a whole Atari 100k replay in one file (706 MB).
- checkpoint: float32 tensors of ``--ckpt-mb`` MB in all (weights and optimizer moments; DreamerV3 at
  size S with Adam is about 200 MB).
Median of ``--repeats`` writes each.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from worldmodels import atomic
from worldmodels.replay import Replay


def replay_rows(rows: int) -> dict:
    replay = Replay(rows + 1, num_envs=1, frame_stack=4, frame_channels=1, stack_padding="zero", chunk=4096)
    frames = np.random.default_rng(0).integers(0, 256, (rows, 1, 1, 84, 84), dtype=np.uint8)
    for t in range(rows):
        replay.add(frames[t], np.zeros(1, np.int64), np.zeros(1, np.float32), np.zeros(1, bool), np.zeros(1, bool),
                   np.array([t == 0]))
    return replay.rows_between(0, rows)


def checkpoint(megabytes: int) -> dict:
    n = megabytes * 2**20 // 4 // 16
    return {"state_dict": {f"layer{i}.weight": torch.randn(n) for i in range(16)}, "counters": {"env_steps": 1}}


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(name: str, obj, directory: Path, repeats: int) -> None:
    path = directory / f"{name}.pt"
    figures = {}
    for digest in (False, True):
        atomic.DIGEST = digest
        figures[digest] = statistics.median(timed(lambda: atomic.save_atomically(obj, path)) for _ in range(repeats))
    size = path.stat().st_size
    verify = statistics.median(timed(lambda: atomic.verify(path)) for _ in range(repeats))
    load = statistics.median(timed(lambda: torch.load(path, weights_only=True)) for _ in range(repeats))
    extra = figures[True] - figures[False]
    print(f"{name:10s} {size / 1e6:8.1f} MB  write {figures[False]:6.3f} s, with digest {figures[True]:6.3f} s "
          f"({100 * extra / figures[False]:+.1f}%);  load {load:6.3f} s, verify {verify:6.3f} s "
          f"({100 * verify / load:.0f}% of the load)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--ckpt-mb", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/bench-digest"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.dir.mkdir(parents=True, exist_ok=True)
    print(f"{platform.processor() or platform.machine()}, {args.dir}")
    try:
        measure("replay", replay_rows(args.rows), args.dir, args.repeats)
        measure("checkpoint", checkpoint(args.ckpt_mb), args.dir, args.repeats)
    finally:
        atomic.DIGEST = True
        shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
