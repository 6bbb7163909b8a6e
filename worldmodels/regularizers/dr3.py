"""DR3 (Kumar et al. 2021, "DR3: Value-Based Deep RL Requires Explicit Regularization").

TD learning with bootstrapped targets carries an implicit regulariser that grows the dot product
phi(s, a) . phi(s', a') of the penultimate features of consecutive state-action pairs; large
values go with feature co-adaptation, rank collapse and poor returns. DR3 cancels it explicitly:

    loss = TD loss + coef * mean_batch phi(s, a) . phi(s', a')

with phi the online network's penultimate features, a the replayed action and a' the action the
TD target uses at s' (DQN: features of s and s'; actor-critic: the critic's features of (s', a' ~ pi)).
The paper (arXiv:2112.04716) tunes the coefficient per domain; it is off unless a config sets it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from worldmodels.diagnostics.signals import feature_dot


def dr3_penalty(phi: torch.Tensor | Sequence[torch.Tensor],
                phi_next: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean phi . phi' over the batch; for twin critics (sequences of per-head features), the mean
    over the heads. Differentiable: add ``coef * dr3_penalty(...)`` to the TD loss."""
    if torch.is_tensor(phi):
        return feature_dot(phi, phi_next)
    if len(phi) != len(phi_next) or not phi:
        raise ValueError(f"dr3_penalty needs as many next-state feature tensors as heads; got {len(phi)} "
                         f"and {len(phi_next)}.")
    return torch.stack([feature_dot(p, q) for p, q in zip(phi, phi_next)]).mean()
