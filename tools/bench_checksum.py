"""The cost of the checksum each checkpoint and replay file carries (worldmodels/atomic.py): seconds to
write a file (fsync included) three ways: ``torch.save`` with no checksum at all (torch's per-record
CRCs off), ``torch.save`` as it comes (its per-record CRCs on, the default) and ``save_atomically``
(its XXH3 trailer, torch's CRCs off); and to verify the trailer (``atomic.verify``)
against ``torch.load``'s own time.

    python tools/bench_checksum.py [--rows 100000] [--ckpt-mb 200] [--repeats 7] [--dir /tmp/bench-checksum]

- replay: a chunk file of ``--rows`` Atari frames (84x84 gray, one env), as ``Replay.persist`` writes it
  (``Replay.rows_between``): 100k rows is a whole Atari 100k replay in one file (706 MB).
- checkpoint: float32 tensors of ``--ckpt-mb`` MB in all (weights and optimizer moments; DreamerV3 at
  size S with Adam is about 200 MB).
Median of ``--repeats`` writes each, with and without the checksum alternated.
"""

from __future__ import annotations

import argparse
import os
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


def plain_save(obj, path: Path, torch_crcs: bool) -> None:
    """``save_atomically`` without the trailer: torch.save to a temporary file, fsync, rename."""
    torch.serialization.set_crc32_options(torch_crcs)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    torch.serialization.set_crc32_options(True)


WRITERS = {"no checksum": lambda obj, path: plain_save(obj, path, torch_crcs=False),
           "torch's CRCs": lambda obj, path: plain_save(obj, path, torch_crcs=True),
           "xxh3 trailer": atomic.save_atomically}


def measure(name: str, obj, directory: Path, repeats: int) -> None:
    path = directory / f"{name}.pt"
    times = {writer: [] for writer in WRITERS}
    for _ in range(repeats):  # alternated, so that the disk's state drifts alike under each
        for writer, save in WRITERS.items():
            times[writer].append(timed(lambda: save(obj, path)))
    figures = {writer: statistics.median(t) for writer, t in times.items()}
    size = path.stat().st_size
    verify = statistics.median(timed(lambda: atomic.verify(path)) for _ in range(repeats))
    load = statistics.median(timed(lambda: torch.load(path, weights_only=True)) for _ in range(repeats))
    base = figures["no checksum"]
    print(f"{name:10s} {size / 1e6:6.1f} MB  write: " + ", ".join(
        f"{writer} {t:.3f} s ({100 * (t - base) / base:+.1f}%)" for writer, t in figures.items())
          + f";  load {load:.3f} s, verify {verify:.3f} s ({100 * verify / load:.0f}% of the load)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--ckpt-mb", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/bench-checksum"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.dir.mkdir(parents=True, exist_ok=True)
    print(f"{platform.processor() or platform.machine()}, {args.dir}")
    try:
        measure("replay", replay_rows(args.rows), args.dir, args.repeats)
        measure("checkpoint", checkpoint(args.ckpt_mb), args.dir, args.repeats)
    finally:
        torch.serialization.set_crc32_options(True)
        shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
