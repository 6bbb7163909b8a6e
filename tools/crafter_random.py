"""Crafter's random policy through this package's crafter suite, beside the published figures (Hafner 2021,
arXiv 2109.06780: score 1.6 %, reward 2.1): episodes of uniformly random actions from seeded worlds, each
achievement's success rate (the percentage of episodes that unlocked it at least once), the Crafter score
of those rates and the mean episode reward. A check that the suite plays the benchmark's game and
measures it the benchmark's way.

    OMP_NUM_THREADS=1 python tools/crafter_random.py --episodes 100 --seed 0

Generating a 64x64 world takes seconds with opensimplex 0.4 (pure Python without numba), so 100 episodes
take tens of minutes on one core. Runs with one seed differ a little from process to process: Crafter
1.8.3 keeps each chunk's creatures in a set, ordered by memory address, and its spawn/despawn step draws
from that order (crafter/engine.py ``World.reset``, crafter/env.py ``Env._balance_object``).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from worldmodels.envs import EnvConfig, make_env
from worldmodels.envs.crafter_suite import ACHIEVEMENTS, RANDOM_AGENT, crafter_score


def play(episodes: int, seed: int) -> tuple[dict[str, float], list[float], list[int]]:
    """Success rates in percent, and each episode's return and length, of the random policy."""
    env = make_env(EnvConfig("crafter"), seed=seed)
    rng = np.random.default_rng(seed)
    unlocked = {name: 0.0 for name in ACHIEVEMENTS}
    returns, lengths = [], []
    start = time.time()
    for episode in range(episodes):
        env.reset(seed=seed if episode == 0 else None)
        done = False
        while not done:
            _, _, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
            done = terminated or truncated
        returns.append(float(info["episode"]["r"]))
        lengths.append(int(info["episode"]["l"]))
        for name in ACHIEVEMENTS:
            unlocked[name] += info["episode_extras"][f"achievement_{name}"]
        print(f"episode {episode + 1}/{episodes}: return {returns[-1]:.1f}, {lengths[-1]} steps "
              f"({time.time() - start:.0f} s)", file=sys.stderr, flush=True)
    return {name: 100.0 * count / episodes for name, count in unlocked.items()}, returns, lengths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rates, returns, lengths = play(args.episodes, args.seed)
    print(f"Crafter, random policy, {args.episodes} episodes from seed {args.seed} "
          f"(mean length {np.mean(lengths):.0f} steps):")
    for name, rate in sorted(rates.items(), key=lambda item: -item[1]):
        print(f"  {name:22s} {rate:5.1f} %")
    print(f"{'':14s}{'ours':>10s}{'published':>12s}")
    print(f"{'score (%)':14s}{crafter_score(rates):10.2f}{RANDOM_AGENT['score_percent']:12.1f}")
    print(f"{'reward':14s}{np.mean(returns):10.2f}{RANDOM_AGENT['reward']:12.1f}   (published: one episode a seed, "
          f"mean over 5 seeds; ours: mean over episodes +- {np.std(returns):.2f})")
    print(f"{'mean return':14s}{np.mean(returns):10.2f}{RANDOM_AGENT['mean_episode_return']:12.2f}   (published runs' "
          "episodes, all of them)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
