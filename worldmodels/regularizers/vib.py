"""A variational information bottleneck (Alemi et al. 2017, "Deep Variational Information Bottleneck",
arXiv:1612.00410) on a network's penultimate features, the regulariser Kumar et al. 2021 ("A Workflow for
Offline Model-Free Robotic Reinforcement Learning", arXiv:2109.10813) suggest against overfitting in
conservative offline RL:

    min L_CQL + beta E_s[ KL( N(phi_m(s), diag phi_Sigma(s)) || N(0, I) ) ]

The features phi become a Gaussian: two linear heads give its mean and log-variance, the layers after
it read a sample (reparameterised, so gradients reach both heads) while training and the mean when
acting or evaluating. The workflow paper gives the objective, not the architecture; the heads are ours.
"""

from __future__ import annotations

import torch
from torch import nn


def gaussian_kl_to_standard(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, diag exp(log_var)) || N(0, I)) of each row, summed over the features: (B,)."""
    return 0.5 * (mean.pow(2) + log_var.exp() - log_var - 1.0).sum(-1)


class GaussianBottleneck(nn.Module):
    """features (B, D) -> (sample or mean (B, D), KL to N(0, I) of each row (B,))."""

    def __init__(self, dim: int):
        super().__init__()
        self.mean, self.log_var = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_var = self.mean(features), self.log_var(features).clamp(-10.0, 10.0)
        kl = gaussian_kl_to_standard(mean, log_var)
        if not self.training:
            return mean, kl
        return mean + (0.5 * log_var).exp() * torch.randn_like(mean), kl
