"""Small environments that tests/test_gym_suite.py names by import path (``env.entry_point`` and
``env.make``): importable as ``envs_for_tests`` because pytest puts tests/ on sys.path (tests/ has no
__init__.py, and its conftest.py is imported the same way)."""

import gymnasium as gym
import numpy as np


class Counter(gym.Env):
    """Observes [start + t] (float32) at step t of 5-step episodes; Discrete(2) actions; reward 1 a step."""

    metadata = {"render_modes": []}

    def __init__(self, start: float = 0.0):
        self.start = start
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([self.start], np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([self.start + self.t], np.float32), 1.0, False, self.t >= 5, {}


def make_counter(start: float = 0.0) -> Counter:
    return Counter(start)


def make_no_env():
    return "not an environment"


# An id that importing this module registers: env.task 'envs_for_tests:WorldmodelsTest/Counter-v0'.
if "WorldmodelsTest/Counter-v0" not in gym.registry:
    gym.register(id="WorldmodelsTest/Counter-v0", entry_point=Counter, kwargs={"start": 7.0})
