"""Regularizers for pixel encoders and critics: DrQ / DrQ-v2 image augmentation, A-LIX feature mixing,
DR3, CQL, a variational information bottleneck, and ``LossTerms``, which adds them to a loss.

Agent-agnostic: they act on tensors and know nothing of the agent that uses them. Most are pure
functions; the modules hold their own state: A-LIX's ``AdaptiveStrength`` its strength S and S's Adam,
``LocalSignalMixing`` the gradient it last recorded, ``GaussianBottleneck`` its two linear heads.
"""

from worldmodels.regularizers.local_signal_mixing import (AdaptiveStrength, LocalSignalMixing, alix_dual_step,
                                                         gradient_recording_off, tuned_layer)
from worldmodels.regularizers.cql import cql_continuous_penalty, cql_lagrange_terms, cql_penalty
from worldmodels.regularizers.dr3 import dr3_penalty
from worldmodels.regularizers.terms import LossTerms
from worldmodels.regularizers.vib import GaussianBottleneck, gaussian_kl_to_standard
from worldmodels.regularizers.augment import (
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
    "alix_dual_step",
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
    "tuned_layer",
]
