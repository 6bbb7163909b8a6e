"""DeepMind Control Suite from pixels, as a gymnasium env with actions in [-1, 1].

dm_control ships no gymnasium adapter (shimmy's renders state observations and would add a
dependency), so this is the small one the pipeline needs: render at a set size and camera,
repeat actions, and keep the suite's time-limit truncation apart from true termination.
"""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np

from worldmodels.envs.config import EnvConfig
from worldmodels.errors import ConfigError

# Headless rendering: must be chosen before dm_control (and mujoco) are imported.
os.environ.setdefault("MUJOCO_GL", "egl")


class DMControl(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, cfg: EnvConfig, seed: int):
        if cfg.grayscale:
            raise ConfigError("env.grayscale is true for a DeepMind Control task; DMC pixels are RGB, set it to false.")
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
        self.observation_space = gym.spaces.Box(0, 255, (3, self._size, self._size), np.uint8)
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

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._env.reset()
        return self._render(), {}

    def step(self, action):
        action = self._low + (np.asarray(action, np.float32) + 1.0) * 0.5 * (self._high - self._low)
        reward, step = 0.0, None
        for _ in range(self._repeat):
            step = self._env.step(action)
            reward += step.reward or 0.0
            if step.last():
                break
        terminated = bool(step.last() and step.discount == 0.0)
        truncated = bool(step.last() and not terminated)
        return self._render(), reward, terminated, truncated, {}


def make_dmc(cfg: EnvConfig, seed: int) -> gym.Env:
    from worldmodels.envs.wrappers import FrameStack

    env: gym.Env = DMControl(cfg, seed)
    if cfg.max_episode_steps:
        env = gym.wrappers.TimeLimit(env, cfg.max_episode_steps)
    env = gym.wrappers.RecordEpisodeStatistics(env)
    if cfg.frame_stack > 1:
        env = FrameStack(env, cfg.frame_stack, cfg.stack_padding)
    env.action_space.seed(seed)
    return env
