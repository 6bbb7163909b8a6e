"""Several processes without DDP's wrapper: one averaging all-reduce per backward pass, of the weights
that pass reached.

Each update of DreamerV3, SAC, DrQ-v2 and A-LIX runs one backward pass per optimizer or pair of
optimizers (world model, then actor and critic; critic, then actor), each reaching part of the weights,
and a later loss needs the earlier optimizer's step, so the losses cannot be summed into one pass.
``DistributedDataParallel`` all-reduces whole buckets after every backward, and to let a pass skip
weights it does not reach it needs ``find_unused_parameters``: a walk of the autograd graph and a host
sync per pass, and the full gradient (72 MB for DreamerV3-S) all-reduced three times per update.

``GradientGroupsDDP`` keeps Lightning's DDP strategy (process launch, process group, ranks, samplers,
collectives for logging and checkpoints) but leaves the module unwrapped. A hook on every weight notes
which weights the pass accumulated a gradient into; after the pass (``post_backward``) their gradients
are averaged over the processes in one all-reduce per dtype, flattened into one buffer, in the module's
parameter order (equal on every rank). The average is computed as DDP's default hook computes it (each
gradient divided by the number of processes, then summed), so clipping and the optimizer steps that
follow see what they saw under DDP. Buffers are not broadcast at each forward (DDP's
``broadcast_buffers``): every buffer of the agents is the same on every rank by construction (constant
bins and supports; DreamerV3's return scale reads every rank's returns), and the weights and buffers
are broadcast once from the first process at set-up, as DDP's wrapper does when it is built.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from lightning.pytorch.overrides.distributed import _sync_module_states
from lightning.pytorch.strategies import DDPStrategy
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors


class ReachedWeights:
    """The weights of ``module`` that backward passes accumulated a gradient into since ``take``."""

    def __init__(self, module: nn.Module):
        self.weights = [p for p in module.parameters() if p.requires_grad]
        self._reached: set[int] = set()
        for p in self.weights:
            p.register_post_accumulate_grad_hook(lambda p: self._reached.add(id(p)))

    def take(self) -> list[torch.Tensor]:
        """The weights reached, in the module's order, and forget them."""
        reached = [p for p in self.weights if id(p) in self._reached and p.grad is not None]
        self._reached.clear()
        return reached


def average_gradients(weights: list[torch.Tensor], world: int, group=None) -> None:
    """Each weight's gradient replaced by its mean over the ``world`` processes: one all-reduce per dtype."""
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for p in weights:
        by_dtype.setdefault(p.grad.dtype, []).append(p.grad)
    for grads in by_dtype.values():
        flat = _flatten_dense_tensors(grads).div_(world)
        dist.all_reduce(flat, group=group)
        for grad, averaged in zip(grads, _unflatten_dense_tensors(flat, grads)):
            grad.copy_(averaged)


class GradientGroupsDDP(DDPStrategy):
    """Lightning's DDP strategy with the gradients averaged per backward pass (module docstring)."""

    def configure_ddp(self) -> None:
        _sync_module_states(self.model)  # the first process's weights and buffers, as DDP's constructor does
        self._reached = ReachedWeights(self.model)

    def post_backward(self, closure_loss: torch.Tensor) -> None:
        weights = self._reached.take()
        if weights and self.world_size > 1:
            average_gradients(weights, self.world_size)
