"""Training-health quantities from the papers cited below, as pure functions of tensors.

Each one is a number the literature watches to tell a learner that is about to fail from one that
is merely slow:

- ``srank``: effective rank of a feature matrix (Kumar et al. 2021, "Implicit
  Under-Parameterization Inhibits Data-Efficient Deep RL"): bootstrapped TD targets make the
  penultimate features collapse onto few directions, and performance drops with the rank.
- ``feature_dot``: the DR3 quantity (Kumar et al. 2021, "DR3: Value-Based Deep RL Requires Explicit
  Regularization"): TD learning's implicit regulariser grows the dot product of the penultimate
  features of consecutive state-action pairs; DR3 adds it to the loss with a small coefficient.
- ``overestimation``: mean Q of replayed state-actions minus their discounted Monte-Carlo return
  (``discounted_returns``), the bias double Q-learning and clipped double Q fight.
- ``augmentation_gap``: mean squared difference of Q under two independent augmentations of the
  same observations (DrQ, Kostrikov et al. 2020: augmentation should leave Q unchanged).
The ND score of A-LIX (Cetin et al. 2022) lives in ``nd_score.py``.
"""

from __future__ import annotations

import math

import torch


def srank(features: torch.Tensor, delta: float = 0.01) -> int:
    """Effective rank srank_delta: the least k with (sum_{i<=k} sigma_i) / (sum_i sigma_i) >= 1 - delta.

    features: (B, D), one row per sample (penultimate-layer or encoder output). A zero matrix has
    rank 0. Computed in float64 on the features' device."""
    if features.dim() != 2:
        raise ValueError(f"srank needs a (batch, features) matrix; got shape {tuple(features.shape)}.")
    sigma = singular_values(features.detach().double())
    total = sigma.sum()
    if total <= 0:
        return 0
    cumulative = torch.cumsum(sigma, 0) / total
    # The tolerance keeps an exact boundary (cumulative == 1 - delta) from failing on rounding.
    return int((cumulative < 1 - delta - 1e-6).sum().item()) + 1


def singular_values(matrix: torch.Tensor) -> torch.Tensor:
    """Singular values, largest first. A wide or tall matrix (one side 4x the other, as a batch of
    256 rows of 39200 conv features) goes through the eigenvalues of its small Gram matrix, about
    ten times faster than an SVD on a CPU; in float64 the squaring costs no precision that srank's
    1% tolerance could see."""
    rows, cols = matrix.shape
    if max(rows, cols) < 4 * min(rows, cols):
        return torch.linalg.svdvals(matrix)
    gram = matrix @ matrix.T if rows < cols else matrix.T @ matrix
    return torch.linalg.eigvalsh(gram).flip(0).clamp(min=0).sqrt()


def feature_dot(phi: torch.Tensor, phi_next: torch.Tensor) -> torch.Tensor:
    """DR3's quantity: mean over the batch of phi(s, a) . phi(s', a'), a 0-dim tensor.

    phi, phi_next: (B, D) penultimate features of consecutive state-action pairs. Differentiable,
    so the same function serves as the DR3 regulariser (loss += coef * feature_dot)."""
    if phi.shape != phi_next.shape or phi.dim() != 2:
        raise ValueError(f"feature_dot needs two (batch, features) tensors of one shape; got "
                         f"{tuple(phi.shape)} and {tuple(phi_next.shape)}.")
    return (phi * phi_next).sum(1).mean()


def discounted_returns(reward: torch.Tensor, last: torch.Tensor, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Monte-Carlo return-to-go along time-major stored rows, with the replay's conventions.

    reward[t] is the reward received on arriving at row t, last[t] says the episode ends at row t
    (terminal or truncated); both (T, ...). The return from the state at row t is

        G[t] = 0                          if last[t]
        G[t] = reward[t+1] + gamma G[t+1] otherwise,

    summed until the episode's final row. Returns (G, ended): ``ended[t]`` is True when that final
    row lies inside the T rows; where it does not, G[t] is the partial sum over the rows given
    (the caller decides whether its tail gamma^(T-1-t) is small enough to ignore)."""
    if reward.shape != last.shape:
        raise ValueError(f"reward {tuple(reward.shape)} and last {tuple(last.shape)} must have one shape.")
    last = last.bool()
    returns = torch.zeros_like(reward, dtype=torch.float32)
    ended = torch.zeros_like(last)
    running, running_ended = torch.zeros_like(returns[-1]), last[-1].clone()
    ended[-1] = running_ended
    for t in range(reward.shape[0] - 2, -1, -1):
        running = torch.where(last[t], torch.zeros_like(running), reward[t + 1].float() + gamma * running)
        running_ended = last[t] | running_ended
        returns[t], ended[t] = running, running_ended
    return returns, ended


def effective_horizon(gamma: float, tail: float = 1e-3) -> int:
    """Steps after which the discount weight gamma^H falls below ``tail``: a return summed over H
    steps misses at most tail x (largest return) of the full one."""
    if not 0 < gamma < 1:
        return 1_000_000 if gamma >= 1 else 1
    return math.ceil(math.log(tail) / math.log(gamma))


def overestimation(q: torch.Tensor, mc_return: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of Q - Monte-Carlo return over the samples ``valid`` marks (all when None); NaN if none.

    Positive: the critic promises more than the replayed behaviour obtained."""
    gap = (q.detach().float() - mc_return.float()).flatten()
    if valid is not None:
        gap = gap[valid.flatten().bool()]
    return gap.mean() if gap.numel() else torch.tensor(float("nan"))


def augmentation_gap(q_a: torch.Tensor, q_b: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of Q under two independent augmentations of the same batch (DrQ):
    0 for a critic invariant to the augmentation."""
    return (q_a.detach().float() - q_b.detach().float()).pow(2).mean()
