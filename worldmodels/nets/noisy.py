"""Noisy linear layers (Fortunato et al. 2018, factorised Gaussian noise), as Dopamine's JAX
``NoisyNetwork`` builds them for Rainbow and DER.

    y = (mu_W + sigma_W * f(eps_out) f(eps_in)^T) x + mu_b + sigma_b * f(eps_out),   f(e) = sign(e) sqrt|e|

Initialisation (the paper's section 3.2 for factorised noise, Dopamine's constants): mu ~ U[-1/sqrt(p),
1/sqrt(p)] and sigma = sigma0 / sqrt(p) for p inputs. The paper's sigma0 is 0.5; Dopamine's code uses
0.1 (and so does A-LIX's Atari table), hence the default. One noise draw per forward, shared by the
batch. Noise is on in training mode and off (mean weights) in evaluation mode, unless ``noise_on``
says otherwise: an agent that explores with its noise acts in evaluation mode with noise forced on.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from worldmodels.nets.draws import DeviceStream


def signed_sqrt(x: torch.Tensor) -> torch.Tensor:
    return x.sign() * x.abs().sqrt()


class NoisyLinear(nn.Module):
    def __init__(self, in_features: int, out_features: int, sigma0: float = 0.1):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features)
        self.weight_mu = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))
        self.bias_mu = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))
        self.weight_sigma = nn.Parameter(torch.full((out_features, in_features), sigma0 * bound))
        self.bias_sigma = nn.Parameter(torch.full((out_features,), sigma0 * bound))
        self.noise_on: bool | None = None  # None: follow training mode
        self.stream: DeviceStream | None = None  # the owner's random stream; None: torch's global generator

    def sample_noise(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(f(eps_in), f(eps_out)), drawn on ``device`` from ``stream`` (or torch's global generator)."""
        generator = self.stream.on(device) if self.stream is not None else None
        return (signed_sqrt(torch.randn(self.in_features, device=device, generator=generator)),
                signed_sqrt(torch.randn(self.out_features, device=device, generator=generator)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noisy = self.training if self.noise_on is None else self.noise_on
        if not noisy:
            return F.linear(x, self.weight_mu, self.bias_mu)
        eps_in, eps_out = self.sample_noise(x.device)
        bias = torch.addcmul(self.bias_mu, self.bias_sigma, eps_out)
        if x.dim() == 1 or x.shape[0] < 8:
            # Acting: (sigma * outer(eps_out, eps_in)) x = eps_out * (sigma (eps_in * x)) skips building the
            # noisy weight (4M entries in the 7744 -> 512 layer): 2x faster at batch 1, slower at batch 32.
            return F.linear(x, self.weight_mu, bias) + F.linear(x * eps_in, self.weight_sigma) * eps_out
        return F.linear(x, torch.addcmul(self.weight_mu, self.weight_sigma, torch.outer(eps_out, eps_in)), bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


@contextmanager
def noise_forced(module: nn.Module, on: bool):
    """Every NoisyLinear of ``module`` draws noise (``on``) or uses its mean weights, whatever the mode."""
    layers = [m for m in module.modules() if isinstance(m, NoisyLinear)]
    saved = [layer.noise_on for layer in layers]
    for layer in layers:
        layer.noise_on = on
    try:
        yield
    finally:
        for layer, value in zip(layers, saved):
            layer.noise_on = value
