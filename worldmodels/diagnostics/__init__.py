"""Diagnostics computed from training tensors (gradients, features), independent of any agent."""

from worldmodels.diagnostics.nd_score import nd_map, nd_score
from worldmodels.diagnostics.open_loop import open_loop_video

__all__ = ["nd_map", "nd_score", "open_loop_video"]
