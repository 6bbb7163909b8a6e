"""DreamerV3's building blocks: a norm + SiLU after every hidden layer (LayerNorm in the 2023 spec,
RMSNorm in the 2024 one: ``norm="layer" | "rms"``), a CNN encoder/decoder whose width is one depth
multiplier, the MLP encoder/decoder of vector observations, MLPs, and the GRU with the norm inside."""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn

from worldmodels.nets.distributions import symlog


# LayerNorm epsilon of the DreamerV3 reference code (and sheeprl), larger than torch's 1e-5.
NORM_EPS = 1e-3
# RMSNorm epsilon of the 2024 reference code.
RMS_EPS = 1e-4
NORMS = ("layer", "rms")


def _checked(norm: str) -> str:
    if norm not in NORMS:
        raise ValueError(f"norm is '{norm}'; choose one of {', '.join(NORMS)}")
    return norm


def norm_layer(dim: int, norm: str = "layer") -> nn.Module:
    """The 2023 spec's LayerNorm (learned scale and shift) or the 2024 spec's RMSNorm (learned scale)."""
    return nn.LayerNorm(dim, eps=NORM_EPS) if _checked(norm) == "layer" else nn.RMSNorm(dim, eps=RMS_EPS)


class _OverChannels:
    """Applies the norm over the channels of a (B, C, H, W) map, at every pixel, as the reference code
    normalises conv features."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ChannelNorm(_OverChannels, nn.LayerNorm):
    def __init__(self, channels: int):
        super().__init__(channels, eps=NORM_EPS)


class ChannelRMSNorm(_OverChannels, nn.RMSNorm):
    def __init__(self, channels: int):
        super().__init__(channels, eps=RMS_EPS)


def channel_norm(channels: int, norm: str = "layer") -> nn.Module:
    return ChannelNorm(channels) if _checked(norm) == "layer" else ChannelRMSNorm(channels)


# Standard deviation of a unit Normal truncated to [-2, 2]: dividing by it gives the truncated draw
# the intended standard deviation.
_TRUNCATED_STD = 0.87962566103423978
# The reference's ``winit`` values: "normal" is its Normal truncated at two standard deviations,
# "uniform" a uniform draw of the same variance (danijar/dreamerv3 8fa35f8, dreamerv3/nets.py lines 640-663).
INITS = ("normal", "uniform")


def init_weights_(module: nn.Module, scale: float = 1.0, fans: tuple[int, int] | None = None,
                  dist: str = "normal") -> nn.Module:
    """The 2023 reference code's initializer (``Initializer`` with ``fan: avg``, danijar/dreamerv3 8fa35f8,
    dreamerv3/nets.py lines 640-686) on every Linear and (transposed) convolution of ``module``: weights
    of variance ``scale / mean(fan_in, fan_out)`` and zero biases, drawn by ``dist``:

        "normal"   (``winit: normal``, nets.py lines 657-663) a Normal truncated at two standard deviations;
        "uniform"  (``winit: uniform``, nets.py lines 650-656) U(-limit, limit) with limit = sqrt(3 var), so
                   that its variance limit^2 / 3 is the same var. The reference's Linear and Conv2D default
                   to it (nets.py lines 514 and 566); its configs set ``winit: normal`` on every hidden
                   layer (configs.yaml lines 67-71, 78-79), so it is left on the layers built without
                   those settings: the distribution outputs, the RSSM's logit layers and the image
                   decoder's first Linear and last transposed convolution (each named where it is built).

    ``scale`` is the reference's ``outscale``; 0 gives zero weights whatever ``dist`` (nets.py line 648:
    the reward and critic outputs). ``fans`` overrides the fans of a layer that the reference computes as
    one and we split in two (the posterior's first layer), or two that we join in one (the actor's mean
    and standard deviation outputs).

    Not torch's default (uniform, variance 1 / (3 fan_in)), whose weights are about half as large."""
    if dist not in INITS:
        raise ValueError(f"dist is '{dist}'; choose one of {', '.join(INITS)}")
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            weight = layer.weight
            receptive = weight[0][0].numel()  # kernel area; 1 for a Linear
            fan_in, fan_out = fans or (weight.shape[1] * receptive, weight.shape[0] * receptive)
            variance = scale / ((fan_in + fan_out) / 2)
            with torch.no_grad():
                if not scale:
                    weight.zero_()
                elif dist == "uniform":
                    limit = math.sqrt(3 * variance)
                    nn.init.uniform_(weight, -limit, limit)
                else:
                    std = math.sqrt(variance) / _TRUNCATED_STD
                    nn.init.trunc_normal_(weight, 0.0, std, -2 * std, 2 * std)
                if layer.bias is not None:
                    layer.bias.zero_()
    return module


def mlp(in_dim: int, units: int, layers: int, out_dim: int | None = None, zero_out: bool = False,
        norm: str = "layer", out_fans: tuple[int, int] | None = None) -> nn.Sequential:
    """``layers`` x (Linear, norm, SiLU), then an optional Linear output. The hidden layers are drawn from
    the truncated Normal (the configs' ``winit: normal``); the output from the uniform initializer with
    outscale 1, or zeros with ``zero_out`` (outscale 0, DreamerV3's reward and critic heads, so their first
    predictions are 0). Every DreamerV3 output built here is one the reference builds without ``winit``,
    so with its uniform default: ``Dist``'s output Linear (danijar/dreamerv3 8fa35f8, dreamerv3/nets.py
    line 472) for the reward, continue, actor and critic heads, and the RSSM's prior logits (``_stats``,
    nets.py line 144). ``out_fans``: the output layer's fans, where it stands for more than one reference layer."""
    blocks: list[nn.Module] = []
    for i in range(layers):
        blocks += [init_weights_(nn.Linear(in_dim if i == 0 else units, units, bias=False)),
                   norm_layer(units, norm), nn.SiLU()]
    if out_dim is not None:
        blocks.append(init_weights_(nn.Linear(units if layers else in_dim, out_dim), scale=0.0 if zero_out else 1.0,
                                    fans=out_fans, dist="uniform"))
    return nn.Sequential(*blocks)


class ConvEncoder(nn.Module):
    """(..., C, 64, 64) uint8 -> (..., 8d * 4 * 4): four stride-2 convs of kernel 4 with d, 2d, 4d, 8d
    channels, each followed by a norm over channels and SiLU. Pixels are centred to [-0.5, 0.5] here."""

    def __init__(self, in_channels: int, depth: int, image_size: int = 64, norm: str = "layer"):
        super().__init__()
        layers, channels = [], in_channels
        for mult in (1, 2, 4, 8):
            layers += [nn.Conv2d(channels, depth * mult, 4, 2, 1, bias=False), channel_norm(depth * mult, norm),
                       nn.SiLU()]
            channels = depth * mult
        # Channels-last: oneDNN's CPU convolutions run about 20% faster, and ChannelNorm's permute is free.
        self.net = init_weights_(nn.Sequential(*layers)).to(memory_format=torch.channels_last)
        self.out_dim = channels * (image_size // 16) ** 2

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        lead = obs.shape[:-3]
        x = (obs.reshape(-1, *obs.shape[-3:]).float() / 255.0 - 0.5).contiguous(memory_format=torch.channels_last)
        # Flattened in (C, H, W) order whatever the memory layout, so weights do not depend on it.
        return self.net(x).reshape(x.shape[0], -1).reshape(*lead, -1)


class ConvDecoder(nn.Module):
    """Features -> (..., C, 64, 64) image in [-0.5, 0.5] space (the MSE target is obs/255 - 0.5):
    a Linear to 8d x 4 x 4, then transposed convs 8d -> 4d -> 2d -> d -> C."""

    def __init__(self, feat_dim: int, out_channels: int, depth: int, image_size: int = 64, norm: str = "layer"):
        super().__init__()
        self.min_res, self.depth = image_size // 16, depth
        # Uniform: the reference's decoder 'in' Linear is built without the config's winit
        # (danijar/dreamerv3 8fa35f8, dreamerv3/nets.py line 365).
        self.inp = init_weights_(nn.Linear(feat_dim, 8 * depth * self.min_res ** 2), dist="uniform")
        layers, channels = [], 8 * depth
        for mult in (4, 2, 1):
            layers += [init_weights_(nn.ConvTranspose2d(channels, depth * mult, 4, 2, 1, bias=False)),
                       channel_norm(depth * mult, norm), nn.SiLU()]
            channels = depth * mult
        # Uniform: the last stage's kw is {} (nets.py lines 376-380), so Conv2D's default winit 'uniform' (line 514).
        layers.append(init_weights_(nn.ConvTranspose2d(channels, out_channels, 4, 2, 1), dist="uniform"))
        self.net = nn.Sequential(*layers).to(memory_format=torch.channels_last)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        lead = feat.shape[:-1]
        x = rearrange(self.inp(feat.reshape(-1, feat.shape[-1])), "b (c h w) -> b c h w", h=self.min_res, w=self.min_res)
        out = self.net(x.contiguous(memory_format=torch.channels_last)).contiguous()
        return out.reshape(*lead, *out.shape[1:])


class VectorEncoder(nn.Module):
    """(..., D) float vectors -> (..., units): symlog, then ``layers`` x (Linear, norm, SiLU).

    The 2023 reference code's encoder MLP (danijar/dreamerv3 8fa35f8, dreamerv3/nets.py lines 213-214 and
    228-234: ``MLP(None, mlp_layers, mlp_units, dist='none', symlog_inputs=True)``, configs.yaml line 68):
    the caller concatenates the vector keys in order; symlog squashes inputs of any scale to a few units
    (Hafner et al. 2023, arXiv 2301.04104v1, the paragraph on symlog predictions around Eq. 1); the output
    is the last hidden layer, no output layer. Hidden layers as ``mlp``'s (the configs' ``winit: normal``,
    no bias before the norm)."""

    def __init__(self, in_dim: int, units: int, layers: int, norm: str = "layer"):
        super().__init__()
        self.net = mlp(in_dim, units, layers, norm=norm)
        self.out_dim = units if layers else in_dim

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.net(symlog(vectors.float()))


class VectorDecoder(nn.Module):
    """Features -> predictions in symlog space of every vector key, side by side (..., sum(dims)): one
    trunk of ``layers`` x (Linear, norm, SiLU) shared by the keys, then one output Linear per key.

    As the 2023 reference code's decoder MLP (danijar/dreamerv3 8fa35f8, dreamerv3/nets.py lines 269-271,
    290-291 and 440-441: ``MLP(mlp_shapes, mlp_layers, mlp_units, dist='symlog_mse', outscale=1.0)``, one
    ``dist_<key>`` head per key on one trunk). Each output layer is one the reference builds without the
    config's ``winit`` (``Dist``'s 'out', nets.py line 472), so uniform with outscale 1 (decoder
    ``outscale: 1.0``, configs.yaml line 69), of fans (units, that key's size)."""

    def __init__(self, feat_dim: int, dims: tuple[int, ...], units: int, layers: int, norm: str = "layer"):
        super().__init__()
        self.trunk = mlp(feat_dim, units, layers, norm=norm)
        width = units if layers else feat_dim
        self.heads = nn.ModuleList(init_weights_(nn.Linear(width, dim), dist="uniform") for dim in dims)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        hidden = self.trunk(feat)
        return torch.cat([head(hidden) for head in self.heads], -1)


class NormGRUCell(nn.Module):
    """DreamerV3's GRU: one bias-free Linear of [input, state] to the three gates, a norm over them,
    and an update-gate bias of -1 so the state is mostly kept early in training:
        r, c, u = norm(W [x, h]);  c = tanh(sigmoid(r) * c);  u = sigmoid(u - 1);  h' = u c + (1 - u) h
    """

    def __init__(self, in_dim: int, units: int, norm: str = "layer"):
        super().__init__()
        self.linear = init_weights_(nn.Linear(in_dim + units, 3 * units, bias=False))
        self.norm = norm_layer(3 * units, norm)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        reset, cand, update = self.norm(self.linear(torch.cat([x, h], -1))).chunk(3, -1)
        cand = torch.tanh(torch.sigmoid(reset) * cand)
        update = torch.sigmoid(update - 1.0)
        return update * cand + (1.0 - update) * h
