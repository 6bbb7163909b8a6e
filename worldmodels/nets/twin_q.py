"""The twin Q-networks of the pixel actor-critics: clipped double Q (Fujimoto et al. 2018, "Addressing
Function Approximation Error in Actor-Critic Methods", arXiv:1802.09477) as DrQ, SAC+AE and CQL-SAC
(model_free/sac.py) and DrQ-v2 and A-LIX (model_free/drqv2.py) build it:

    h (flattened conv features) -> Trunk (Linear, LayerNorm, tanh) -> x = [trunk(h), a]
    Q_i(h, a) = MLP_i(x), i = 1, 2: ``depth`` hidden layers of Linear + ReLU, then Linear to 1

When h ends in ``vector_dim`` columns of vector keys, they pass beside the Trunk, and with nothing
else in h there is no Trunk: x = [s, a], pytorch_sac's critic (``worldmodels.nets.drq_encoder.make_trunk``).

What the agents configure: ``depth`` (DrQ-v2: 2), whether the critic owns the conv encoder (SAC: its
actor reads the critic's convolutions; DrQ-v2: the encoder is the agent's), and the order in which the
MLPs are initialised (``init_heads``).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from worldmodels.nets.drq_encoder import make_trunk, orthogonal_init, trunk_width

INIT_HEADS = ("each", "both")


def mlp(in_dim: int, hidden: int, depth: int, out_dim: int,
        init: Callable[[nn.Module], None] | None = None) -> nn.Sequential:
    """``depth`` hidden layers of Linear + ReLU (``hidden`` units), then Linear to ``out_dim``; ``init``
    applied to every layer once built (None: torch's default initialisation)."""
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(in_dim if i == 0 else hidden, hidden), nn.ReLU()]
    net = nn.Sequential(*layers, nn.Linear(hidden, out_dim))
    return net.apply(init) if init is not None else net


class TwinQ(nn.Module):
    """Trunk, then twin Q MLPs on (features, action).

    encoder: a conv encoder this critic owns (registered first: its weights come first in the state
        dict and take their random initialisation before the heads'); None when the agent holds it.
    init_heads: ``each``: each Q MLP gets ``orthogonal_init`` as soon as it is built (SAC's); ``both``:
        both are built, then both initialised (DrQ-v2's). The two orders draw torch's random numbers in
        different orders, so the same seed gives different initial weights under each.
    vector_dim: how many of h's ``repr_dim`` columns, its last, are vector keys (0: none).
    """

    def __init__(self, repr_dim: int, action_dim: int, feature_dim: int, hidden: int, depth: int = 2,
                 encoder: nn.Module | None = None, init_heads: str = "each", vector_dim: int = 0):
        super().__init__()
        if init_heads not in INIT_HEADS:
            raise ValueError(f"init_heads is {init_heads!r}; choose one of {', '.join(INIT_HEADS)}.")
        if encoder is not None:
            self.encoder = encoder
        self.trunk = make_trunk(repr_dim, vector_dim, feature_dim)
        each = orthogonal_init if init_heads == "each" else None
        width = trunk_width(repr_dim, vector_dim, feature_dim)
        self.q1, self.q2 = (mlp(width + action_dim, hidden, depth, 1, each) for _ in range(2))
        if init_heads == "both":
            self.q1.apply(orthogonal_init), self.q2.apply(orthogonal_init)

    def forward(self, h: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.values(self.features(h, action))

    def features(self, h: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Penultimate features phi(s, a) of each Q MLP (its last hidden layer): (B, hidden) twice."""
        x = torch.cat([self.trunk(h), action], -1)
        return self.q1[:-1](x), self.q2[:-1](x)

    def values(self, phi: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.q1[-1](phi[0]).squeeze(-1), self.q2[-1](phi[1]).squeeze(-1)
