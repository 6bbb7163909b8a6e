"""Small tasks drawn with numpy, no physics engine: they exist so that tests can check that agents
learn (a correct agent solves them in a few thousand steps on 2 CPU cores), not only shapes.

- ``catch`` (discrete, 3 actions): a ball falls down an 8x8 grid; move the paddle on the bottom row
  under it. +1 for a catch, -1 for a miss, 7 steps per episode. A random policy scores about -0.75.
- ``reach`` (continuous, 2-D actions in [-1, 1]): move a point to a goal drawn anew each episode;
  reward -distance each step, 30 steps per episode (truncated). A random policy scores about -30.
- ``reach_sparse``: ``reach`` with a sparse, small reward: 0.1 on each step that ends within 0.25 (one
  grid cell) of the goal, 0 otherwise. A random policy scores about 0.12 (a quarter of its episodes
  touch the goal at all); one that goes straight to the goal and stays scores about 2.8. It exists for
  tools/self_overfitting.py: sparse small rewards are where the A-LIX paper's encoder self-overfits.

Each task is seen as ``env.observation`` says: ``pixels`` (the board drawn at image_size, the default),
``states`` (a float32 vector: for catch, one-hot codes of the ball's row, the ball's column and the
paddle's column, 3 x 8 values in {0, 1}; for reach, the point's x, y and the goal's x, y in [-1, 1]), or ``both`` (keys ``pixels`` and ``observation``): cheap
vector tasks for tests of agents that read states.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from worldmodels.envs.config import EnvConfig
from worldmodels.envs.finish import finish
from worldmodels.envs.keys import pixels_and_state, pixels_and_state_space
from worldmodels.errors import ConfigError

GRID = 8


def _draw(image_size: int, grayscale: bool, cells: list[tuple[int, int, tuple[int, int, int]]],
          blend: bool = False) -> np.ndarray:
    """Paint grid cells (row, col, rgb) on a black GRID x GRID board, upscaled to image_size. Later
    cells cover earlier ones, or with ``blend`` add to them (clipped), so two objects in one cell
    both stay visible."""
    board = np.zeros((3, GRID, GRID), np.int32 if blend else np.uint8)
    for row, col, rgb in cells:
        board[:, row, col] = board[:, row, col] + rgb if blend else rgb
    board = board.clip(0, 255).astype(np.uint8)
    idx = np.arange(image_size) * GRID // image_size
    frame = board[:, idx][:, :, idx]
    if grayscale:
        frame = frame.max(axis=0, keepdims=True)
    return frame


class GridTask(gym.Env):
    """A task on the grid, observed as ``env.observation`` says (module docstring)."""

    STATE: gym.spaces.Box  # the space of the task's state vector

    def __init__(self, cfg: EnvConfig):
        self._size, self._gray, self._mode = cfg.image_size, cfg.grayscale, cfg.observation
        pixels = gym.spaces.Box(0, 255, (1 if self._gray else 3, self._size, self._size), np.uint8)
        self.observation_space = pixels_and_state_space(self._mode, pixels, self.STATE)

    def _obs(self):
        return pixels_and_state(self._mode, self._pixels, self._state)


class Catch(GridTask):
    BALL, PADDLE = (255, 255, 255), (0, 160, 255)
    # One-hot positions rather than positions / 8: an agent that decodes its input with a squared
    # error (DreamerV3's vector decoder, 2301.04104 section 3) sees a one-cell error as 2 instead of
    # (1/8)^2 = 0.016, about the weight a cell carries in the pixel view.
    STATE = gym.spaces.Box(0.0, 1.0, (3 * GRID,), np.float32)

    def __init__(self, cfg: EnvConfig):
        super().__init__(cfg)
        self.action_space = gym.spaces.Discrete(3)

    def _state(self) -> np.ndarray:
        state = np.zeros((3, GRID), np.float32)
        state[[0, 1, 2], [self._ball[0], self._ball[1], self._paddle]] = 1.0
        return state.reshape(-1)

    def _pixels(self):
        return _draw(self._size, self._gray, [(self._ball[0], self._ball[1], self.BALL), (GRID - 1, self._paddle, self.PADDLE)])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._ball = [0, int(self.np_random.integers(GRID))]
        self._paddle = int(self.np_random.integers(GRID))
        return self._obs(), {}

    def step(self, action):
        self._paddle = int(np.clip(self._paddle + int(action) - 1, 0, GRID - 1))
        self._ball[0] += 1
        done = self._ball[0] == GRID - 1
        reward = (1.0 if self._ball[1] == self._paddle else -1.0) if done else 0.0
        return self._obs(), reward, done, False, {}


class Reach(GridTask):
    EPISODE_STEPS, SPEED = 30, 0.25
    # Colours that add up to a third one where point and goal share a cell: the goal must not vanish
    # under the point (a policy that cannot see the goal once on it drifts away from it).
    POINT, GOAL = (0, 160, 255), (255, 60, 0)
    POINT_GRAY, GOAL_GRAY = (150, 150, 150), (100, 100, 100)
    STATE = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)

    def __init__(self, cfg: EnvConfig):
        super().__init__(cfg)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def _state(self) -> np.ndarray:
        return np.concatenate([self._point, self._goal]).astype(np.float32)

    def _cell(self, xy):
        return tuple(int(v) for v in np.clip((xy + 1.0) / 2.0 * GRID, 0, GRID - 1e-6))

    def _pixels(self):
        goal, point = (self.GOAL_GRAY, self.POINT_GRAY) if self._gray else (self.GOAL, self.POINT)
        return _draw(self._size, self._gray, [(*self._cell(self._goal), goal), (*self._cell(self._point), point)],
                     blend=True)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._point = self.np_random.uniform(-1, 1, 2)
        self._goal = self.np_random.uniform(-1, 1, 2)
        self._t = 0
        return self._obs(), {}

    def step(self, action):
        self._point = np.clip(self._point + self.SPEED * np.clip(action, -1, 1), -1, 1)
        self._t += 1
        return self._obs(), self._reward(), False, self._t >= self.EPISODE_STEPS, {}

    def _reward(self) -> float:
        return -float(np.linalg.norm(self._point - self._goal))


class ReachSparse(Reach):
    RADIUS, REWARD = 0.25, 0.1

    def _reward(self) -> float:
        return self.REWARD if np.linalg.norm(self._point - self._goal) < self.RADIUS else 0.0


TASKS = {"catch": Catch, "reach": Reach, "reach_sparse": ReachSparse}


def make_toy(cfg: EnvConfig, seed: int) -> gym.Env:
    if cfg.task not in TASKS:
        raise ConfigError(f"env.task '{cfg.task}' is not a test task; choose one of {', '.join(TASKS)}.")
    return finish(TASKS[cfg.task](cfg), cfg, seed)
