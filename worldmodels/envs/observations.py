"""What an observation is, for every suite: one array, or a dict of named arrays (keys).

Each key is one of two kinds, and its kind decides which network reads it:

    image   uint8 (C, H, W), channels first; a frame stack of k frames is (k*C, H, W). Read by a CNN.
    vector  float32 (D,); a frame stack of k frames is (k*D,). Read by an MLP.

An environment whose ``observation_space`` is one ``Box`` gives one array, named ``obs`` (every Atari
and DMC-pixels preset, and a state-only task); one whose space is a ``gym.spaces.Dict`` gives a dict of
arrays, one per key, in the space's order. Batches and the agents' ``act`` receive the same form as
tensors: one (N, ...) tensor, or a dict of them. The replay stores one frame of each key per step
(images: the newest C channels; vectors: the newest D values) and rebuilds stacks when it samples.

``map_obs`` applies one function to either form, so code that moves, converts or indexes observations
needs no branch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from worldmodels.errors import ConfigError

SINGLE_KEY = "obs"  # the name of the one key of an environment whose observation is one array


@dataclass(frozen=True)
class ObsKey:
    """One observation key as the agent sees it (frame stack included), and one frame of it as the
    replay stores it."""

    name: str
    kind: str  # "image" or "vector"
    shape: tuple[int, ...]  # (k*C, H, W) or (k*D,)
    frame_stack: int = 1

    @property
    def frame_shape(self) -> tuple[int, ...]:
        """One frame: (C, H, W) or (D,)."""
        return (self.shape[0] // self.frame_stack, *self.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8) if self.kind == "image" else np.dtype(np.float32)

    def describe(self) -> str:
        size = "x".join(str(s) for s in self.shape)
        return f"{self.name}: {self.kind} {size} {self.dtype.name}"


def is_image_space(space: gym.Space) -> bool:
    """An image key's space: uint8 (C, H, W)."""
    return isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3


def key_of(name: str, space: gym.Space, frame_stack: int = 1) -> ObsKey:
    """The key a wrapped environment's ``Box`` gives: a uint8 (C, H, W) box is an image, a float32
    (D,) box a vector. Anything else is refused with the key and its space named."""
    if is_image_space(space):
        return ObsKey(name, "image", tuple(space.shape), frame_stack)
    if isinstance(space, gym.spaces.Box) and space.dtype == np.float32 and len(space.shape) == 1:
        return ObsKey(name, "vector", tuple(space.shape), frame_stack)
    raise ConfigError(f"observation key '{name}' has space {space}; the agents read uint8 (C, H, W) images and "
                      "float32 (D,) vectors (the gym suite converts other spaces to one of these).")


def layout_of(space: gym.Space, frame_stack: int = 1) -> tuple[ObsKey, ...]:
    """Every key of an environment's observation space, in order."""
    if isinstance(space, gym.spaces.Dict):
        return tuple(key_of(name, sub, frame_stack) for name, sub in space.spaces.items())
    return (key_of(SINGLE_KEY, space, frame_stack),)


def is_dict(layout: tuple[ObsKey, ...]) -> bool:
    """Whether observations of this layout are dicts (else one array named ``obs``)."""
    return not (len(layout) == 1 and layout[0].name == SINGLE_KEY)


def map_obs(fn: Callable[[Any], Any], obs: Any) -> Any:
    """``fn`` applied to one observation array/tensor, or to each value of a dict of them."""
    if isinstance(obs, dict):
        return {name: fn(value) for name, value in obs.items()}
    return fn(obs)


def map_obs_keys(fn: Callable[[ObsKey, Any], Any], layout: tuple[ObsKey, ...], obs: Any) -> Any:
    """``fn(key, value)`` for each key of ``layout``: on a dict, per key; on one array, once."""
    if isinstance(obs, dict):
        return {key.name: fn(key, obs[key.name]) for key in layout}
    return fn(layout[0], obs)


def summary(layout: tuple[ObsKey, ...]) -> str:
    """One line per key for the start-up summary: which network reads it."""
    reader = {"image": "CNN", "vector": "MLP"}
    return "\n".join(f"  {key.describe()} -> {reader[key.kind]}" for key in layout)


def buffer_for(space: gym.Space, n: int) -> Any:
    """Zeros for ``n`` observations of an environment's (wrapped) observation space."""
    if isinstance(space, gym.spaces.Dict):
        return {name: np.zeros((n, *sub.shape), sub.dtype) for name, sub in space.spaces.items()}
    return np.zeros((n, *space.shape), space.dtype)


def put_row(buffer: Any, i: int, obs: Any) -> None:
    """Row ``i`` of a ``buffer_for`` buffer set to one environment's observation."""
    if isinstance(buffer, dict):
        for name, array in buffer.items():
            array[i] = obs[name]
    else:
        buffer[i] = obs


def describe_layout(layout: tuple[ObsKey, ...]) -> str:
    """The keys on one line: ``obs: image 12x84x84 uint8`` or ``pixels: image ..., observation: vector ...``."""
    return ", ".join(key.describe() for key in layout)
