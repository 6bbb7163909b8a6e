"""Counters with every metric row, and the returns of training episodes as they finish."""

from __future__ import annotations

import numpy as np

from worldmodels.training.clock import LoopCallback
from worldmodels.training.log_cadence import logs_this_step


class LogCounters(LoopCallback):
    """Adds ``env_steps``, ``frames``, ``episodes`` and ``updates`` to each batch's metrics (W&B plots
    against ``env_steps``). Games that ended are logged at once, straight to the loggers, so that
    none is dropped between Lightning's logging intervals: ``train/episode_return`` (true score) and
    ``train/episode_length`` (agent steps)."""

    def on_train_batch_end(self, trainer, agent, outputs, batch, batch_idx) -> None:
        clock = self.clock
        counters = {k: float(v) for k, v in clock.counters.state_dict().items()}
        if logs_this_step(trainer):
            agent.log_dict(counters, on_step=True, on_epoch=False)
        if clock.finished_games:
            scores, lengths = zip(*clock.finished_games)
            clock.finished_games.clear()
            metrics = {"train/episode_return": float(np.mean(scores)), "train/episode_length": float(np.mean(lengths)),
                       **counters}
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)
