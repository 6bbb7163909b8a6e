"""Parameter counts of DreamerV3 per size, per component.

    python tools/dreamer_sizes.py [--actions 6] [--continuous] [--image 64]

Counts are for 64x64 RGB observations and Atari Pong's 6 discrete actions unless told otherwise.
The slow critic (an EMA copy, not trained by gradients) is listed apart and left out of the total.
"""

from __future__ import annotations

import argparse

from worldmodels.dreamer import DreamerV3
from worldmodels.dreamer.world_model import SIZES
from worldmodels.training import EnvSpec


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def component_counts(size: str, spec: EnvSpec) -> dict[str, int]:
    agent = DreamerV3(size=size)
    agent.build(spec)
    wm, rssm = agent.world_model, agent.world_model.rssm
    counts = {
        "encoder": count(wm.encoder),
        "rssm": count(rssm),
        "decoder": count(wm.decoder),
        "reward": count(wm.reward_head),
        "continue": count(wm.continue_head),
        "actor": count(agent.actor),
        "critic": count(agent.critic.net),
    }
    counts["total"] = sum(counts.values())
    counts["slow critic"] = count(agent.critic.slow)
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actions", type=int, default=6)
    parser.add_argument("--continuous", action="store_true")
    parser.add_argument("--image", type=int, default=64)
    args = parser.parse_args()
    spec = (EnvSpec((3, args.image, args.image), 3, action_dim=args.actions) if args.continuous
            else EnvSpec((3, args.image, args.image), 3, num_actions=args.actions))
    rows = {size: component_counts(size, spec) for size in SIZES}
    keys = list(next(iter(rows.values())))
    print("| size | deter / CNN depth / MLP units x layers | " + " | ".join(keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    for size, counts in rows.items():
        s = SIZES[size]
        cells = " | ".join(f"{counts[k] / 1e6:.2f}M" for k in keys)
        print(f"| {size} | {s.deter} / {s.depth} / {s.units} x {s.layers} | {cells} |")


if __name__ == "__main__":
    main()
