"""Replay storage on TorchRL and the sampling views over it."""

from worldmodels.replay.prioritized import PrioritizedTransitionView
from worldmodels.replay.storage import Replay
from worldmodels.replay.views import NotEnoughData, SequenceView, TransitionView

__all__ = ["Replay", "SequenceView", "TransitionView", "PrioritizedTransitionView", "NotEnoughData"]
