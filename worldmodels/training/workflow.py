"""The offline workflow of Kumar et al. 2021 ("A Workflow for Offline Model-Free Robotic Reinforcement
Learning", arXiv 2109.10813): at every health check, read the Q-value on held dataset states and the TD
error, and say whether the run is overfitting, underfitting or fine, with the workflow's remedy.

- Overfitting: "when Q-values start to decrease over training; stop training". Here: the dataset-Q
  has fallen at ``falls`` consecutive checks since its peak. The checkpoint of the peak is kept as
  ``checkpoints/early_stop.ckpt`` (written at each new peak), and with ``early_stop`` the run stops.
- Underfitting: "when training losses are high". The workflow gives no number; the rule here reads the TD
  loss against the size of the values being fitted, the mean square of the held states' Monte-Carlo
  returns (``health/mc_return_ms``): averaged over the last ``patience`` checks, a TD loss of at least
  ``underfit_ratio`` (0.25) of it is underfitting. (Against its own start, the first rule tried, a TD
  error that begins near 0 with Q at 0 on sparse rewards reads as "not falling" in every run.)
- Fine otherwise.

The verdict is logged as ``workflow/verdict`` (0 fine, 1 overfitting, 2 underfitting) with
``workflow/dataset_q``, ``workflow/dataset_q_from_peak``, ``workflow/td_vs_returns`` (the rule's
ratio) and ``workflow/td_vs_start`` (the TD loss against the first check's); each change of
verdict is a line of ``<run>/workflow.txt`` and of W&B's ``workflow/verdicts`` table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path


from worldmodels import run_files
from worldmodels.errors import ConfigError
from worldmodels.training.clock import LoopCallback

VERDICTS = {"fine": 0, "overfitting": 1, "underfitting": 2}
REMEDIES = {
    "fine": "nothing to change",
    "overfitting": "the dataset-Q is falling after its peak: stop early and keep the policy of the peak "
                   "(checkpoints/early_stop.ckpt), or regularise the features (model.init_args.vib_beta, dropout)",
    "underfitting": "the TD error stays high: use a more expressive network and the DR3 penalty "
                    "(model.init_args.dr3_coef, about 0.03)",
}


@dataclass
class WorkflowMonitor:
    """The verdict from the sequence of (dataset-Q, TD loss) of the health checks."""

    falls: int = 3
    patience: int = 5
    underfit_ratio: float = 0.25
    peak: float = -math.inf
    peak_at: int = -1  # index of the check of the peak
    falling: int = 0  # consecutive checks below the previous one, since the peak
    previous_q: float = math.nan
    td: list[float] = field(default_factory=list)
    td_vs_returns: list[float] = field(default_factory=list)

    def observe(self, dataset_q: float, td_loss: float, returns_ms: float) -> tuple[str, bool, dict[str, float]]:
        """(verdict, whether this check is a new peak, figures to log)."""
        new_peak = dataset_q > self.peak
        if new_peak:
            self.peak, self.peak_at, self.falling = dataset_q, len(self.td), 0
        elif dataset_q < self.previous_q:
            self.falling += 1
        else:
            self.falling = 0
        self.previous_q = dataset_q
        self.td.append(td_loss)
        self.td_vs_returns.append(td_loss / returns_ms if returns_ms > 0 else math.nan)
        recent = self.td_vs_returns[-self.patience:]
        td_vs_returns = sum(recent) / len(recent)  # NaN while no held episode has a known return
        if self.falling >= self.falls:
            verdict = "overfitting"
        elif len(self.td) >= self.patience and td_vs_returns >= self.underfit_ratio:
            verdict = "underfitting"
        else:
            verdict = "fine"
        figures = {"dataset_q": dataset_q, "dataset_q_from_peak": dataset_q - self.peak,
                   "td_vs_returns": td_vs_returns, "td_vs_start": td_loss / self.td[0] if self.td[0] > 0 else math.nan,
                   "verdict": float(VERDICTS[verdict])}
        return verdict, new_peak, figures

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("peak", "peak_at", "falling", "previous_q", "td", "td_vs_returns")}

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


class Workflow(LoopCallback):
    """Runs the ``WorkflowMonitor`` after each health check of an offline run (``data.dataset``).

    Args:
        falls: consecutive falling checks after the dataset-Q's peak that make a run overfitting.
        patience: checks averaged for the TD error, and checks before underfitting can be called.
        underfit_ratio: a TD error at or above this fraction of the held returns' mean square (mean of
            the last ``patience`` checks) is underfitting.
        early_stop: stop the run when it is overfitting (the peak's checkpoint is kept either way).
        online: run the monitor in online runs too (their replay is not a fixed dataset: its Q moves
            with the data, so the verdicts read differently).
    """

    def __init__(self, falls: int = 3, patience: int = 5, underfit_ratio: float = 0.25, early_stop: bool = False,
                 online: bool = False):
        if falls < 1 or patience < 1 or underfit_ratio <= 0:
            raise ConfigError("workflow.falls and workflow.patience must be at least 1 and workflow.underfit_ratio "
                              "positive.")
        self.monitor = WorkflowMonitor(falls, patience, underfit_ratio)
        self.early_stop, self.online = early_stop, online
        self.verdict = "fine"
        self._seen = -1

    def on_train_batch_end(self, trainer, agent, outputs, batch, batch_idx) -> None:
        health = next((c for c in trainer.callbacks if type(c).__name__ == "Health"), None)
        if health is None or not (self.clock.offline or self.online) or health.last is None:
            return
        updates, metrics = health.last
        if updates == self._seen or not {"q_mean", "td_loss", "mc_return_ms"} <= metrics.keys():
            return  # the value-based learners and SAC report all three
        first, self._seen = self._seen < 0, updates
        verdict, new_peak, figures = self.monitor.observe(metrics["q_mean"], metrics["td_loss"], metrics["mc_return_ms"])
        run = Path(trainer.default_root_dir)
        if new_peak:
            trainer.save_checkpoint(run_files.checkpoints_dir(run) / run_files.EARLY_STOP_CHECKPOINT, weights_only=False)
        for logger in trainer.loggers:
            logger.log_metrics({**{f"workflow/{k}": v for k, v in figures.items()}, "updates": updates,
                                "env_steps": self.clock.counters.env_steps}, step=trainer.global_step)
        if verdict != self.verdict or first:
            self._say(trainer, run, updates, verdict)
        self.verdict = verdict
        if verdict == "overfitting" and self.early_stop:
            print(f"workflow: stopping early at update {updates}; the policy of the dataset-Q's peak is "
                  f"{run_files.checkpoints_dir(run) / run_files.EARLY_STOP_CHECKPOINT}", flush=True)
            trainer.should_stop = True

    def _say(self, trainer, run: Path, updates: int, verdict: str) -> None:
        line = f"update {updates}: {verdict}: {REMEDIES[verdict]}"
        print(f"workflow: {line}", flush=True)
        with open(run / run_files.WORKFLOW_LOG, "a") as file:
            file.write(line + "\n")
        for logger in trainer.loggers:
            if hasattr(logger, "log_text"):
                logger.log_text("workflow/verdicts", columns=["updates", "verdict", "remedy"],
                                data=[[updates, verdict, REMEDIES[verdict]]], step=trainer.global_step)

    def state_dict(self) -> dict:
        return {"monitor": self.monitor.state_dict(), "verdict": self.verdict, "seen": self._seen}

    def load_state_dict(self, state: dict) -> None:
        self.monitor.load_state_dict(state["monitor"])
        self.verdict, self._seen = state["verdict"], state["seen"]
