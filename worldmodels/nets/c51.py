"""Distributional value functions on a fixed support (C51, Bellemare et al. 2017).

Z(s, a) is a categorical distribution over ``num_atoms`` evenly spaced returns z_1..z_N on
[v_min, v_max]; Q(s, a) = sum_i p_i z_i. The target distribution r + gamma^n Z(s', a*) lies on a
shifted support and is projected back onto z (``categorical_projection``); the loss is the
cross-entropy of the predicted logits against that projection.
"""

from __future__ import annotations

import torch

from worldmodels.errors import ConfigError


def make_support(num_atoms: int, v_min: float, v_max: float) -> torch.Tensor:
    if num_atoms < 2:
        raise ConfigError(f"model.num_atoms is {num_atoms}; a distributional critic needs at least 2 atoms "
                          "(1 means a plain Q-value: set distributional off that way).")
    if not v_min < v_max:
        raise ConfigError(f"model.v_min ({v_min}) must be below model.v_max ({v_max}).")
    return torch.linspace(v_min, v_max, num_atoms)


def categorical_projection(support: torch.Tensor, probs: torch.Tensor, reward: torch.Tensor,
                           discount: torch.Tensor) -> torch.Tensor:
    """Project r + discount * z (with probabilities ``probs``) onto ``support`` (Bellemare et al.
    2017, Algorithm 1, as Dopamine's ``project_distribution``).

    support: (N,) evenly spaced atoms. probs: (B, N). reward, discount: (B,); discount is gamma^n, or
    0 after a terminal (all mass then lands on r). Each shifted atom Tz_j = clip(r + discount z_j,
    v_min, v_max) gives its mass to the two nearest atoms in proportion to closeness:
    m_i = sum_j p_j max(0, 1 - |Tz_j - z_i| / dz). Returns (B, N), rows summing to 1.
    """
    v_min, v_max = support[0], support[-1]
    dz = (v_max - v_min) / (support.numel() - 1)
    shifted = (reward[:, None] + discount[:, None] * support[None]).clamp(v_min, v_max)  # (B, N_j)
    closeness = (1 - (shifted[:, None, :] - support[None, :, None]).abs() / dz).clamp(min=0)  # (B, N_i, N_j)
    return (closeness * probs[:, None, :]).sum(-1)
