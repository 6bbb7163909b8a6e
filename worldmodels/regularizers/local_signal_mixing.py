"""A-LIX (Cetin et al. 2022): adaptive local signal mixing of an encoder's feature maps.

A-LIX replaces DrQ-v2's image augmentation with a layer after every conv + ReLU that resamples
the feature map at a small random sub-pixel shift. Mixing neighbouring cells smooths the
gradient the critic sends back into the encoder, which is what stops it from overfitting its own
TD targets. The shift's strength S is tuned online by a dual step that keeps the normalised
discontinuity (ND) of the last layer's feature gradient near a target.

Typical use in an agent (one S shared by all layers, tuned from the last one)::

    strength = AdaptiveStrength()
    mixing = lambda last: LocalSignalMixing(strength, record_gradient=last)
    encoder = DrQEncoder(channels, mixing=mixing)  # conv, ReLU, mix, ..., conv, ReLU, mix (the last records)
    ...                                            # after moving the agent to its device:
    strength.make_optimizer()
    ...
    critic_loss.backward()
    metrics = alix_dual_step(strength, encoder)    # S <- Adam step on (target_nd - nd), clamped to [0, 1]
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from worldmodels.diagnostics.nd_score import nd_score
from worldmodels.nets.draws import DeviceStream
from worldmodels.training.distributed import mean_over_ranks
from worldmodels.regularizers.augment import take_shifted


class AdaptiveStrength(nn.Module):
    """The mixing strength S in [0, 1], learned by dual gradient steps on the ND score.

    The "gradient" of S is ``target_nd - nd``: a descent step raises S when the feature gradient
    is more discontinuous than the target (more mixing needed) and lowers it otherwise. S has its
    own Adam (lr 2e-3, betas (0.5, 0.999) as in the reference code) because its gradient is not
    a loss gradient and must not share the encoder's step size.

    S is stored as a Parameter with ``requires_grad=False``: it moves and checkpoints with the
    module, autograd never touches it, and an encoder optimizer that also lists it never steps it
    (its ``.grad`` is only set inside ``update``). Checkpoint ``optimizer.state_dict()`` yourself
    if Adam's moments must survive a resume.
    """

    def __init__(self, init: float = 0.5, target_nd: float = 0.535, lr: float = 2e-3,
                 betas: tuple[float, float] = (0.5, 0.999)):
        super().__init__()
        self.s = nn.Parameter(torch.tensor(float(init)), requires_grad=False)
        self.target_nd = target_nd
        self.lr = lr
        self.betas = tuple(betas)
        self.optimizer: torch.optim.Optimizer | None = None

    @property
    def value(self) -> torch.Tensor:
        """Current S, a 0-dim float tensor on S's device (detached)."""
        return self.s.detach()

    def make_optimizer(self) -> torch.optim.Optimizer:
        """S's own Adam. Create it after the module reached its device (Adam's moments are
        allocated where S lives at the first step); ``update`` creates it if it is missing."""
        self.optimizer = torch.optim.Adam([self.s], lr=self.lr, betas=self.betas)
        return self.optimizer

    @torch.no_grad()
    def update(self, nd: float | torch.Tensor) -> None:
        """One dual step from an ND score: Adam on gradient ``target_nd - nd``, then clamp to [0, 1]."""
        if self.optimizer is None:
            self.make_optimizer()
        # The mean over the processes of a several-device run: S is one value, like the weights.
        nd = mean_over_ranks(torch.as_tensor(nd, dtype=self.s.dtype, device=self.s.device).detach())
        self.s.grad = (self.target_nd - nd).reshape(())
        self.optimizer.step()
        self.s.grad = None
        self.s.clamp_(0.0, 1.0)

    def update_from(self, layer: "LocalSignalMixing") -> torch.Tensor | None:
        """``update`` with the ND score of ``layer``'s last recorded gradient; returns that score
        (for logging), or None when the layer recorded nothing (no backward since its last
        training forward)."""
        grad = layer.last_gradient()
        if grad is None:
            return None
        nd = nd_score(grad)
        self.update(nd)
        return nd

    def extra_repr(self) -> str:
        return f"S={self.s.item():.4f}, target_nd={self.target_nd}"


class LocalSignalMixing(nn.Module):
    """Replicate-pad the feature map and resample it bilinearly at a random continuous shift
    in [-max_shift * S, max_shift * S] pixels per axis; identity in eval mode (acting).

    As in the reference code, one shift is drawn for the whole batch (``per_sample=False``);
    the reference's LocalSignalMixing(pad=2) gives max_shift = (2 * 2 + 1) / 2 = 2.5. It is
    meant to stay active in training mode for every forward, target computations included.

    The resampling is written as two 1-D linear interpolations between integer translations
    with clamped indices (clamping = replicate padding), so S = 0 is exactly the identity and
    nothing is read from outside the padded map. Gradients flow to the input, not to S.

    record_gradient: in training mode, keep dLoss/dOutput of the latest backward through this
    layer (a tensor hook), so ``last_gradient()`` can feed the ND score. Only the layer S is
    tuned from (the last one) needs it.
    """

    def __init__(self, strength: AdaptiveStrength, max_shift: float = 2.5, per_sample: bool = False,
                 record_gradient: bool = True):
        super().__init__()
        self.strength = strength
        self.max_shift = max_shift
        self.per_sample = per_sample
        self.record_gradient = record_gradient
        self._gradient: torch.Tensor | None = None
        self.stream: DeviceStream | None = None  # the owner's random stream; None: torch's global generator

    def sample_shift(self, batch: int, device: torch.device | str | None = None) -> torch.Tensor:
        """Shift in pixels (row, column), uniform in [-max_shift * S, max_shift * S]:
        shape (B, 2) if per_sample else (1, 2)."""
        n = batch if self.per_sample else 1
        s = self.strength.value.to(device)
        generator = self.stream.on(device if device is not None else "cpu") if self.stream is not None else None
        return (2 * torch.rand(n, 2, device=device, generator=generator) - 1) * (self.max_shift * s)

    @staticmethod
    def mix(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """Bilinear sample of the replicate-padded map at ``(i + dy, j + dx)``.
        x: (B, C, H, W) float; shift: (B, 2) or (1, 2) pixels (dy, dx)."""
        base = shift.floor()
        frac = (shift - base).to(x.dtype)
        base = base.long()
        fy, fx = frac[:, 0].view(-1, 1, 1, 1), frac[:, 1].view(-1, 1, 1, 1)
        if shift.shape[0] == 1 and x.device.type == "cpu" and shift.device.type == "cpu":
            dy, dx = base[0].tolist()  # on the CPU reading the shift costs no device sync
            return LinearShift.apply(LinearShift.apply(x, 2, dy, fy), 3, dx, fx)
        rows = (1 - fy) * take_shifted(x, 2, base[:, 0]) + fy * take_shifted(x, 2, base[:, 0] + 1)
        return (1 - fx) * take_shifted(rows, 3, base[:, 1]) + fx * take_shifted(rows, 3, base[:, 1] + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        out = self.mix(x, self.sample_shift(x.shape[0], x.device))
        if self.record_gradient and out.requires_grad:
            self._gradient = None
            out.register_hook(self._store_gradient)
        return out

    def _store_gradient(self, grad: torch.Tensor) -> None:
        self._gradient = grad.detach()

    def last_gradient(self) -> torch.Tensor | None:
        """dLoss/dOutput (B, C, H, W) of the latest backward through the latest training forward
        that required grad; None before any such backward."""
        return self._gradient

    def extra_repr(self) -> str:
        return f"max_shift={self.max_shift}, per_sample={self.per_sample}"


class LinearShift(torch.autograd.Function):
    """One axis of ``LocalSignalMixing.mix`` with one shift for the batch, on the CPU:
    ``out[i] = (1 - f) * x[clamp(i + k)] + f * x[clamp(i + k + 1)]`` along ``dim``, rounded as the two
    shifted copies, two products and one sum it replaces, and differentiated as they were, bit for bit,
    in fewer passes over the map (3 instead of 5 forward, 5 instead of 7 backward): the positions whose
    two sources lie inside the map are computed on views of x, the few others (at most |k| + 1 at each
    end) one slice at a time."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, dim: int, k: int, f: torch.Tensor) -> torch.Tensor:
        n = x.shape[dim]
        a, b = 1 - f, f
        ctx.dim, ctx.k = dim, k
        ctx.save_for_backward(a, b)
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
        lo, hi = min(max(-k, 0), n), max(min(n - 1 - k, n), 0)  # both sources inside: 0 <= i + k, i + k + 1 < n
        if hi > lo:
            inside = out.narrow(dim, lo, hi - lo)
            torch.mul(x.narrow(dim, lo + k, hi - lo), a, out=inside)
            inside.add_(x.narrow(dim, lo + k + 1, hi - lo) * b)
        clamp = lambda j: min(max(j, 0), n - 1)
        for i in [*range(min(lo, n)), *range(max(hi, lo), n)]:
            out.narrow(dim, i, 1).copy_(a * x.narrow(dim, clamp(i + k), 1) + b * x.narrow(dim, clamp(i + k + 1), 1))
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        a, b = ctx.saved_tensors
        out = torch.zeros_like(grad, memory_format=torch.contiguous_format)
        add_shifted_back(out, grad * a, ctx.dim, ctx.k)
        add_shifted_back(out, grad * b, ctx.dim, ctx.k + 1)
        return out, None, None, None


def add_shifted_back(out: torch.Tensor, grad: torch.Tensor, dim: int, offset: int) -> None:
    """``out += c`` with c the gradient of a replicate-clamped shift by ``offset`` (``take_shifted``) as its
    backward makes it: ``c[clamp(i + offset)] += grad[i]`` from zeros in ascending i (``index_add_``).
    Every position inside the map gets at most one term, added to ``out`` directly (the same bits as adding
    0 + term: ``out`` here holds zeros or such a sum, never -0); the first and last positions can get
    several, summed apart from zero in that order and then added."""
    n = grad.shape[dim]
    lo, hi = min(max(1 - offset, 0), n), max(min(n - 1 - offset, n), 0)  # targets 1 .. n - 2
    edge: dict[int, torch.Tensor] = {}
    for i in [*range(min(lo, n)), *range(max(hi, lo), n)]:
        j = min(max(i + offset, 0), n - 1)
        term = grad.narrow(dim, i, 1)
        edge[j] = edge[j].add_(term) if j in edge else torch.zeros_like(term).add_(term)
    if hi > lo:
        out.narrow(dim, lo + offset, hi - lo).add_(grad.narrow(dim, lo, hi - lo))
    for j, total in edge.items():
        out.narrow(dim, j, 1).add_(total)


def tuned_layer(encoder: nn.Module) -> LocalSignalMixing:
    """The mixing layer S is tuned from: the encoder's last, the one that records its gradient."""
    return [m for m in encoder.modules() if isinstance(m, LocalSignalMixing)][-1]


def alix_dual_step(strength: AdaptiveStrength, encoder: nn.Module) -> dict[str, torch.Tensor]:
    """A-LIX's dual step on S (Cetin et al. 2022, arXiv:2207.00986), after the critic's backward:
    from the ND score of the gradient ``encoder``'s last mixing layer recorded. Returns the figures to log:
    S after the step and the ND score it read (absent when the layer recorded nothing)."""
    nd = strength.update_from(tuned_layer(encoder))
    metrics = {"train/alix_s": strength.value}
    return metrics if nd is None else {**metrics, "train/nd_score": nd}


@contextmanager
def gradient_recording_off(module: nn.Module):
    """Forwards inside this block leave no gradient for ``module``'s mixing layers to record: for a
    second pass (s' under DR3, whose features also get a gradient) that must not replace the
    critic's gradient at s, which the ND score and S's dual step read."""
    layers = [m for m in module.modules() if isinstance(m, LocalSignalMixing) and m.record_gradient]
    for layer in layers:
        layer.record_gradient = False
    try:
        yield
    finally:
        for layer in layers:
            layer.record_gradient = True
