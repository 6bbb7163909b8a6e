"""Aggregate scores over tasks and runs as rliable defines them (Agarwal et al. 2021, "Deep RL at the
edge of the statistical precipice"), with numpy only.

Scores are given per task: one array of run (seed) scores for each task, so that tasks may have
different numbers of runs; rliable's (runs x tasks) matrix ``m`` is ``list(m.T)``, and a 2-D array is
read that way. Every statistic also accepts arrays with leading batch axes (``(reps, runs)`` per task),
which lets the bootstrap evaluate all its resamples in one vectorised call.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import numpy as np

TaskScores = Sequence[np.ndarray]  # one array per task, runs on the last axis


def per_task(scores) -> list[np.ndarray]:
    """Scores as one float array per task; a 2-D array is rliable's (runs x tasks) matrix. Every
    statistic reads its input through this, so both forms mean the same thing everywhere."""
    if isinstance(scores, np.ndarray) and scores.ndim == 2:
        scores = list(scores.T)
    tasks = [np.atleast_1d(np.asarray(task, dtype=float)) for task in scores]
    if not tasks or any(task.shape[-1] == 0 for task in tasks):
        raise ValueError("aggregate statistics need at least one task with at least one run.")
    return tasks


def task_means(scores: TaskScores) -> np.ndarray:
    """Each task's mean over its runs, tasks on the last axis."""
    return np.stack([task.mean(axis=-1) for task in per_task(scores)], axis=-1)


def aggregate_mean(scores: TaskScores) -> np.ndarray:
    """Mean over tasks of the per-task mean over runs (rliable's ``aggregate_mean``)."""
    return task_means(scores).mean(axis=-1)


def aggregate_median(scores: TaskScores) -> np.ndarray:
    """Median over tasks of the per-task mean over runs (rliable's ``aggregate_median``)."""
    return np.median(task_means(scores), axis=-1)


def interquartile_mean(scores: TaskScores) -> np.ndarray:
    """Mean of the middle half of all run scores pooled over tasks: the 25% trimmed mean that rliable's
    ``aggregate_iqm`` takes with ``scipy.stats.trim_mean(scores, 0.25, axis=None)``, which drops
    ``int(0.25 n)`` scores at each end of the n sorted ones."""
    pooled = np.sort(np.concatenate(per_task(scores), axis=-1), axis=-1)
    n = pooled.shape[-1]
    cut = int(0.25 * n)
    return pooled[..., cut:n - cut].mean(axis=-1)


AGGREGATES: dict[str, Callable[[TaskScores], np.ndarray]] = {
    "mean": aggregate_mean, "median": aggregate_median, "IQM": interquartile_mean,
}


class Interval(NamedTuple):
    estimate: float  # the statistic on the scores themselves
    low: float
    high: float


def stratified_bootstrap_interval(scores, statistic: Callable[[TaskScores], np.ndarray], reps: int = 50_000,
                                  confidence: float = 0.95, seed: int = 0) -> Interval:
    """The statistic and its percentile confidence interval under the stratified bootstrap: each
    resample draws, within every task independently, as many runs as the task has, with replacement
    (rliable's ``StratifiedBootstrap`` with ``method='percentile'``; 50 000 resamples is its default).
    Tasks are never resampled, so the interval speaks about seeds, not about the choice of games."""
    tasks = per_task(scores)
    rng = np.random.default_rng(seed)
    resampled = [task[rng.integers(0, task.shape[-1], size=(reps, task.shape[-1]))] for task in tasks]
    values = statistic(resampled)
    low, high = np.percentile(values, [50 * (1 - confidence), 50 * (1 + confidence)])
    return Interval(float(statistic(tasks)), float(low), float(high))
