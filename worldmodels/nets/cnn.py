"""Convolutional encoders. Pixels arrive as uint8 on the training device; the float conversion is
the network's first layer, so replay batches never travel as float."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class PixelScale(nn.Module):
    """uint8 [0, 255] -> float ``x / 255 + shift`` (shift -0.5 centres the pixels, as DrQ-v2 does)."""

    def __init__(self, shift: float = 0.0):
        super().__init__()
        self.shift = shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() / 255.0 + self.shift


class SamePad2d(nn.Module):
    """TensorFlow / Flax "SAME" padding for a strided conv: output side ceil(side / stride), the extra
    pixel (when the total is odd) after the image. PyTorch's ``padding="same"`` refuses strides > 1."""

    def __init__(self, kernel: int, stride: int):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for side in (x.shape[-1], x.shape[-2]):  # F.pad lists the last axis first
            total = max((math.ceil(side / self.stride) - 1) * self.stride + self.kernel - side, 0)
            pads += [total // 2, total - total // 2]
        return F.pad(x, pads)


class ConvEncoder(nn.Module):
    """What every conv encoder answers besides its features: ``feature_map(obs)`` (the last conv
    layer's output, per subclass), ``from_feature_map`` (the features from it) and both at once, so that
    the ND score can differentiate through the map the features came from."""

    def from_feature_map(self, feature_map: torch.Tensor) -> torch.Tensor:
        return feature_map.flatten(1)

    def encode_with_map(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feature_map = self.feature_map(obs)
        return self.from_feature_map(feature_map), feature_map


class NatureCNN(ConvEncoder):
    """The DQN encoder of Mnih et al. (2015): conv 32 8x8/4, 64 4x4/2, 64 3x3/1, ReLU, flattened.

    padding: ``same`` is Dopamine's JAX network (Flax's default padding; behind the DrQ, DrQ(eps) and
        DER Atari 100k results): 84 -> 21 -> 11 -> 11, 7744 features. ``valid`` is the original
        Nature network: 84 -> 20 -> 9 -> 7, 3136 features.
    mixing: a layer put after the last conv + ReLU (A-LIX's local signal mixing).
    Initialised Xavier-uniform with zero biases, as Dopamine's JAX networks are."""

    def __init__(self, in_channels: int, image_size: int = 84, padding: str = "same", mixing: nn.Module | None = None):
        super().__init__()
        layers: list[nn.Module] = [PixelScale()]
        for c_in, c_out, kernel, stride in [(in_channels, 32, 8, 4), (32, 64, 4, 2), (64, 64, 3, 1)]:
            if padding == "same":
                layers.append(SamePad2d(kernel, stride))
            layers += [nn.Conv2d(c_in, c_out, kernel, stride=stride), nn.ReLU()]
        if mixing is not None:
            layers.append(mixing)
        self.convs = nn.Sequential(*layers)
        with torch.no_grad():
            self.feature_shape = tuple(self.convs(torch.zeros(1, in_channels, image_size, image_size, dtype=torch.uint8)).shape[1:])
        self.out_dim = math.prod(self.feature_shape)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.convs(obs).flatten(1)

    def feature_map(self, obs: torch.Tensor) -> torch.Tensor:
        """The last conv layer's output (after its ReLU and mixing), before flattening (the ND score's input)."""
        return self.convs(obs)

    def from_feature_map(self, feature_map: torch.Tensor) -> torch.Tensor:
        """``forward`` from ``feature_map(obs)``."""
        return feature_map.flatten(1)
