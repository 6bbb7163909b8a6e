"""Convolutional encoders. Pixels arrive as uint8 on the training device; the float conversion is
the network's first layer, so replay batches never travel as float."""

from __future__ import annotations

from typing import Callable

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
    Initialised Xavier-uniform as Dopamine's JAX networks are (its DrQ/NDDQN Atari 100k runs).
    ``mixing`` puts a layer (A-LIX's local signal mixing) after every conv + ReLU."""

    def __init__(self, in_channels: int, image_size: int = 84, mixing: Callable[[], nn.Module] | None = None):
        super().__init__()
        layers: list[nn.Module] = [PixelScale()]
        for c_in, c_out, kernel, stride in [(in_channels, 32, 8, 4), (32, 64, 4, 2), (64, 64, 3, 1)]:
            layers += [nn.Conv2d(c_in, c_out, kernel, stride=stride), nn.ReLU()]
            if mixing is not None:
                layers.append(mixing())
        self.net = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            self.out_dim = self.net(torch.zeros(1, in_channels, image_size, image_size, dtype=torch.uint8)).shape[1]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)

    def feature_map(self, obs: torch.Tensor) -> torch.Tensor:
        """The last conv layer's output (after its ReLU and mixing), before flattening: (B, 64, 7, 7)
        at 84x84 (the ND score's input)."""
        return self.net[:-1](obs)
