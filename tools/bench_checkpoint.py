"""Checkpoint benchmark: bytes and seconds per checkpoint write against replay size, with the replay
inside the checkpoint (before) and appended to the run directory (after).

    python tools/bench_checkpoint.py [--sizes 1000 10000 100000] [--new-rows 1000] [--dir /tmp/bench-ckpt]

A replay of Atari frames (84x84 gray, as the ``dqn`` preset stores them) is filled to each size; then
``--new-rows`` more rows arrive and one checkpoint is written, as a periodic checkpoint would be:

- before: the checkpoint held the replay's rows inline, twice (``Experience.state_dict`` and, again,
  Lightning's loop state, since ``train_dataloader`` returned the stateful data module). The rows are
  the same ``Replay.rows_between`` the old ``state_dict`` returned, saved twice with the same atomic
  writer, in one file.
- after: ``Replay.persist`` appends the rows added since the previous checkpoint as one chunk file,
  and the checkpoint holds the cursor (``Replay.state_dict``).

Both write through ``save_atomically`` (fsync included), into ``--dir``; the agent's weights, equal
in both, are left out. The resume cost (reading the whole window back) is measured for the after case.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from worldmodels.atomic import save_atomically
from worldmodels.replay import Replay


def filled_replay(rows: int, capacity: int) -> Replay:
    replay = Replay(capacity, num_envs=1, frame_stack=4, frame_channels=1, stack_padding="zero")
    frame = np.random.default_rng(0).integers(0, 256, (1, 4, 84, 84), dtype=np.uint8)
    for t in range(rows):
        replay.add(frame, np.zeros(1, np.int64), np.zeros(1, np.float32), np.zeros(1, bool), np.zeros(1, bool),
                   np.array([t == 0]))
    return replay


def size_of(paths) -> int:
    return sum(p.stat().st_size for p in paths)


def measure(size: int, new_rows: int, directory: Path) -> dict:
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    replay = filled_replay(size, capacity=size + new_rows)
    replay.persist(directory / "replay")  # the checkpoint before this one: all but the new rows
    for _ in range(new_rows):
        replay.add(np.zeros((1, 4, 84, 84), np.uint8), np.zeros(1, np.int64), np.zeros(1, np.float32),
                   np.zeros(1, bool), np.zeros(1, bool), np.zeros(1, bool))
    replay.flush()

    def inline() -> dict:  # what the old Replay.state_dict returned: fresh copies of every row, each call
        return dict(replay.state_dict(), **replay.rows_between(replay.oldest, replay.time))

    start = time.perf_counter()
    save_atomically({"Experience": {"replay": inline()}, "loops": {"combined_loader": [{"replay": inline()}]}},
                    directory / "before.ckpt")
    before_s = time.perf_counter() - start
    before_bytes = (directory / "before.ckpt").stat().st_size

    chunks_before = set((directory / "replay").iterdir())
    start = time.perf_counter()
    replay.persist(directory / "replay")
    save_atomically({"Experience": {"replay": replay.state_dict()}}, directory / "after.ckpt")
    after_s = time.perf_counter() - start
    new_chunks = set((directory / "replay").iterdir()) - chunks_before
    after_bytes = (directory / "after.ckpt").stat().st_size + size_of(new_chunks)

    start = time.perf_counter()
    Replay(size + new_rows, num_envs=1, frame_stack=4, frame_channels=1).load_state_dict(
        replay.state_dict(), directory / "replay")
    resume_s = time.perf_counter() - start
    shutil.rmtree(directory, ignore_errors=True)
    return dict(size=size, before_s=before_s, before_mb=before_bytes / 1e6, after_s=after_s,
                after_mb=after_bytes / 1e6, resume_s=resume_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--new-rows", type=int, default=1000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/bench-checkpoint"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, one thread, "
          f"{args.new_rows} new rows per checkpoint, into {args.dir}")
    print("| frames in replay | before: MB | before: s | after: MB | after: s | resume (read back): s |")
    print("|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        r = measure(size, args.new_rows, args.dir)
        print(f"| {r['size']:,} | {r['before_mb']:.1f} | {r['before_s']:.2f} | {r['after_mb']:.1f} | "
              f"{r['after_s']:.3f} | {r['resume_s']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
