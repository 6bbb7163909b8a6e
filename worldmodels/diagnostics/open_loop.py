"""Open-loop video of any world model, as the DreamerV3 reference code logs it: on replayed sequences
the first ``context`` steps are observed, the rest predicted open-loop. Rows: truth, prediction,
error = (prediction - truth + 1) / 2; one column per sequence. A green border marks observed
steps, a red one imagined steps. The model supplies the predictions; this module only draws."""

from __future__ import annotations

import torch
from einops import rearrange

OBSERVED, IMAGINED = (0.0, 0.8, 0.0), (0.9, 0.0, 0.0)


def add_border(frames: torch.Tensor, colour: tuple[float, float, float], width: int = 2) -> torch.Tensor:
    """Paint a border on (..., 3, H, W) frames in [0, 1]."""
    frames = frames.clone()
    c = torch.tensor(colour, device=frames.device).view(3, 1, 1)
    frames[..., :, :width, :] = c.expand_as(frames[..., :, :width, :])
    frames[..., :, -width:, :] = c.expand_as(frames[..., :, -width:, :])
    frames[..., :, :, :width] = c.expand_as(frames[..., :, :, :width])
    frames[..., :, :, -width:] = c.expand_as(frames[..., :, :, -width:])
    return frames


@torch.no_grad()
def open_loop_video(obs: torch.Tensor, pred: torch.Tensor, context: int = 5) -> torch.Tensor:
    """(T, 3, 3H, N*W) uint8 video from N sequences: ``obs`` (N, T, C, H, W) uint8 and ``pred`` the
    model's images in [0, 1], reconstructed for t < context and predicted open-loop after."""
    truth = obs.float() / 255.0
    error = (pred - truth + 1.0) / 2.0
    rows = torch.stack([truth, pred, error], 2)  # (N, T, 3 rows, C, H, W)
    if rows.shape[3] == 1:
        rows = rows.expand(-1, -1, -1, 3, -1, -1)
    rows = torch.cat([add_border(rows[:, :context], OBSERVED), add_border(rows[:, context:], IMAGINED)], 1)
    video = rearrange(rows, "n t r c h w -> t c (r h) (n w)")
    return (video * 255).round().to(torch.uint8).cpu()
