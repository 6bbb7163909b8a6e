"""The run's clock: its counters, the progress that checkpoints and evaluations trigger on, and the
updates owed; one object, made by the loop (``worldmodels.training.loop``), read by the agent (its
schedules) and by the loop's callbacks (``LoopCallback``), which the loop hands it to.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Protocol

import lightning as L

from worldmodels.training.counters import Counters


class RunClock:
    """Args:
        total_env_steps: env steps to train for (every rank's together).
        warmup_steps: env steps before the first update.
        max_updates: updates to stop after (the budget of an offline run); None: no limit.
        offline: the run trains on a dataset: its progress is the update count.
        world: processes of the run; each makes its share of the updates owed.
    """

    def __init__(self, total_env_steps: int = 0, warmup_steps: int = 0, max_updates: int | None = None,
                 offline: bool = False, world: int = 1):
        self.total_env_steps, self.warmup_steps, self.max_updates = total_env_steps, warmup_steps, max_updates
        self.offline, self.world = offline, world
        self.counters = Counters()  # saved in checkpoints (the data module's "counters")
        self.finished_games: list[tuple[float, int]] = []  # (score, length) since the loggers last read them
        self.game_extras: list[dict[str, float]] = []  # what those games reported beside their score (Crafter's
        # achievements), for those that reported any
        self.recent_returns: deque[float] = deque(maxlen=10)  # the progress bar's, saved in checkpoints
        self.last_eval_return: float | None = None  # the latest evaluation's mean return

    @property
    def progress(self) -> int:
        """The run's clock, on which checkpoints and evaluations trigger: env steps, or updates offline."""
        return self.counters.updates if self.offline else self.counters.env_steps

    @property
    def progress_key(self) -> str:
        return "updates" if self.offline else "env_steps"

    def updates_due(self, agent) -> int:
        """Updates owed after the env steps taken: ratio x (steps - warm-up). A function of the counters,
        not a running credit, so that a run stopped anywhere (Ctrl-C inside an env step, kill -9 while
        Lightning holds a fetched batch it has not trained on) owes exactly the same after a resume.
        Several processes share the run's updates: each makes its part, all of them the same number.
        An agent with ``warmup_burst`` (SAC+AE) is owed ratio x steps once the warm-up is over: the
        warm-up's share at once when it ends, then the ratio per step."""
        steps, warmup = self.counters.env_steps, self.warmup_steps
        counted = steps if agent.warmup_burst and steps >= warmup else max(0, steps - warmup)
        return int(agent.updates_per_env_step * counted / self.world + 1e-9)

    def budget_spent(self, updates: int) -> bool:
        """Whether ``updates`` reach ``max_updates``."""
        return self.max_updates is not None and updates >= self.max_updates

    def count_env_steps(self, taken: int, action_repeat: int) -> None:
        self.counters.env_steps += taken
        self.counters.frames += taken * action_repeat

    def count_game(self, score: float, length: int, extras: dict[str, float] | None = None) -> None:
        self.counters.episodes += 1
        self.finished_games.append((score, length))
        if extras:
            self.game_extras.append(extras)
        self.recent_returns.append(score)

    def count_update(self) -> None:
        self.counters.updates += 1


class Loop(Protocol):
    """What the training loop hands its callbacks (``LoopCallback.attach``): the run's clock, the replay
    it fills (the dataset, offline), and the settings its evaluations play with."""

    clock: RunClock
    replay: Any  # worldmodels.replay.Replay, or None before the loop is set up
    env_config: Any  # worldmodels.envs.EnvConfig
    seed: int
    rank: int
    world: int
    progress_bar: bool


class LoopCallback(L.Callback):
    """A callback of the training loop: it reads the run's clock (``self.clock``) and the loop
    (``self.loop``), both handed over by the loop when the run is set up, and may act after each vector
    step of the environments (``on_env_steps``), where no training batch ends (the warm-up)."""

    loop: Loop | None = None

    @property
    def clock(self) -> RunClock | None:
        """The run's clock: the loop's."""
        return None if self.loop is None else self.loop.clock

    def attach(self, loop: Loop) -> None:
        """Called by the loop as it sets the run up, before any step or restore."""
        self.loop = loop

    def on_env_steps(self, trainer: L.Trainer) -> None:
        """After every vector step of the environments, warm-up included, before the updates it makes
        owed. What is saved here is consistent: the updates owed after a resume follow from the
        counters (``RunClock.updates_due``)."""

    def on_run_restored(self, trainer: L.Trainer) -> None:
        """Once every restore is done and before the first env step (Lightning asks for the loader then)."""
