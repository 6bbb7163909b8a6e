"""Regularizers for pixel encoders and critics: DrQ / DrQ-v2 image augmentation, A-LIX feature mixing,
DR3, CQL, a variational information bottleneck.

Agent-agnostic: they act on (B, C, H, W) tensors and hold no agent state.
"""

from worldmodels.regularizers.alix import AdaptiveStrength, LocalSignalMixing, gradient_recording_off
from worldmodels.regularizers.cql import cql_continuous_penalty, cql_lagrange_terms, cql_penalty
from worldmodels.regularizers.dr3 import dr3_penalty
from worldmodels.regularizers.terms import LossTerms
from worldmodels.regularizers.vib import GaussianBottleneck, gaussian_kl_to_standard
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
    "GaussianBottleneck",
    "LocalSignalMixing",
    "LossTerms",
    "RandomShift",
    "cql_continuous_penalty",
    "cql_lagrange_terms",
    "cql_penalty",
    "dr3_penalty",
    "drq_atari_augment",
    "gaussian_kl_to_standard",
    "gradient_recording_off",
    "intensity_factors",
    "random_shift",
    "sample_shifts",
    "take_shifted",
    "translate",
]
