"""Networks shared by every agent: encoders, noisy layers, distributional supports."""

from worldmodels.nets.c51 import categorical_projection, make_support
from worldmodels.nets.cnn import NatureCNN, PixelScale, SamePad2d
from worldmodels.nets.drq_encoder import ALIXAtariEncoder
from worldmodels.nets.noisy import NoisyLinear, noise_forced

__all__ = ["NatureCNN", "PixelScale", "SamePad2d", "ALIXAtariEncoder", "NoisyLinear", "noise_forced",
           "categorical_projection", "make_support"]
