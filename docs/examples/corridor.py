"""A custom environment for docs/your_own_environment.md: walk along a corridor to a goal.

The observation is a dict: a top-down picture of the corridor (an image key, read by a CNN) and the
walker's and goal's positions (a vector key, read by an MLP). Three actions: left, stay, right.
"""

import gymnasium as gym
import numpy as np


class Corridor(gym.Env):
    def __init__(self, length: int = 10, max_steps: int = 30):
        self.length, self.max_steps = length, max_steps
        self.observation_space = gym.spaces.Dict({
            "view": gym.spaces.Box(0, 255, (16, 16 * length, 3), np.uint8),  # height, width, RGB
            "position": gym.spaces.Box(0.0, 1.0, (2,), np.float32),
        })
        self.action_space = gym.spaces.Discrete(3)

    def _observation(self):
        view = np.zeros((16, 16 * self.length, 3), np.uint8)
        view[:, 16 * self.goal:16 * (self.goal + 1), 1] = 255  # the goal in green
        view[4:12, 16 * self.walker + 4:16 * self.walker + 12, 0] = 255  # the walker in red
        position = np.array([self.walker, self.goal], np.float32) / (self.length - 1)
        return {"view": view, "position": position}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.walker, self.goal = self.np_random.choice(self.length, 2, replace=False)
        self.steps = 0
        return self._observation(), {}

    def step(self, action):
        self.walker = int(np.clip(self.walker + int(action) - 1, 0, self.length - 1))
        self.steps += 1
        reached = self.walker == self.goal
        return self._observation(), float(reached), reached, self.steps >= self.max_steps, {}
