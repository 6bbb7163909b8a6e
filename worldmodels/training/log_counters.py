"""Counters with every metric row, and the returns of training episodes as they finish."""

from __future__ import annotations

import numpy as np

from worldmodels.training.clock import LoopCallback
from worldmodels.training.log_cadence import logs_this_step


class LogCounters(LoopCallback):
    """Adds ``env_steps``, ``frames``, ``episodes`` and ``updates`` to each batch's metrics (W&B plots
    against ``env_steps``). Games that ended are logged at once, straight to the loggers, so that
    none is dropped between Lightning's logging intervals: ``train/episode_return`` (true score) and
    ``train/episode_length`` (agent steps), and the mean over those games of what each reported beside
    its score (``train/<name>``: e.g. ``train/achievement_collect_wood``, the fraction of Crafter games
    that unlocked it)."""

    def on_train_batch_end(self, trainer, agent, outputs, batch, batch_idx) -> None:
        clock = self.clock
        counters = {k: float(v) for k, v in clock.counters.state_dict().items()}
        if logs_this_step(trainer):
            agent.log_dict(counters, on_step=True, on_epoch=False)
        if clock.finished_games:
            scores, lengths = zip(*clock.finished_games)
            clock.finished_games.clear()
            metrics = {"train/episode_return": float(np.mean(scores)), "train/episode_length": float(np.mean(lengths)),
                       **mean_extras(clock.game_extras), **counters}
            clock.game_extras.clear()
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)


def mean_extras(extras: list[dict[str, float]]) -> dict[str, float]:
    """``train/<name>``: the mean of each reported value over the games that reported it."""
    names = sorted({name for game in extras for name in game})
    return {f"train/{name}": float(np.mean([game[name] for game in extras if name in game])) for name in names}
