"""Networks shared by every agent: encoders, noisy layers, distributional supports and losses."""

from worldmodels.nets.c51 import categorical_projection, make_support
from worldmodels.nets.cnn import NatureCNN, PixelScale, SamePad2d
from worldmodels.nets.drq_encoder import ALIXAtariEncoder
from worldmodels.nets.noisy import NoisyLinear, noise_forced
from worldmodels.nets.quantile import quantile_huber_loss, quantile_midpoints

__all__ = ["NatureCNN", "PixelScale", "SamePad2d", "ALIXAtariEncoder", "NoisyLinear", "noise_forced",
           "categorical_projection", "make_support", "quantile_huber_loss", "quantile_midpoints"]
