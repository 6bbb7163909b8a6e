"""Quantile regression of the return distribution (QR-DQN, Dabney et al. 2018, arXiv 1710.10044).

Z(s, a) is N equally likely returns theta_1..theta_N, the quantiles of the return at the midpoints
tau_i = (2i - 1) / 2N (their Lemma 2); Q(s, a) = (1/N) sum_i theta_i. The target is r + gamma^n
theta_j(s', a*) for every j, and each theta_i is fitted to all of them with the quantile Huber loss
(``quantile_huber_loss``). Unlike C51 (``worldmodels.nets.c51``) there is no support to choose.
"""

from __future__ import annotations

import torch


def quantile_midpoints(num_quantiles: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """tau_i = (i + 0.5) / N for i = 0..N-1: the fractions the N quantiles estimate."""
    return (torch.arange(num_quantiles, device=device, dtype=dtype) + 0.5) / num_quantiles


def quantile_huber_loss(quantiles: torch.Tensor, target: torch.Tensor, kappa: float = 1.0) -> torch.Tensor:
    """Per-sample quantile Huber loss (Dabney et al. 2018, Eq. 9 and 10) of ``quantiles`` (B, N), the
    online net's at tau_i = (i + 0.5) / N, against ``target`` (B, N'), the target samples (no gradient
    flows into them; detach them first). Returns (B,).

    With u_ij = target_j - quantiles_i, L_kappa(u) = u^2 / 2 if |u| <= kappa else kappa (|u| - kappa / 2),
    and rho_ij = |tau_i - 1{u_ij < 0}| L_kappa(u_ij), the loss is sum_i mean_j rho_ij: SUMMED over the
    online quantiles i and AVERAGED over the target samples j, exactly as the reference reduces it
    (google-research/batch_rl, ``batch_rl/multi_head/quantile_agent.py``, ``QuantileAgent._build_train_op``:
    ``reduce_sum(reduce_mean(quantile_huber_loss, 2), 1)``; the same in the CQL code's copy,
    aviralkumar2907/CQL, ``atari/batch_rl/multi_head/quantile_agent.py``). As there, L_kappa is not divided
    by kappa (the paper's Eq. 10 divides; the two agree at the reference's kappa = 1). Being a sum over
    the N quantiles, the loss and its gradient grow with N, which sets the scale of anything added to it
    (CQL's alpha).
    """
    tau = quantile_midpoints(quantiles.shape[-1], quantiles.device, quantiles.dtype)
    errors = target[..., None, :] - quantiles[..., :, None]  # (B, N online, N' target): u_ij
    huber = torch.where(errors.abs() <= kappa, 0.5 * errors ** 2, kappa * (errors.abs() - 0.5 * kappa))
    weight = (tau[:, None] - (errors.detach() < 0).to(errors.dtype)).abs()
    return (weight * huber).mean(-1).sum(-1)
