"""Normalised discontinuity (ND) score of a feature gradient, as A-LIX's reference code computes it.

A-LIX (Cetin et al. 2022) argues that a critic overfitting the TD targets shows up as a spatially
incoherent gradient with respect to the encoder's feature maps: neighbouring cells ask for
unrelated changes. The ND score measures that incoherence (noise) relative to the gradient's
magnitude (signal) over each 3x3 neighbourhood; A-LIX steers its mixing strength so the score
stays near 0.535. It is also a cheap diagnostic for any conv encoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nd_map(grad: torch.Tensor, eps: float = 1e-20) -> torch.Tensor:
    """Per-cell ratio noise / signal of the batch-mean gradient, shape (C, H, W).

    grad: dLoss/dFeatures of shape (B, C, H, W). With g the mean over B and the 3x3 neighbourhood
    of each cell taken after a replicate pad (so border cells see copies of themselves):
    signal = (sum of g^2 over the 9 cells - g_centre^2) / 8 (mean square of the 8 neighbours),
    noise = sum over the 8 neighbours of (g_n - g_centre)^2 / 8.
    """
    g = grad.detach().float().mean(0, keepdim=True)                        # (1, C, H, W)
    h, w = g.shape[-2:]
    padded = F.pad(g, (1, 1, 1, 1), mode="replicate")
    cells = torch.stack([padded[0, :, i:i + h, j:j + w] for i in range(3) for j in range(3)])
    centre = g[0]
    signal = (cells.pow(2).sum(0) - centre.pow(2)) / 8
    noise = (cells - centre).pow(2).sum(0) / 8                            # the centre adds 0
    return noise / (signal + eps)


def nd_score(grad: torch.Tensor, eps: float = 1e-20) -> torch.Tensor:
    """ND score: mean over (c, i, j) of log(1 + noise / signal), a 0-dim float tensor.

    0 for a gradient constant over each neighbourhood; log 3 ~ 1.10 inside a +1/-1 checkerboard."""
    return torch.log1p(nd_map(grad, eps)).mean()
