"""Several environments stepped together, in lock step, with next-step autoreset.

gymnasium's SyncVectorEnv does the same but merges every info dict key by key on every step, which
cost about 13% of Atari's raw speed here; this loop keeps only what the pipeline uses: the frames,
rewards, the terminated/truncated/first flags, and the statistics of games that just ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import gymnasium as gym
import numpy as np


@dataclass
class Step:
    """One vector step. Row ``i`` is environment ``i``'s newest frame and how it was reached: ``first``
    marks a reset frame (its reward is 0 and the action given for it was ignored)."""

    obs: np.ndarray  # (N, C, H, W) uint8
    reward: np.ndarray  # (N,) float32
    terminated: np.ndarray  # (N,) bool
    truncated: np.ndarray  # (N,) bool
    first: np.ndarray  # (N,) bool
    finished_games: list[tuple[int, float, int]]  # (env index, true score, agent steps) of games that ended


class VectorEnv:
    def __init__(self, env_fns: list[Callable[[], gym.Env]]):
        self.envs = [fn() for fn in env_fns]
        self.num_envs = len(self.envs)
        self.single_observation_space = self.envs[0].observation_space
        self.single_action_space = self.envs[0].action_space
        self._obs = np.zeros((self.num_envs, *self.single_observation_space.shape), np.uint8)
        self._needs_reset = np.ones(self.num_envs, bool)

    def reset(self, seed: int | None = None) -> Step:
        for i, env in enumerate(self.envs):
            self._obs[i], _ = env.reset(seed=None if seed is None else seed + i)
        self._needs_reset[:] = False
        n = self.num_envs
        return Step(self._obs.copy(), np.zeros(n, np.float32), np.zeros(n, bool), np.zeros(n, bool), np.ones(n, bool), [])

    def step(self, actions) -> Step:
        n = self.num_envs
        reward = np.zeros(n, np.float32)
        terminated, truncated = np.zeros(n, bool), np.zeros(n, bool)
        first = self._needs_reset.copy()
        finished = []
        for i, env in enumerate(self.envs):
            if first[i]:
                self._obs[i], _ = env.reset()
                self._needs_reset[i] = False
                continue
            self._obs[i], reward[i], terminated[i], truncated[i], info = env.step(actions[i])
            if terminated[i] or truncated[i]:
                self._needs_reset[i] = True
            if "episode" in info:
                finished.append((i, float(info["episode"]["r"]), int(info["episode"]["l"])))
        return Step(self._obs.copy(), reward, terminated, truncated, first, finished)

    def random_actions(self, rng: np.random.Generator) -> np.ndarray:
        space = self.single_action_space
        if isinstance(space, gym.spaces.Discrete):  # rng.integers costs ~20 us a call, a third of the loop's overhead
            return (rng.random(self.num_envs) * space.n).astype(np.int64)
        return rng.uniform(space.low, space.high, (self.num_envs, *space.shape)).astype(np.float32)

    def close(self):
        for env in self.envs:
            env.close()
