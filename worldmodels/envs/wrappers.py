"""Wrappers shared by every suite: channels-first frames and a channel-concatenating frame stack."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class ChannelsFirst(gym.ObservationWrapper):
    """(H, W) or (H, W, C) uint8 frames to (C, H, W), the layout of torch's conv layers."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        shape = env.observation_space.shape
        c = 1 if len(shape) == 2 else shape[2]
        self.observation_space = gym.spaces.Box(0, 255, (c, shape[0], shape[1]), np.uint8)

    def observation(self, frame: np.ndarray) -> np.ndarray:
        return frame[None] if frame.ndim == 2 else np.ascontiguousarray(frame.transpose(2, 0, 1))


class FrameStack(gym.Wrapper):
    """The last ``k`` frames concatenated along channels, (k*C, H, W). At reset the stack is padded
    with the first frame (``padding="repeat"``, DrQ-v2's and DreamerV3's frame stacks) or with zeros
    (``"zero"``, Dopamine's: its Atari 100k agents begin every episode, life losses included, from a
    zeroed state). Written here because gymnasium's FrameStackObservation adds a leading axis
    instead, and because the replay rebuilds these same stacks from single frames (it must pad the
    same way: ``TransitionView``)."""

    def __init__(self, env: gym.Env, k: int, padding: str = "repeat"):
        super().__init__(env)
        c, h, w = env.observation_space.shape
        self.k, self.c, self.zero_pad = k, c, padding == "zero"
        self.observation_space = gym.spaces.Box(0, 255, (k * c, h, w), np.uint8)
        self._stack = np.zeros((k * c, h, w), np.uint8)

    def reset(self, **kwargs):
        frame, info = self.env.reset(**kwargs)
        if self.zero_pad:
            self._stack[:] = 0
            self._stack[-self.c:] = frame
        else:
            self._stack[:] = np.tile(frame, (self.k, 1, 1))
        return self._stack.copy(), info

    def step(self, action):
        frame, reward, terminated, truncated, info = self.env.step(action)
        self._stack[: -self.c] = self._stack[self.c :]
        self._stack[-self.c :] = frame
        return self._stack.copy(), reward, terminated, truncated, info


class ClipReward(gym.RewardWrapper):
    """sign(reward), the DQN convention; the episode statistics keep the true score."""

    def reward(self, reward):
        return float(np.sign(reward))
