"""The DrQ / DrQ-v2 / A-LIX pixel encoder: four 3x3 convolutions of 32 channels (the first with
stride 2), ReLU, flattened: 32 x 35 x 35 = 39200 features at 84x84. DrQ scales pixels to [0, 1],
DrQ-v2 and A-LIX centre them (``shift=-0.5``). ``mixing`` puts a layer (A-LIX's local signal
mixing) after every conv + ReLU: it is called once per conv with whether that conv is the last."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from worldmodels.nets.cnn import ConvEncoder, PixelScale


def orthogonal_init(module: nn.Module) -> None:
    """DrQ-v2's weight_init: orthogonal weights (ReLU gain for convs), zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.orthogonal_(module.weight.data)
        if module.bias is not None:
            module.bias.data.fill_(0.0)
    elif isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.orthogonal_(module.weight.data, nn.init.calculate_gain("relu"))
        if module.bias is not None:
            module.bias.data.fill_(0.0)


def delta_orthogonal_(weight: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """Delta-orthogonal initialisation of a conv kernel (Xiao et al. 2018, "Dynamical Isometry and a
    Mean Field Theory of CNNs", arXiv:1806.05393), in the simplified form of SAC+AE's code
    (denisyarats/pytorch_sac_ae, sac_ae.py weight_init, commit 7fa560e21c026c04bb8dcd72959ecf4e3424476c):
    every tap zero except the centre one, whose (dim 0, dim 1) matrix is orthogonal times ``gain``
    (``nn.init.orthogonal_``: orthonormal rows if it has fewer rows than columns, columns otherwise).
    ``weight``: (out, in, k, k) for Conv2d, (in, out, k, k) for ConvTranspose2d, k odd."""
    if weight.dim() != 4 or weight.shape[2] != weight.shape[3] or weight.shape[2] % 2 == 0:
        raise ValueError(f"delta_orthogonal_ needs a square kernel of odd size; got a weight of shape "
                         f"{tuple(weight.shape)}.")
    mid = weight.shape[2] // 2
    with torch.no_grad():
        weight.zero_()
        nn.init.orthogonal_(weight[:, :, mid, mid], gain)
    return weight


def delta_orthogonal_init(module: nn.Module) -> None:
    """SAC+AE's weight_init (pytorch_sac_ae sac_ae.py, commit 7fa560e): orthogonal Linear weights,
    delta-orthogonal Conv2d and ConvTranspose2d weights (ReLU gain), zero biases. DrQ's code
    (denisyarats/drq utils.py weight_init, commit dd040f144ed8f696c7db35087cd80c87372edb64) uses
    ``orthogonal_init`` instead: the whole kernel orthogonal."""
    if isinstance(module, nn.Linear):
        orthogonal_init(module)
    elif isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        delta_orthogonal_(module.weight.data, nn.init.calculate_gain("relu"))
        if module.bias is not None:
            module.bias.data.fill_(0.0)


class DrQEncoder(ConvEncoder):
    """``init``: applied to every layer (``orthogonal_init``; SAC+AE: ``delta_orthogonal_init``)."""

    CONVS = 4

    def __init__(self, in_channels: int, image_size: int = 84, shift: float = -0.5,
                 mixing: Callable[[bool], nn.Module] | None = None,
                 init: Callable[[nn.Module], None] = orthogonal_init):
        super().__init__()
        layers: list[nn.Module] = [PixelScale(shift)]
        for i in range(self.CONVS):
            layers += [nn.Conv2d(in_channels if i == 0 else 32, 32, 3, stride=2 if i == 0 else 1), nn.ReLU()]
            if mixing is not None:
                layers.append(mixing(i == self.CONVS - 1))
        self.convs = nn.Sequential(*layers)
        self.apply(init)
        side = (image_size - 3) // 2 + 1 - 2 * (self.CONVS - 1)
        self.out_dim = 32 * side * side
        self.feature_shape = (32, side, side)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.convs(obs).flatten(1)

    def feature_map(self, obs: torch.Tensor) -> torch.Tensor:
        """The last conv layer's output (after its ReLU and mixing), before flattening:
        ``feature_shape`` per sample (the ND score's input)."""
        return self.convs(obs)


class Trunk(nn.Sequential):
    """Linear to ``feature_dim``, LayerNorm, tanh: the per-head projection of DrQ-v2 (and DrQ's encoder head)."""

    def __init__(self, in_dim: int, feature_dim: int = 50):
        super().__init__(nn.Linear(in_dim, feature_dim), nn.LayerNorm(feature_dim), nn.Tanh())
        self.apply(orthogonal_init)


class SplitTrunk(Trunk):
    """A Trunk on the image features of h, its first ``image_dim`` columns; the vector keys, its last
    columns, pass beside it as they are: [trunk(h_image), h_vector]. Through the Trunk's Linear and
    LayerNorm a few state values would be mixed into 50 features and normalised together with tens of
    thousands of conv features; beside it they reach the MLPs as pytorch_sac feeds states."""

    def __init__(self, image_dim: int, feature_dim: int = 50):
        super().__init__(image_dim, feature_dim)
        self.image_dim = image_dim

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.cat([super().forward(h[:, :self.image_dim]), h[:, self.image_dim:]], -1)


def make_trunk(repr_dim: int, vector_dim: int, feature_dim: int) -> nn.Module:
    """The trunk over h (B, repr_dim) whose last ``vector_dim`` columns are vector keys
    (``worldmodels.nets.keyed``): a Trunk without vector columns (every pixel config), nothing with only
    vector columns (pytorch_sac: the state goes straight into the MLPs), else a ``SplitTrunk``."""
    if vector_dim == 0:
        return Trunk(repr_dim, feature_dim)
    if vector_dim == repr_dim:
        return nn.Identity()
    return SplitTrunk(repr_dim - vector_dim, feature_dim)


def trunk_width(repr_dim: int, vector_dim: int, feature_dim: int) -> int:
    """Width of ``make_trunk``'s output."""
    return (feature_dim if repr_dim > vector_dim else 0) + vector_dim


class PixelDecoder(nn.Module):
    """SAC+AE's deterministic decoder (Yarats et al. 2019), the DrQEncoder mirrored: Linear from the
    features to the last conv map (32 x 35 x 35 at 84x84) + ReLU, three 3x3 transposed convs of stride 1
    with ReLU, and a 3x3 transposed conv of stride 2 (output padding 1) back to the observation's
    channels. Outputs centred pixels (the target lies in [-0.5, 0.5]). ``init``: applied to every layer
    (SAC+AE's code: ``delta_orthogonal_init``)."""

    def __init__(self, out_channels: int, feature_shape: tuple[int, int, int], feature_dim: int = 50,
                 init: Callable[[nn.Module], None] = orthogonal_init):
        super().__init__()
        self.feature_shape = feature_shape
        channels = feature_shape[0]
        self.fc = nn.Linear(feature_dim, channels * feature_shape[1] * feature_shape[2])
        layers: list[nn.Module] = []
        for _ in range(3):
            layers += [nn.ConvTranspose2d(channels, channels, 3, stride=1), nn.ReLU()]
        self.deconvs = nn.Sequential(*layers, nn.ConvTranspose2d(channels, out_channels, 3, stride=2, output_padding=1))
        self.apply(init)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.deconvs(torch.relu(self.fc(h)).view(-1, *self.feature_shape))


class ALIXAtariEncoder(ConvEncoder):
    """The encoder of A-LIX's Atari agent (Cetin et al. 2022, appendix D, Table 7): DrQ-v2's style of
    small convolutions, 32, 32, 32 channels of 3x3 with strides 2, 1, 1 and ReLU (84 -> 41 -> 39 -> 37),
    then DrQ-v2's trunk to a 50-feature vector. The paper publishes no code; pixels are centred and
    the layers initialised orthogonally as in DrQ-v2, whose encoder style the paper names.
    ``mixing`` goes after the last conv + ReLU, where the paper puts its one A-LIX layer."""

    def __init__(self, in_channels: int, image_size: int = 84, feature_dim: int = 50, mixing: nn.Module | None = None):
        super().__init__()
        layers: list[nn.Module] = [PixelScale(-0.5)]
        for i, stride in enumerate((2, 1, 1)):
            layers += [nn.Conv2d(in_channels if i == 0 else 32, 32, 3, stride=stride), nn.ReLU()]
        if mixing is not None:
            layers.append(mixing)
        self.convs = nn.Sequential(*layers)
        self.apply(orthogonal_init)
        side = (image_size - 3) // 2 + 1 - 4
        self.feature_shape = (32, side, side)
        self.trunk = Trunk(32 * side * side, feature_dim)
        self.out_dim = feature_dim

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.trunk(self.convs(obs).flatten(1))

    def feature_map(self, obs: torch.Tensor) -> torch.Tensor:
        """The last conv layer's output (after its ReLU and mixing): the ND score's input."""
        return self.convs(obs)

    def from_feature_map(self, feature_map: torch.Tensor) -> torch.Tensor:
        return self.trunk(feature_map.flatten(1))
