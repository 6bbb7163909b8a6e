"""Diagnostics computed from training tensors (gradients, features), independent of any agent."""

from worldmodels.diagnostics.nd_score import nd_map, nd_score

__all__ = ["nd_map", "nd_score"]
