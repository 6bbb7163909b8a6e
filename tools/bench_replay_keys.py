"""What a dict observation costs the replay, against an image-only one, measured in the same run: bytes
per stored row and batches sampled per second, for

    image     84x84x3 uint8 frames (DMC pixels), frame stack 3
    dict      the same image plus a 24-float state vector (DMC walker's proprioception), stack 3

sampled as DrQ-v2 does (``TransitionView``: 256 transitions, 3-step returns) and as DreamerV3 does
(``SequenceView``: 16 x 64). One torch thread, alternated repeats, the median reported.

    OMP_NUM_THREADS=1 python tools/bench_replay_keys.py [--rows 20000] [--repeats 5] [--batches 20]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch

from worldmodels.envs.observations import ObsKey
from worldmodels.replay import Replay, SequenceView, TransitionView

STACK = 3
LAYOUTS = {
    "image": (ObsKey("obs", "image", (3 * STACK, 84, 84), STACK),),
    "dict": (ObsKey("pixels", "image", (3 * STACK, 84, 84), STACK), ObsKey("observation", "vector", (24 * STACK,), STACK)),
}


def filled(layout, rows: int) -> Replay:
    replay = Replay(rows + 1, layout=layout, chunk=1024)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 1, 3 * STACK, 84, 84), dtype=np.uint8)
    state = rng.standard_normal((64, 1, 24 * STACK)).astype(np.float32)
    for t in range(rows):
        obs = image[t % 64] if len(layout) == 1 else {"pixels": image[t % 64], "observation": state[t % 64]}
        replay.add(obs, rng.uniform(-1, 1, (1, 6)).astype(np.float32), np.zeros(1, np.float32), np.zeros(1, bool),
                   np.array([t % 500 == 499]), np.array([t % 500 == 0]))
    replay.flush()
    return replay


def batches_per_second(replay: Replay, view, batches: int) -> float:
    start = time.perf_counter()
    for _ in range(batches):
        view.sample(replay)
    return batches / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    replays = {name: filled(layout, args.rows) for name, layout in LAYOUTS.items()}
    views = {"transitions 256 (DrQ-v2)": TransitionView(batch_size=256, n_step=3, gamma=0.99),
             "sequences 16x64 (DreamerV3)": SequenceView(batch_size=16, seq_len=64)}
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread, {args.rows} rows, "
          f"median of {args.repeats}")
    for name, replay in replays.items():
        print(f"{name:6s} bytes per row: {replay.nbytes() / replay.rows:,.0f}")
    for view_name, view in views.items():
        rates = {name: [] for name in replays}
        for replay in replays.values():  # warm-up: the first gathers fault the storage's pages in
            batches_per_second(replay, view, args.batches)
        for _ in range(args.repeats):
            for name, replay in replays.items():  # alternated, so drift in the machine's speed hits both alike
                rates[name].append(batches_per_second(replay, view, args.batches))
        image, both = statistics.median(rates["image"]), statistics.median(rates["dict"])
        print(f"{view_name}: image {image:.1f} batches/s, dict {both:.1f} batches/s ({both / image - 1:+.1%})")


if __name__ == "__main__":
    main()
