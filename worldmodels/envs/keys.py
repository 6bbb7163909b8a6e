"""Any Gymnasium observation space as the agents' keys (``worldmodels.envs.observations``).

``ObservationKeys`` flattens, converts and routes an environment's observations:

- Names. ``Dict`` and ``Tuple`` spaces are flattened into named keys: nested dict names joined with
  ``/`` (``robot/joints``), tuple members numbered (``sensors/0``, ``sensors/1``; a top-level Tuple
  gives ``0``, ``1``...). An environment whose space is one leaf gives the one key ``obs``.
- Kinds. Each leaf becomes an image or a vector:

  - ``Box`` uint8 with 2 dims (H, W): image (1, H, W).
  - ``Box`` uint8 with 3 dims: image (C, H, W). The channels are on the smaller of the first and the
    last axis, the last on a tie: (64, 64, 3) and (10, 10, 10) are channels-last, the layout of
    gymnasium's renders, the ALE, Crafter and MinAtar; (3, 84, 84) and (12, 64, 64) channels-first,
    torch's. An image is never so small that H or W is below its channel count.
  - any other ``Box`` (float, int, bool; any shape): a float32 vector, flattened in C order.
  - ``Discrete(n, start)``: a float32 one-hot of length n (index ``x - start``).
  - ``MultiBinary``: a float32 vector, flattened.

  Anything else (Text, Graph, Sequence, MultiDiscrete...) is refused with one sentence naming the key
  and its space, unless routing drops the key.
- Routing. By default images go to the CNN and vectors to the MLP. With ``cnn_keys`` or ``mlp_keys``
  set (regular expressions, ``re.fullmatch`` on key names), the keys ``cnn_keys`` matches are images,
  those ``mlp_keys`` matches vectors (an image flattened to float32, its values kept in 0..255), and the
  keys neither matches are dropped. An image routed to the CNN must be uint8 or bool with 2 or 3 dims.
  A bool grid (MinAtar's 10x10xC) becomes uint8 0 or 255 (full contrast for the CNN, as a rendered frame
  has), channels-first by the rule above; by default such a grid is a vector of 0s and 1s.
- Form. An environment whose space is a single ``Box``, ``Discrete`` or ``MultiBinary`` gives a bare
  array (its key ``obs``); one with a ``Dict`` or ``Tuple`` space, or with rendered pixels added
  (``AddPixels``), a ``gym.spaces.Dict`` of keys in the order above.

``AddPixels`` adds the rendered frame as the key ``pixels``; a bare observation beside it becomes the key
``observation``, the names of TorchRL's ``GymEnv(from_pixels=True, pixels_only=False)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from worldmodels.envs.observations import SINGLE_KEY
from worldmodels.errors import ConfigError

PIXELS, OBSERVATION = "pixels", "observation"


@dataclass(frozen=True)
class Leaf:
    """One leaf of an observation space: its key name, where it sits in an observation, its space."""

    name: str
    path: tuple[str | int, ...]
    space: gym.Space


@dataclass(frozen=True)
class Key:
    """One key as the agents receive it: the leaf it comes from, its converted space and the conversion."""

    leaf: Leaf
    space: gym.spaces.Box
    convert: Callable[[Any], np.ndarray]


def leaves(space: gym.Space, path: tuple[str | int, ...] = ()) -> list[Leaf]:
    """Every leaf of ``space``, depth first, in the order of its Dict and Tuple members."""
    if isinstance(space, gym.spaces.Dict):
        return [leaf for name, sub in space.spaces.items() for leaf in leaves(sub, (*path, name))]
    if isinstance(space, gym.spaces.Tuple):
        return [leaf for i, sub in enumerate(space.spaces) for leaf in leaves(sub, (*path, i))]
    return [Leaf("/".join(str(p) for p in path) if path else SINGLE_KEY, path, space)]


def pick(obs: Any, path: tuple[str | int, ...]) -> Any:
    """The value at ``path`` of a (nested) observation."""
    for step in path:
        obs = obs[step]
    return obs


def is_box_image(space: gym.Space) -> bool:
    """A uint8 Box of 2 or 3 dims: an image unless routing says otherwise."""
    return isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) in (2, 3)


def can_be_image(space: gym.Space) -> bool:
    """What ``cnn_keys`` may take: uint8 or bool, 2 or 3 dims."""
    return (isinstance(space, gym.spaces.Box) and space.dtype in (np.uint8, np.bool_)
            and len(space.shape) in (2, 3))


def channels_last(shape: tuple[int, ...]) -> bool:
    """Whether a 3-dim image holds its channels on the last axis (the smaller end axis; the last on a tie)."""
    return shape[-1] <= shape[0]


def image_key(leaf: Leaf) -> Key:
    """The (C, H, W) uint8 image of a uint8 or bool Box of 2 or 3 dims."""
    shape = leaf.space.shape
    if len(shape) == 2:
        chw = (1, *shape)
    else:
        chw = (shape[2], shape[0], shape[1]) if channels_last(shape) else tuple(shape)
    to_uint8 = (lambda x: np.asarray(x, np.uint8) * np.uint8(255)) if leaf.space.dtype == np.bool_ else np.asarray

    def convert(x):
        x = to_uint8(x)
        if x.ndim == 2:
            return x[None]
        return np.ascontiguousarray(x.transpose(2, 0, 1)) if len(shape) == 3 and channels_last(shape) else x

    return Key(leaf, gym.spaces.Box(0, 255, chw, np.uint8), convert)


def one_hot(n: int, start: int) -> Callable[[Any], np.ndarray]:
    def convert(x):
        vector = np.zeros(n, np.float32)
        vector[int(x) - start] = 1.0
        return vector

    return convert


def flat_float(x) -> np.ndarray:
    return np.asarray(x, np.float32).reshape(-1)


def vector_key(leaf: Leaf) -> Key:
    """The float32 (D,) vector of a Box, Discrete or MultiBinary leaf; other spaces get a sentence."""
    space = leaf.space
    if isinstance(space, gym.spaces.Box):
        low, high = flat_float(space.low), flat_float(space.high)
        return Key(leaf, gym.spaces.Box(low, high, low.shape, np.float32), flat_float)
    if isinstance(space, gym.spaces.Discrete):
        return Key(leaf, gym.spaces.Box(0.0, 1.0, (int(space.n),), np.float32), one_hot(int(space.n), int(space.start)))
    if isinstance(space, gym.spaces.MultiBinary):
        return Key(leaf, gym.spaces.Box(0.0, 1.0, (int(np.prod(space.shape)),), np.float32), flat_float)
    raise ConfigError(f"observation key '{leaf.name}' has space {space}, which the agents cannot read; they take "
                      "Box, Discrete and MultiBinary spaces (inside Dict and Tuple): drop the key with env.cnn_keys / "
                      "env.mlp_keys, or convert it in an env.make factory.")


def default_kind(leaf: Leaf) -> str:
    return "image" if is_box_image(leaf.space) else "vector"


def matching(pattern: str, field: str, found: list[Leaf]) -> set[str]:
    """The names ``pattern`` fully matches; none is a sentence listing the keys there are."""
    names = {leaf.name for leaf in found if re.fullmatch(pattern, leaf.name)}
    if not names:
        raise ConfigError(f"env.{field} '{pattern}' matches none of this environment's observation keys "
                          f"({', '.join(leaf.name for leaf in found)}); write a pattern that matches one of them.")
    return names


def routed_kinds(found: list[Leaf], cnn_keys: str | None, mlp_keys: str | None) -> list[tuple[Leaf, str]]:
    """Each kept leaf and its kind: by default its own; with cnn_keys or mlp_keys, as they say."""
    if cnn_keys is None and mlp_keys is None:
        return [(leaf, default_kind(leaf)) for leaf in found]
    images = matching(cnn_keys, "cnn_keys", found) if cnn_keys is not None else set()
    vectors = matching(mlp_keys, "mlp_keys", found) if mlp_keys is not None else set()
    both = images & vectors
    if both:
        raise ConfigError(f"observation key '{sorted(both)[0]}' matches both env.cnn_keys '{cnn_keys}' and env.mlp_keys "
                          f"'{mlp_keys}'; make the patterns exclusive.")
    routed = []
    for leaf in found:
        if leaf.name in images:
            if not can_be_image(leaf.space):
                raise ConfigError(f"env.cnn_keys '{cnn_keys}' matches observation key '{leaf.name}', whose space "
                                  f"{leaf.space} is no image (images are uint8 or bool with 2 or 3 dimensions); "
                                  "route it with env.mlp_keys instead.")
            routed.append((leaf, "image"))
        elif leaf.name in vectors:
            routed.append((leaf, "vector"))
    return routed


def agent_keys(space: gym.Space, cnn_keys: str | None = None, mlp_keys: str | None = None) -> list[Key]:
    """The keys the agents receive from an environment of ``space``."""
    found = leaves(space)
    if not found:
        raise ConfigError(f"the observation space {space} has no keys; the agents need at least one.")
    return [image_key(leaf) if kind == "image" else vector_key(leaf)
            for leaf, kind in routed_kinds(found, cnn_keys, mlp_keys)]


class ObservationKeys(gym.ObservationWrapper):
    """Observations as the agents' images and vectors: one bare array, or a dict of keys (module docstring)."""

    def __init__(self, env: gym.Env, cnn_keys: str | None = None, mlp_keys: str | None = None):
        super().__init__(env)
        self._keys = agent_keys(env.observation_space, cnn_keys, mlp_keys)
        self._bare = not isinstance(env.observation_space, (gym.spaces.Dict, gym.spaces.Tuple))
        if self._bare:
            self.observation_space = self._keys[0].space
        else:  # a list of pairs keeps this order (a plain dict would be sorted by name)
            self.observation_space = gym.spaces.Dict([(key.leaf.name, key.space) for key in self._keys])

    def observation(self, obs):
        if self._bare:
            return self._keys[0].convert(obs)
        return {key.leaf.name: key.convert(pick(obs, key.leaf.path)) for key in self._keys}


class AddPixels(gym.ObservationWrapper):
    """The rendered RGB frame beside the observation, as the key ``pixels``: a Dict observation gains the
    key, a bare one becomes the key ``observation``. The environment must be made with
    ``render_mode="rgb_array"``. Gymnasium environments do not declare their frame's size, so this resets
    the environment once, here, and renders to learn it."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        if env.render_mode != "rgb_array":
            raise ConfigError(f"env.render_pixels is true and the environment's render_mode is {env.render_mode!r}; "
                              "it must accept render_mode='rgb_array' (its metadata says "
                              f"{(env.metadata or {}).get('render_modes', [])}).")
        try:
            env.reset()
            frame = env.render()
        except gym.error.Error as error:  # DependencyNotInstalled: the renderer's package is missing
            raise ConfigError(f"env.render_pixels is true and the environment cannot render ({one_line(error)}); "
                              "install what it names, or leave render_pixels false.") from None
        if not (isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3):
            raise ConfigError(f"env.render_pixels is true and the environment renders {describe(frame)}; it must "
                              "render uint8 (H, W, 3) frames.")
        pixels = gym.spaces.Box(0, 255, frame.shape, np.uint8)
        space = env.observation_space
        self._dict = isinstance(space, gym.spaces.Dict)
        if self._dict and PIXELS in space.spaces:
            raise ConfigError(f"env.render_pixels is true and the observation already has a key '{PIXELS}'; "
                              "rename it in an env.make factory, or use that key and leave render_pixels false.")
        members = list(space.spaces.items()) if self._dict else [(OBSERVATION, space)]
        self.observation_space = gym.spaces.Dict([*members, (PIXELS, pixels)])

    def observation(self, obs):
        frame = self.env.render()
        return {**obs, PIXELS: frame} if self._dict else {OBSERVATION: obs, PIXELS: frame}


def one_line(error: BaseException) -> str:
    """An exception's message on one line, for a one-sentence ConfigError."""
    return " ".join(str(error).split()) or type(error).__name__


def describe(value: Any) -> str:
    """A short name for what an environment returned, for messages."""
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    return type(value).__name__


# The dmc and test suites' ``env.observation``: the rendered frame, the task's state vector, or both.
def pixels_and_state_space(mode: str, pixels: gym.spaces.Box, state: gym.spaces.Box) -> gym.Space:
    if mode == "pixels":
        return pixels
    if mode == "states":
        return state
    return gym.spaces.Dict([(PIXELS, pixels), (OBSERVATION, state)])


def pixels_and_state(mode: str, pixels: Callable[[], np.ndarray], state: Callable[[], np.ndarray]) -> Any:
    """One observation of ``mode``; each part is computed only when the mode holds it."""
    if mode == "pixels":
        return pixels()
    if mode == "states":
        return state()
    return {PIXELS: pixels(), OBSERVATION: state()}
