"""Regularizers for pixel encoders: DrQ / DrQ-v2 image augmentation and A-LIX feature mixing.

Agent-agnostic: they act on (B, C, H, W) tensors and hold no agent state.
"""

from worldmodels.regularizers.alix import AdaptiveStrength, LocalSignalMixing
from worldmodels.regularizers.augment import (
    RandomShift,
    drq_atari_augment,
    intensity_factors,
    random_shift,
    sample_shifts,
    take_shifted,
    translate,
)

__all__ = [
    "AdaptiveStrength",
    "LocalSignalMixing",
    "RandomShift",
    "drq_atari_augment",
    "intensity_factors",
    "random_shift",
    "sample_shifts",
    "take_shifted",
    "translate",
]
