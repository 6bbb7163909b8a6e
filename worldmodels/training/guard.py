"""The numerical guard: a run whose losses or gradient norms turn NaN or inf stops, instead of training
on garbage and saving it.

Every agent passes its training metrics through ``Agent.log_scalars`` on every update (whether or not
they are written); the agent folds each tensor's finiteness into a flag that stays on the device, with
the first update at which each metric went bad, so checking costs no host sync per step. The
``NumericalGuard`` callback reads the flags every ``every_updates`` updates and, before any checkpoint
of that update is written, stops the run with one sentence (``NonFiniteError``: exit code 2). The
health check and the evaluation ask it first (``check_finite_first``): they would otherwise be the first
to meet the NaN, in an error of their own.
"""

from __future__ import annotations

import torch

from worldmodels.errors import NonFiniteError
from worldmodels.training.clock import LoopCallback


class FiniteWatch:
    """Per metric: a device-side flag "went non-finite" and the first update it did."""

    def __init__(self):
        self.first_bad: dict[str, torch.Tensor] = {}  # name -> 0-dim int64, -1 while finite

    def observe(self, metrics: dict, update: int) -> None:
        for name, value in metrics.items():
            if not torch.is_tensor(value) or not value.is_floating_point():
                continue
            bad = ~torch.isfinite(value.detach()).all()
            first = self.first_bad.get(name)
            if first is None:
                first = self.first_bad[name] = torch.full((), -1, dtype=torch.long, device=value.device)
            first.copy_(torch.where(bad & (first < 0), torch.full_like(first, update), first))

    def report(self) -> tuple[str, int] | None:
        """(metric, first bad update) of the earliest metric to go non-finite, or None (one host sync)."""
        if not self.first_bad:
            return None
        names = list(self.first_bad)
        firsts = torch.stack([self.first_bad[n].to("cpu") for n in names])
        bad = firsts >= 0
        if not bad.any():
            return None
        earliest = int(torch.where(bad, firsts, firsts.max() + 1).argmin())
        return names[earliest], int(firsts[earliest])


class NumericalGuard(LoopCallback):
    """Stops the run when a training metric has gone NaN or inf.

    Args:
        every_updates: read the agent's device-side flags this often (each read is one host sync).
        enabled: false turns the guard off.
    """

    def __init__(self, every_updates: int = 10, enabled: bool = True):
        self.every_updates, self.enabled = max(1, every_updates), enabled

    def on_train_batch_end(self, trainer, agent, outputs, batch, batch_idx) -> None:
        if self.enabled and self.clock.counters.updates % self.every_updates == 0:
            self.check(trainer, agent)

    def on_save_checkpoint(self, trainer, agent, checkpoint) -> None:
        # Also before every checkpoint, between two regular checks: no NaN reaches a checkpoint.
        if self.enabled:
            self.check(trainer, agent)

    def check(self, trainer, agent) -> None:
        updates = self.clock.counters.updates
        found = agent.finite_watch.report()
        if found is not None:
            metric, update = found
            raise NonFiniteError(
                f"{metric} became NaN or inf at update {update} (checked at update {updates}, env step "
                f"{self.clock.counters.env_steps}); the run stopped and kept its last good checkpoint: "
                "lower the learning rate or check the inputs, or set guard.enabled false to train on.")


def check_finite_first(trainer, agent) -> None:
    """Before a computation on the weights outside the update (a health check, an evaluation): the guard's
    check, so that non-finite weights stop the run with the guard's sentence, whatever its period, and
    not with the error of an eigendecomposition or a sampler fed NaN."""
    for callback in trainer.callbacks:
        if isinstance(callback, NumericalGuard) and callback.enabled:
            callback.check(trainer, agent)
