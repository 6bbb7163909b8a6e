"""Diagnostics computed from training tensors (gradients, features), independent of any agent."""

from worldmodels.diagnostics.signals import (augmentation_gap, discounted_returns, effective_horizon, feature_dot,
                                            overestimation, srank)
from worldmodels.diagnostics.nd_score import nd_map, nd_score
from worldmodels.diagnostics.open_loop import open_loop_video

__all__ = ["augmentation_gap", "discounted_returns", "effective_horizon", "feature_dot", "nd_map", "nd_score",
           "open_loop_video", "overestimation", "srank"]
