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


class LaProp(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 4e-5, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-20,
                 warmup: int = 1000):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, warmup=warmup))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                rms = (v / (1 - beta2 ** t)).sqrt_().add_(group["eps"])
                m.mul_(beta1).add_(p.grad / rms, alpha=1 - beta1)
                lr = group["lr"] * min(1.0, t / group["warmup"]) if group["warmup"] else group["lr"]
                p.add_(m, alpha=-lr / (1 - beta1 ** t))
        return loss


@torch.no_grad()
def adaptive_clip_grad_(params: Iterable[torch.nn.Parameter], clip: float, pmin: float = 1e-3) -> torch.Tensor:
    """Scale each parameter tensor's gradient g down to at most clip x max(pmin, |p|) in norm (whole-
    tensor norms, as the 2024 DreamerV3 code; pmin keeps zero-initialised weights trainable). Returns
    the global gradient norm before clipping, for logging."""
    params = [p for p in params if p.grad is not None]
    grad_norms = [torch.linalg.vector_norm(p.grad) for p in params]
    for p, grad_norm in zip(params, grad_norms):
        upper = clip * torch.linalg.vector_norm(p).clamp(min=pmin)
        p.grad.mul_(1.0 / torch.clamp(grad_norm / upper, min=1.0))
    return torch.linalg.vector_norm(torch.stack(grad_norms))


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
