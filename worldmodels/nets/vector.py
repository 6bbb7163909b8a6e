"""What reads the vector keys of an observation (float32 (D,) or a frame stack (k*D,); see
``worldmodels.envs.observations``), in the two ways the model-free agents' reference code does it.

``VectorTorso``: the value-based learner's. Dopamine's classic-control Q-networks (google/dopamine,
``dopamine/discrete_domains/gym_lib.py``, ``BasicDiscreteDomainNetwork``, at commit
9f616b924451cc5c23800c49e8907ebc67f8498b, the last one with the networks in that file; the same in
``dopamine/jax/networks.py``, ``ClassicControlDQNNetwork`` and ``ClassicControlRainbowNetwork``, at
commit 7b60a76b541d06295ef30619a7dfb812cd48d0c8) are

    x -> [rescale to [-1, 1] by known bounds: 2 (x - min) / (max - min) - 1] -> Dense(512) + ReLU
      -> Dense(512) + ReLU -> Dense(actions x atoms)

with Glorot/Xavier-uniform kernels and zero biases. Their per-environment bounds (CartPole, Acrobot,
MountainCar) are constants of the environment; LunarLander has none and reads its inputs as they are.
The torso is the first Dense + ReLU (and the rescaling); the learner's shared Dense(hidden) + ReLU is
the second, its heads the last, so a vector-only learner with hidden 512 is Dopamine's network.

``VectorInput``: the actor-critics'. pytorch_sac (Yarats and Kostrikov, denisyarats/pytorch_sac at
commit 81c5b536d3a1c5616b2531e446450df412a064fb, ``agent/critic.py`` ``DoubleQCritic`` and
``agent/actor.py`` ``DiagGaussianActor``) feeds the state straight into the actor's and critics' MLPs:
no encoder, no trunk, no normalisation. ``VectorInput`` has no weights; it stands where the conv
encoder stands so that the agents treat every layout alike.

Both say ``vector_dim``: how many of the last columns of their output come from the vector keys
(all of them here; ``worldmodels.nets.keyed.KeyedEncoder`` puts image features before them).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class MinMaxScale(nn.Module):
    """Dopamine's input rescaling: each input from [min, max] to [-1, 1], ``2 (x - min) / (max - min) - 1``,
    in the order Dopamine computes it. The bounds are settings, rebuilt with the network: not saved."""

    def __init__(self, low: Sequence[float], high: Sequence[float]):
        super().__init__()
        low_t, high_t = torch.tensor(low, dtype=torch.float32), torch.tensor(high, dtype=torch.float32)
        if low_t.shape != high_t.shape or low_t.dim() != 1 or not bool((high_t > low_t).all()):
            raise ValueError(f"MinMaxScale needs two equally long lists with every max above its min; got {list(low)} "
                             f"and {list(high)}.")
        self.register_buffer("low", low_t, persistent=False)
        self.register_buffer("high", high_t, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 * ((x - self.low) / (self.high - self.low)) - 1.0


class VectorTorso(nn.Module):
    """[MinMaxScale] -> Linear(in_dim, hidden) -> ReLU, the Linear Xavier-uniform with a zero bias
    (Dopamine's Dense). ``low``/``high`` None: the inputs as they are (Dopamine's LunarLander)."""

    def __init__(self, in_dim: int, hidden: int = 512, low: Sequence[float] | None = None,
                 high: Sequence[float] | None = None):
        super().__init__()
        self.scale = MinMaxScale(low, high) if low is not None else nn.Identity()
        self.dense = nn.Linear(in_dim, hidden)
        nn.init.xavier_uniform_(self.dense.weight)
        nn.init.zeros_(self.dense.bias)
        self.out_dim = self.vector_dim = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.dense(self.scale(x.float())))

    def encode_with_map(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        """The output and no conv feature map (the ND score, which reads one, does not apply)."""
        return self(x), None


class VectorInput(nn.Module):
    """The vector as it is (pytorch_sac): no weights. ``in_dim`` is its width."""

    def __init__(self, in_dim: int):
        super().__init__()
        self.out_dim = self.vector_dim = in_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float()

    def encode_with_map(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self(x), None
