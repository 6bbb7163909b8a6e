"""Exponential moving averages of parameters: target networks (SAC's and DrQ-v2's critics, DreamerV3's
slow critic) trail their online networks."""

from __future__ import annotations

from collections.abc import Iterable

import torch


@torch.no_grad()
def ema_update_(targets: Iterable[torch.Tensor], sources: Iterable[torch.Tensor], fraction: float) -> None:
    """target <- target + fraction (source - target) for each pair, in place: one ``torch._foreach_lerp_``
    over all of them (a few kernels on a GPU instead of one per tensor, and no host sync)."""
    targets, sources = list(targets), list(sources)
    if len(targets) != len(sources):
        raise ValueError(f"ema_update_ got {len(targets)} targets for {len(sources)} sources")
    if targets:
        torch._foreach_lerp_(targets, sources, fraction)
