"""Conservative Q-learning's regulariser (Kumar et al. 2020, CQL(H): eq. 4 with the entropy term).

Added to the TD loss with a coefficient alpha, it pushes Q down on every action in proportion to
exp Q (a soft maximum) and up on the action the dataset took, so actions the data never shows cannot
keep the over-estimated values that break offline Q-learning.
"""

from __future__ import annotations

import torch


def cql_penalty(q_all: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """Discrete actions: mean over the batch of logsumexp_a Q(s, a) - Q(s, a_data).

    q_all: (B, A) Q-values of every action; action: (B,) the dataset's actions."""
    return (torch.logsumexp(q_all, dim=-1) - q_all.gather(1, action[:, None]).squeeze(1)).mean()
