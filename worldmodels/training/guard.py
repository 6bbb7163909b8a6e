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
    """Per metric: the first update at which it went non-finite, kept on the device.

    Metrics are observed together: an update's tensors of one device are stacked (a larger tensor as
    sum(0 x value), which is NaN exactly where one of its entries is not finite) and checked in one
    ``isfinite``, into one int64 vector per set of names (an update whose metrics are logged observes
    more names than one whose are not): a handful of device ops however many metrics, and one copy to
    the host per report."""

    def __init__(self):
        # (names, ...) -> int64 vector, one entry per name, -1 while finite
        self.first_bad_by_names: dict[tuple[str, ...], torch.Tensor] = {}

    @property
    def first_bad(self) -> dict[str, torch.Tensor]:
        """Each watched metric's first bad update (0-dim, -1 while finite), over every set it was seen in."""
        out = {}
        for names, firsts in self.first_bad_by_names.items():
            for name, first in zip(names, firsts):
                out[name] = first if name not in out else _earliest(out[name], first)
        return out

    def observe(self, metrics: dict, update: int) -> None:
        groups: dict[torch.device, list[tuple[str, torch.Tensor]]] = {}
        for name, value in metrics.items():
            if not torch.is_tensor(value) or not value.is_floating_point():
                continue
            value = value.detach()
            if value.dim():
                value = (value * 0).sum()  # 0, or NaN where an entry is NaN or inf (no overflow to inf)
            if value.dtype != torch.float32:
                value = value.float()  # inf and NaN stay what they are
            groups.setdefault(value.device, []).append((name, value))
        for device, items in groups.items():
            names = tuple(name for name, _ in items)
            bad = ~torch.isfinite(torch.stack([value for _, value in items]))
            firsts = self.first_bad_by_names.get(names)
            if firsts is None:
                firsts = self.first_bad_by_names[names] = torch.full((len(names),), -1, dtype=torch.long, device=device)
            firsts.masked_fill_(bad & (firsts < 0), update)

    def report(self) -> tuple[str, int] | None:
        """(metric, first bad update) of the earliest metric to go non-finite, or None (one host sync)."""
        if not self.first_bad_by_names:
            return None
        names = [name for group in self.first_bad_by_names for name in group]
        groups = list(self.first_bad_by_names.values())
        firsts = torch.cat([f.to(groups[0].device) for f in groups]).to("cpu")  # one copy (one device in practice)
        bad = firsts >= 0
        if not bad.any():
            return None
        earliest = int(torch.where(bad, firsts, firsts.max() + 1).argmin())
        return names[earliest], int(firsts[earliest])


def _earliest(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The earlier of two first-bad updates (-1: never)."""
    return torch.where((a < 0) | ((b >= 0) & (b < a)), b, a)


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
