"""The Lightning machinery every agent shares: interaction at a replay ratio (the loop:
``worldmodels.training.loop``), evaluation, checkpoints with the replay, the run's clock."""

from worldmodels.training.agent import Agent
from worldmodels.training.checkpoints import AtomicCheckpointIO, PeriodicCheckpoint
from worldmodels.training.clock import LoopCallback, RunClock
from worldmodels.training.counters import Counters
from worldmodels.training.evaluation import Evaluation, run_episodes
from worldmodels.training.experience import Experience
from worldmodels.training.guard import NumericalGuard
from worldmodels.training.health import Health
from worldmodels.training.log_counters import LogCounters
from worldmodels.training.spec import EnvSpec
from worldmodels.training.workflow import Workflow

__all__ = ["Agent", "AtomicCheckpointIO", "Counters", "EnvSpec", "Evaluation", "Experience", "Health", "LogCounters",
           "LoopCallback", "NumericalGuard", "PeriodicCheckpoint", "RunClock", "Workflow", "run_episodes"]
