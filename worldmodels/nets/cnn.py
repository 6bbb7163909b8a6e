"""Convolutional encoders. Pixels arrive as uint8 on the training device; the float conversion is
the network's first layer, so replay batches never travel as float."""

from __future__ import annotations

import torch
from torch import nn


class PixelScale(nn.Module):
    """uint8 [0, 255] -> float ``x / 255 + shift`` (shift -0.5 centres the pixels, as DrQ-v2 does)."""

    def __init__(self, shift: float = 0.0):
        super().__init__()
        self.shift = shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() / 255.0 + self.shift


class NatureCNN(nn.Module):
    """The DQN encoder of Mnih et al. (2015): conv 32 8x8/4, 64 4x4/2, 64 3x3/1, ReLU, flattened.
    Initialised Xavier-uniform as Dopamine's JAX networks are (its DrQ/NDDQN Atari 100k runs)."""

    def __init__(self, in_channels: int, image_size: int = 84):
        super().__init__()
        self.net = nn.Sequential(
            PixelScale(),
            nn.Conv2d(in_channels, 32, 8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            self.out_dim = self.net(torch.zeros(1, in_channels, image_size, image_size, dtype=torch.uint8)).shape[1]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)
