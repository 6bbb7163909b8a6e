"""Optimizers beyond torch's: LaProp (Ziyin et al., 2020) and adaptive gradient clipping (Brock et
al., 2021), the 2024 DreamerV3 spec's optimizer, and TensorFlow's centred RMSProp, Nature DQN's.
torch.optim has none of them.

    LaProp: the gradient is divided by its RMS (an EMA of g^2, bias-corrected) *before* the momentum
    average, which decouples momentum from the adaptive step size (Adam divides after it):
        v <- b2 v + (1 - b2) g^2
        m <- b1 m + (1 - b1) g / (sqrt(v / (1 - b2^t)) + eps)
        p <- p - lr_t m / (1 - b1^t),   lr_t = lr min(1, t / warmup)
    with eps outside the square root, both moments bias-corrected and a linear warm-up of the
    learning rate, as the 2024 DreamerV3 code (lr 4e-5, eps 1e-20, betas 0.9 / 0.999, warm-up 1000).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


def _by_device_and_dtype(tensors: list[torch.Tensor], *extra) -> dict[tuple, list[int]]:
    """Indices of ``tensors`` grouped by (device, dtype, *extra[i]): the lists a ``torch._foreach_*``
    op takes on its fast path (one kernel per group on a GPU) are on one device in one dtype."""
    groups: dict[tuple, list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault((t.device, t.dtype, *(e[i] for e in extra)), []).append(i)
    return groups


class LaProp(torch.optim.Optimizer):
    """LaProp as the module docstring writes it, with ``torch._foreach_*`` ops over each group's
    parameters that have a gradient: a handful of kernels per (device, dtype, step count) instead of
    several per parameter. The state stays per parameter: ``step`` (a Python int, so the bias
    corrections and warm-up never read the device), ``exp_avg`` (m) and ``exp_avg_sq`` (v)."""

    def __init__(self, params, lr: float = 4e-5, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-20,
                 warmup: int = 1000):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, warmup=warmup))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            params = [p for p in group["params"] if p.grad is not None]
            steps = []
            for p in params:
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                steps.append(state["step"])
            # Parameters share their scalars (bias corrections, lr_t) when they share a step count:
            # usually all of a group's do, unless some had no gradient on earlier steps.
            for (_, _, t), indices in _by_device_and_dtype(params, steps).items():
                ps = [params[i] for i in indices]
                grads = [p.grad for p in ps]
                ms = [self.state[p]["exp_avg"] for p in ps]
                vs = [self.state[p]["exp_avg_sq"] for p in ps]
                torch._foreach_mul_(vs, beta2)
                torch._foreach_addcmul_(vs, grads, grads, value=1 - beta2)
                rms = torch._foreach_div(vs, 1 - beta2 ** t)
                torch._foreach_sqrt_(rms)
                torch._foreach_add_(rms, group["eps"])
                torch._foreach_mul_(ms, beta1)
                torch._foreach_addcdiv_(ms, grads, rms, value=1 - beta1)
                lr = group["lr"] * min(1.0, t / group["warmup"]) if group["warmup"] else group["lr"]
                torch._foreach_add_(ps, ms, alpha=-lr / (1 - beta1 ** t))
        return loss


@torch.no_grad()
def adaptive_clip_grad_(params: Iterable[torch.nn.Parameter], clip: float, pmin: float = 1e-3) -> torch.Tensor:
    """Scale each parameter tensor's gradient g down to at most clip x max(pmin, |p|) in norm (whole-
    tensor norms, as the 2024 DreamerV3 code; pmin keeps zero-initialised weights trainable). Returns
    the global gradient norm before clipping, for logging. The norms come from ``torch._foreach_norm``
    and the factors apply with one ``torch._foreach_mul_`` per (device, dtype): no host sync."""
    params = [p for p in params if p.grad is not None]
    if not params:
        return torch.zeros(())
    group_norms = []
    for indices in _by_device_and_dtype(params).values():
        ps = [params[i] for i in indices]
        grads = [p.grad for p in ps]
        grad_norms = torch.stack(torch._foreach_norm(grads))
        upper = clip * torch.stack(torch._foreach_norm(ps)).clamp(min=pmin)
        factors = torch.clamp(grad_norms / upper, min=1.0).reciprocal()
        torch._foreach_mul_(grads, list(factors.unbind()))
        group_norms.append(grad_norms)
    first = group_norms[0]
    return torch.linalg.vector_norm(torch.cat([n.to(first.device) for n in group_norms]))


class TFRMSprop(torch.optim.Optimizer):
    """RMSProp as TensorFlow 1's ``RMSPropOptimizer`` computes it, the optimizer of Nature DQN (Dopamine's
    dqn_nature.gin: lr 2.5e-4, decay 0.95, momentum 0, epsilon 1e-5, centered). Without momentum:
        ms <- decay ms + (1 - decay) g^2          (ms starts at 1, TF's slot initialiser)
        mg <- decay mg + (1 - decay) g            (centered only; starts at 0)
        p  <- p - lr g / sqrt(ms - mg^2 + eps)    (eps inside the square root)
    torch's RMSprop starts ms at 0 and adds eps outside the root; with eps 1e-5 the two differ by
    orders of magnitude early on, where the gradient's second moment is small."""

    def __init__(self, params, lr: float = 2.5e-4, decay: float = 0.95, eps: float = 1e-5, centered: bool = True):
        super().__init__(params, dict(lr=lr, decay=decay, eps=eps, centered=centered))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else closure()
        for group in self.param_groups:
            decay = group["decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["ms"] = torch.ones_like(p)
                    state["mg"] = torch.zeros_like(p)
                ms, mg = state["ms"], state["mg"]
                ms.mul_(decay).addcmul_(p.grad, p.grad, value=1 - decay)
                denominator = ms.clone()
                if group["centered"]:
                    mg.mul_(decay).add_(p.grad, alpha=1 - decay)
                    denominator.addcmul_(mg, mg, value=-1)
                p.addcdiv_(p.grad, denominator.add_(group["eps"]).sqrt_(), value=-group["lr"])
        return loss


OPTIMIZERS = {"adam": torch.optim.Adam, "laprop": LaProp}
