"""Wrappers every suite shares, on observations of one array or a dict of keys
(``worldmodels.envs.observations``): image resizing and grayscale, a frame stack, action repeat, reward
clipping, actions rescaled to [-1, 1], and an episode's extra statistics. ``worldmodels.envs.finish``
applies them in order."""

from __future__ import annotations

from typing import Any, Callable

import cv2
import gymnasium as gym
import numpy as np

from worldmodels.envs.observations import SINGLE_KEY, is_image_space as is_image
from worldmodels.errors import ConfigError


def named_spaces(space: gym.Space) -> dict[str, gym.spaces.Box]:
    """The keys of an observation space: a Dict's members, or the one key ``obs``."""
    return dict(space.spaces) if isinstance(space, gym.spaces.Dict) else {SINGLE_KEY: space}


def same_form(like: gym.Space, spaces: dict[str, gym.spaces.Box]) -> gym.Space:
    """``spaces`` in the form of ``like``: a Dict (in this order), or the one bare Box."""
    return gym.spaces.Dict(list(spaces.items())) if isinstance(like, gym.spaces.Dict) else spaces[SINGLE_KEY]


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """A (C, H, W) uint8 image to (C, size, size) with cv2's INTER_AREA (pixel-area averaging, which
    gymnasium's AtariPreprocessing uses too). cv2 resizes at most 4 channels at a time."""
    hwc = image.transpose(1, 2, 0)
    parts = [cv2.resize(hwc[:, :, c:c + 4], (size, size), interpolation=cv2.INTER_AREA)
             for c in range(0, hwc.shape[2], 4)]
    parts = [part[:, :, None] if part.ndim == 2 else part for part in parts]
    return np.ascontiguousarray(np.concatenate(parts, axis=2).transpose(2, 0, 1))


def to_gray(image: np.ndarray) -> np.ndarray:
    """A (3, H, W) RGB image to (1, H, W): cv2's luma, 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601)."""
    return cv2.cvtColor(np.ascontiguousarray(image.transpose(1, 2, 0)), cv2.COLOR_RGB2GRAY)[None]


def image_changes(space: gym.Space, size: int | None, grayscale: bool) -> bool:
    """Whether ``ProcessImages`` changes a key of this space: an RGB image to gray, or to another size."""
    if not is_image(space):
        return False
    c, h, w = space.shape
    return (grayscale and c == 3) or (size is not None and (h, w) != (size, size))


class ProcessImages(gym.ObservationWrapper):
    """Each image key resized to ``size`` x ``size`` (``None``: kept) and, with ``grayscale``, each
    3-channel (RGB) image made one channel; images of other channel counts (a MinAtar grid) keep theirs.
    Vectors pass unchanged. Suites that render at the right size and colour (Atari, DMC, the test tasks)
    get no such wrapper (``needed``)."""

    def __init__(self, env: gym.Env, size: int | None, grayscale: bool):
        super().__init__(env)
        self._size, self._gray = size, grayscale
        spaces = named_spaces(env.observation_space)
        self._changed = [name for name, space in spaces.items() if image_changes(space, size, grayscale)]
        for name in self._changed:
            c, h, w = spaces[name].shape
            c = 1 if grayscale and c == 3 else c
            spaces[name] = gym.spaces.Box(0, 255, (c, *((size, size) if size else (h, w))), np.uint8)
        self.observation_space = same_form(env.observation_space, spaces)

    @staticmethod
    def needed(space: gym.Space, size: int | None, grayscale: bool) -> bool:
        return any(image_changes(sub, size, grayscale) for sub in named_spaces(space).values())

    def _process(self, image: np.ndarray) -> np.ndarray:
        if self._gray and image.shape[0] == 3:
            image = to_gray(image)  # before resizing: one channel to resize instead of three
        if self._size is not None and image.shape[1:] != (self._size, self._size):
            image = resize(image, self._size)
        return image

    def observation(self, obs):
        if not isinstance(obs, dict):
            return self._process(obs)
        return {name: self._process(value) if name in self._changed else value for name, value in obs.items()}


class FrameStack(gym.Wrapper):
    """The last ``k`` frames of each key concatenated along its first axis: images (k*C, H, W), vectors
    (k*D,). At reset the stack is padded with the first frame (``padding="repeat"``, DrQ-v2's and
    DreamerV3's frame stacks) or with zeros (``"zero"``, Dopamine's: its Atari 100k agents begin every
    episode, life losses included, from a zeroed state). Written here because gymnasium's
    FrameStackObservation adds a leading axis instead, and because the replay rebuilds these same stacks
    from single frames (it must pad the same way: ``TransitionView``)."""

    def __init__(self, env: gym.Env, k: int, padding: str = "repeat"):
        super().__init__(env)
        self.k, self.zero_pad = k, padding == "zero"
        frames = named_spaces(env.observation_space)
        self._frame_size = {name: space.shape[0] for name, space in frames.items()}
        self._stacks = {name: np.zeros((k * space.shape[0], *space.shape[1:]), space.dtype)
                        for name, space in frames.items()}
        self.observation_space = same_form(env.observation_space, {
            name: gym.spaces.Box(self._tile(space.low), self._tile(space.high), dtype=space.dtype)
            for name, space in frames.items()})

    def _tile(self, frame: np.ndarray) -> np.ndarray:
        return np.tile(frame, (self.k,) + (1,) * (frame.ndim - 1))

    def _out(self, like):
        stacks = {name: stack.copy() for name, stack in self._stacks.items()}
        return stacks if isinstance(like, dict) else stacks[SINGLE_KEY]

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        for name, frame in (obs.items() if isinstance(obs, dict) else [(SINGLE_KEY, obs)]):
            stack, size = self._stacks[name], self._frame_size[name]
            if self.zero_pad:
                stack[:] = 0
                stack[-size:] = frame
            else:
                stack[:] = self._tile(frame)
        return self._out(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        for name, frame in (obs.items() if isinstance(obs, dict) else [(SINGLE_KEY, obs)]):
            stack, size = self._stacks[name], self._frame_size[name]
            stack[:-size] = stack[size:]
            stack[-size:] = frame
        return self._out(obs), reward, terminated, truncated, info


class ActionRepeat(gym.Wrapper):
    """Each action played ``k`` times, the rewards summed; stops early when the episode ends. The last
    step's observation and info are returned."""

    def __init__(self, env: gym.Env, k: int):
        super().__init__(env)
        self.k = k

    def step(self, action):
        total = 0.0
        for _ in range(self.k):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        return obs, total, terminated, truncated, info


class ClipReward(gym.RewardWrapper):
    """sign(reward), the DQN convention; the episode statistics keep the true score."""

    def reward(self, reward):
        return float(np.sign(reward))


class UnitActions(gym.ActionWrapper):
    """A bounded Box action space seen as [-1, 1] (the agents' tanh-squashed actions): ``a`` maps to
    ``low + (a + 1) / 2 * (high - low)``, after clipping ``a`` to [-1, 1]."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = env.action_space
        self._low, self._high = space.low.astype(np.float32), space.high.astype(np.float32)
        self._dtype = space.dtype
        self.action_space = gym.spaces.Box(-1.0, 1.0, space.shape, np.float32)

    def action(self, action):
        unit = np.clip(np.asarray(action, np.float32), -1.0, 1.0)
        return (self._low + (unit + 1.0) * 0.5 * (self._high - self._low)).astype(self._dtype)


def unit_actions(env: gym.Env) -> gym.Env:
    """``env`` with Box actions in [-1, 1]: rescaled if bounded otherwise, a sentence if unbounded or not
    floats. Discrete and MultiDiscrete actions, and a float32 Box already [-1, 1], pass unchanged."""
    space = env.action_space
    if not isinstance(space, gym.spaces.Box):
        return env
    if not np.issubdtype(space.dtype, np.floating):
        raise ConfigError(f"the action space is {space}, a Box of {space.dtype}; the agents act with floats in [-1, 1] "
                          "(use a Discrete or MultiDiscrete space for integer actions).")
    if not (np.isfinite(space.low).all() and np.isfinite(space.high).all()):
        raise ConfigError(f"the action space is {space}, which is unbounded; the agents act in [-1, 1] and need finite "
                          "bounds to rescale to, so bound it in the environment or in an env.make factory.")
    if space.dtype == np.float32 and (space.low == -1).all() and (space.high == 1).all():
        return env
    return UnitActions(env)


class EpisodeExtras(gym.Wrapper):
    """At an episode's last step (terminated or truncated), ``info["episode_extras"]`` holds
    ``extras(info)``: a dict of floats the training loop logs with the episode's score (Crafter's
    achievements). Placed outside the time limit, so a truncated episode has them too."""

    def __init__(self, env: gym.Env, extras: Callable[[dict[str, Any]], dict[str, float]]):
        super().__init__(env)
        self._extras = extras

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            info = {**info, "episode_extras": self._extras(info)}
        return obs, reward, terminated, truncated, info
