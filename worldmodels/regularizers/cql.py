"""Conservative Q-learning's regulariser (Kumar et al. 2020, CQL(H): eq. 4 with the entropy term).

Added to the TD loss with a coefficient alpha, it pushes Q down on every action in proportion to
exp Q (a soft maximum) and up on the action the dataset took, so actions the data never shows cannot
keep the over-estimated values that break offline Q-learning.
"""

from __future__ import annotations

import math

import torch


def cql_penalty(q_all: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """Discrete actions: mean over the batch of logsumexp_a Q(s, a) - Q(s, a_data).

    q_all: (B, A) Q-values of every action; action: (B,) the dataset's actions."""
    return (torch.logsumexp(q_all, dim=-1) - q_all.gather(1, action[:, None]).squeeze(1)).mean()


def cql_continuous_penalty(q_random: torch.Tensor, q_policy: torch.Tensor, log_p_policy: torch.Tensor,
                           q_next_policy: torch.Tensor, log_p_next_policy: torch.Tensor, q_data: torch.Tensor,
                           action_dim: int) -> torch.Tensor:
    """Continuous actions (CQL(H) as the CQL code estimates it for SAC): logsumexp_a Q(s, a) by
    importance sampling from N uniform actions (density 0.5^d on [-1, 1]^d), N actions of the current
    policy at s and N at s' (all evaluated at s), each Q less its proposal's log-density; then less
    Q(s, a_data). Mean over the batch.

    q_random, q_policy, q_next_policy, log_p_policy, log_p_next_policy: (B, N); q_data: (B,)."""
    log_uniform = action_dim * math.log(0.5)
    samples = torch.cat([q_random - log_uniform, q_policy - log_p_policy, q_next_policy - log_p_next_policy], 1)
    return (torch.logsumexp(samples, dim=1) - q_data).mean()


def cql_lagrange_terms(log_alpha_prime: torch.Tensor, penalties: list[torch.Tensor], target_action_gap: float
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CQL's Lagrange variant (Kumar et al. 2020, arXiv:2006.04779, the threshold tau on the penalty),
    as the CQL code runs it for SAC (aviralkumar2907/CQL d4rl/rlkit/torch/sac/cql.py lines 270-278,
    commit d67dbe9cf5d2b96e3b462b6146f249b3d6569796): alpha' = clamp(exp(log alpha'), 0, 1e6),
    and for the penalties P_i of the critics (already times their weight, the code's min_q_weight):

        the critics' term:  sum_i alpha' (P_i - tau)               (alpha' a constant here)
        alpha''s loss:     -alpha' * mean_i (P_i - tau)             (the P_i constants here)

    The code's (-min_qf1_loss - min_qf2_loss) * 0.5 is this mean over its two critics. Descending the
    loss raises log alpha' while the penalty exceeds tau (more conservatism) and lowers it below.
    Returns (critics' term, alpha''s loss, alpha' detached)."""
    alpha_prime = log_alpha_prime.exp().clamp(min=0.0, max=1e6)
    gaps = [p - target_action_gap for p in penalties]
    critic_term = alpha_prime.detach() * sum(gaps)
    alpha_prime_loss = -alpha_prime * sum(g.detach() for g in gaps) / len(gaps)
    return critic_term, alpha_prime_loss, alpha_prime.detach()
