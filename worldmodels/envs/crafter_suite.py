"""Crafter (Hafner 2021, "Benchmarking the Spectrum of Agent Capabilities", arXiv 2109.06780): an open
world survival game of 64x64 RGB frames, 17 actions and 22 achievements, episodes of at most 10,000
steps. ``task`` is ``reward`` (the game's reward: +1 for each achievement first unlocked in an episode,
-0.1 / +0.1 for each health point lost / regained) or ``no_reward`` (always 0, for unsupervised agents).

The benchmark's measure is not the reward but the success rate of each achievement: the percentage of
episodes in which it was unlocked at least once. Each episode's last step carries
``info["episode_extras"]`` = ``{"achievement_<name>": 1.0 or 0.0}`` for the 22 achievements, and
``crafter_score`` turns the success rates into the paper's score.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import gymnasium as gym
import numpy as np

from worldmodels.envs.config import EnvConfig
from worldmodels.envs.finish import finish
from worldmodels.envs.keys import one_line
from worldmodels.errors import ConfigError

# crafter.constants.achievements (crafter 1.8.3's data.yaml), in its order.
ACHIEVEMENTS = (
    "collect_coal", "collect_diamond", "collect_drink", "collect_iron", "collect_sapling", "collect_stone",
    "collect_wood", "defeat_skeleton", "defeat_zombie", "eat_cow", "eat_plant", "make_iron_pickaxe",
    "make_iron_sword", "make_stone_pickaxe", "make_stone_sword", "make_wood_pickaxe", "make_wood_sword",
    "place_furnace", "place_plant", "place_stone", "place_table", "wake_up",
)

# The random policy's published figures: score 1.6 +- 0.0 % and reward 2.1 +- 1.3 (arXiv 2109.06780, the
# table of baseline scores and rewards; the same in danijar/crafter README.md, "Scoreboards", commit
# e04542a2159f1aad3d4c5ad52e8185717380ee3a). That reward is, for each of 5 seeds, the return of a single
# episode (the first to begin in the last 100k of 1M steps; analysis/print_reward.py), then averaged over
# the seeds: a noisy figure. The mean return over every episode of those runs (the repository's
# scores/crafter_noreward-random.json, 29,784 episodes) is 1.38, the figure a mean over episodes compares with.
RANDOM_AGENT = {"score_percent": 1.6, "reward": 2.1, "mean_episode_return": 1.38}


def crafter_score(success_rates_percent: Mapping[str, float] | Sequence[float]) -> float:
    """The Crafter score in percent: exp(mean_i ln(1 + s_i)) - 1 over the 22 achievements' success
    rates s_i in percent, a geometric mean offset by 1 % so that an achievement never unlocked counts
    (arXiv 2109.06780, its evaluation protocol; danijar/crafter ``analysis/common.py``, ``compute_scores``, commit e04542a2159f1aad3d4c5ad52e8185717380ee3a)."""
    rates = list(success_rates_percent.values() if isinstance(success_rates_percent, Mapping) else success_rates_percent)
    if len(rates) != len(ACHIEVEMENTS) or not all(0.0 <= s <= 100.0 for s in rates):
        raise ConfigError(f"crafter_score takes the {len(ACHIEVEMENTS)} achievements' success rates in percent "
                          f"(0 to 100), and was given {len(rates)} values {rates}.")
    return math.exp(sum(math.log(1.0 + s) for s in rates) / len(rates)) - 1.0


def achievement_extras(info: dict[str, Any]) -> dict[str, float]:
    """Which achievements the episode unlocked at least once, from Crafter's per-episode counts."""
    counts = info["achievements"]
    return {f"achievement_{name}": float(counts.get(name, 0) > 0) for name in ACHIEVEMENTS}


class Crafter(gym.Env):
    """crafter.Env's old gym API (reset() -> obs; step -> obs, reward, done, info) as gymnasium's: an
    episode is terminated when the player dies (``info["discount"] == 0``), truncated when it reaches
    Crafter's length limit alive. Crafter seeds each world with (its seed, the episode's number), so a
    seeded reset makes a new crafter.Env of that seed: the same seed gives the same worlds. Not the same
    episodes across processes, though: Crafter 1.8.3 keeps each chunk's creatures in a set ordered by memory
    address, and its spawn/despawn step draws from that order (crafter/engine.py ``World.reset``,
    crafter/env.py ``Env._balance_object``)."""

    metadata = {"render_modes": []}

    def __init__(self, cfg: EnvConfig, seed: int):
        import crafter

        self._crafter = crafter
        self._options = dict(size=(cfg.image_size, cfg.image_size), reward=cfg.task == "reward", **(cfg.kwargs or {}))
        self._env, self._unplayed_seed = self._made(seed), seed  # unplayed: a reset with its seed needs no new one
        self.observation_space = gym.spaces.Box(0, 255, (cfg.image_size, cfg.image_size, 3), np.uint8)
        self.action_space = gym.spaces.Discrete(self._env.action_space.n)

    def _made(self, seed: int):
        try:
            return self._crafter.Env(seed=seed, **self._options)
        except TypeError as error:
            raise ConfigError(f"crafter.Env does not take env.kwargs {self._options} ({one_line(error)}); its "
                              "arguments are area, view, size, reward, length and seed.") from None

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None and seed != self._unplayed_seed:
            self._env = self._made(seed)
        self._unplayed_seed = None
        return self._env.reset(), {}

    def step(self, action):
        obs, reward, done, info = self._env.step(int(action))
        terminated = bool(done and info["discount"] == 0)
        return obs, float(reward), terminated, bool(done and not terminated), info


def make_crafter(cfg: EnvConfig, seed: int) -> gym.Env:
    return finish(Crafter(cfg, seed), cfg, seed, episode_extras=achievement_extras)
