"""Observation batches as the model-free updates handle them, in either form of the observation
contract (``worldmodels.envs.observations``): one (B, ...) tensor, or a dict of them by key. Their
size and device, their first rows, stacked copies, and augmentations, which touch the image keys only:
a shift or an intensity change means nothing to a vector of joint angles (DrQ and DrQ-v2 augment
pixels; pytorch_sac, on states, augments nothing)."""

from __future__ import annotations

from typing import Any, Callable

import torch

from worldmodels.envs.observations import ObsKey, map_obs, map_obs_keys


def one_tensor(obs: Any) -> torch.Tensor:
    """The tensor, or the first key's tensor of a dict: what the batch's size and device are read from."""
    return next(iter(obs.values())) if isinstance(obs, dict) else obs


def rows_of(obs: Any) -> int:
    """The batch size B."""
    return one_tensor(obs).shape[0]


def first_rows(obs: Any, n: int) -> Any:
    """The first ``n`` observations."""
    return map_obs(lambda x: x[:n], obs)


def repeated(obs: Any, copies: int) -> Any:
    """``copies`` copies of the batch one after the other: (copies * B, ...) per key."""
    return map_obs(lambda x: x.repeat(copies, *([1] * (x.dim() - 1))), obs)


def on_images(fn: Callable[[torch.Tensor], torch.Tensor], layout: tuple[ObsKey, ...], obs: Any) -> Any:
    """``fn`` applied to each image key, in key order (each draws its own random numbers); vector keys
    as they are."""
    return map_obs_keys(lambda key, x: fn(x) if key.kind == "image" else x, layout, obs)
