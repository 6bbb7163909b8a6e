"""DeepMind Control Suite as a gymnasium env with actions in [-1, 1]: from pixels (``env.observation:
pixels``, the default), from the task's state (``states``: the time step's observation dict flattened, in
its order, into one float32 vector), or both (keys ``pixels`` and ``observation``).

dm_control ships no gymnasium adapter (shimmy's would add a dependency), so this is the small one the
pipeline needs: render at a set size and camera, repeat actions (rendering once per agent step, not once
per physics step), and keep the suite's time-limit truncation apart from true termination.
"""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np

from worldmodels.envs.config import EnvConfig
from worldmodels.envs.finish import finish
from worldmodels.envs.keys import pixels_and_state, pixels_and_state_space
from worldmodels.errors import ConfigError

# Headless rendering: must be chosen before dm_control (and mujoco) are imported.
os.environ.setdefault("MUJOCO_GL", "egl")


class DMControl(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, cfg: EnvConfig, seed: int):
        try:
            from dm_control import suite
        except Exception as error:  # mujoco fails at import when MUJOCO_GL names a missing backend
            raise ConfigError(
                f"dm_control could not be imported with MUJOCO_GL={os.environ.get('MUJOCO_GL')} ({error}); "
                "install Mesa's EGL (apt install libegl1 libgl1) or set MUJOCO_GL to a backend this machine has."
            ) from None
        domain, _, task = cfg.task.partition("-")
        if (domain, task) not in suite.ALL_TASKS:
            known = ", ".join(f"{d}-{t}" for d, t in suite.ALL_TASKS[:6])
            raise ConfigError(f"env.task '{cfg.task}' is not a DeepMind Control task; write it as domain-task, e.g. {known}.")
        self._env = suite.load(domain, task, task_kwargs={"random": seed})
        self._size, self._camera, self._repeat = cfg.image_size, cfg.camera, cfg.action_repeat
        spec = self._env.action_spec()
        self._low, self._high = spec.minimum.astype(np.float32), spec.maximum.astype(np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, spec.shape, np.float32)
        self._mode = cfg.observation
        state_size = sum(int(np.prod(array.shape)) for array in self._env.observation_spec().values())
        self.observation_space = pixels_and_state_space(
            self._mode, gym.spaces.Box(0, 255, (3, self._size, self._size), np.uint8),
            gym.spaces.Box(-np.inf, np.inf, (state_size,), np.float32))
        if self._mode != "states":
            self._render()  # fail now, with a clear message, if rendering is impossible

    def _render(self) -> np.ndarray:
        try:
            frame = self._env.physics.render(height=self._size, width=self._size, camera_id=self._camera)
        except Exception as error:
            raise ConfigError(
                f"MuJoCo could not render with MUJOCO_GL={os.environ.get('MUJOCO_GL')} ({error}); "
                "install Mesa's EGL (apt install libegl1 libgl1) or set MUJOCO_GL=osmesa."
            ) from None
        return np.ascontiguousarray(frame.transpose(2, 0, 1))

    def _observation(self, time_step) -> np.ndarray | dict[str, np.ndarray]:
        return pixels_and_state(self._mode, self._render, lambda: flat_state(time_step.observation))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self._observation(self._env.reset()), {}

    def step(self, action):
        # The agents' [-1, 1] to the spec's bounds here rather than in the shared unit_actions: the adapter
        # declares the unit box, as it always has, so its physics (and pixels) stay those of earlier runs.
        action = self._low + (np.asarray(action, np.float32) + 1.0) * 0.5 * (self._high - self._low)
        reward, step = 0.0, None
        for _ in range(self._repeat):
            step = self._env.step(action)
            reward += step.reward or 0.0
            if step.last():
                break
        terminated = bool(step.last() and step.discount == 0.0)
        truncated = bool(step.last() and not terminated)
        return self._observation(step), reward, terminated, truncated, {}


def flat_state(observation: dict[str, np.ndarray]) -> np.ndarray:
    """A time step's observation dict (an OrderedDict: the task's order) as one float32 vector."""
    return np.concatenate([np.asarray(value, np.float32).reshape(-1) for value in observation.values()])


def make_dmc(cfg: EnvConfig, seed: int) -> gym.Env:
    return finish(DMControl(cfg, seed), cfg, seed, repeats_inside=True)
