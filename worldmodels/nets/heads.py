"""Value heads."""

from __future__ import annotations

import torch
from torch import nn


class DuelingHead(nn.Module):
    """Q(s, a) = V(s) + A(s, a) - mean_a A(s, a) (Wang et al., 2016), each stream a hidden layer of
    ``hidden`` units."""

    def __init__(self, in_dim: int, num_actions: int, hidden: int = 512):
        super().__init__()
        self.value = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.advantage = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, num_actions))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, advantage = self.value(x), self.advantage(x)
        return value + advantage - advantage.mean(dim=-1, keepdim=True)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features: the two streams' hidden layers side by side, (B, 2 * hidden) (what
        the output layers read; srank and DR3 look at them)."""
        return torch.cat([self.value[:-1](x), self.advantage[:-1](x)], -1)

    def from_features(self, phi: torch.Tensor) -> torch.Tensor:
        """Q from ``features(x)``: ``from_features(features(x)) == forward(x)``."""
        value_hidden, advantage_hidden = phi.chunk(2, -1)
        value, advantage = self.value[-1](value_hidden), self.advantage[-1](advantage_hidden)
        return value + advantage - advantage.mean(dim=-1, keepdim=True)
