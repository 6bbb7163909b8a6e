"""Networks shared by every agent: encoders, heads, MLPs, distributions."""

from worldmodels.nets.cnn import NatureCNN, PixelScale
from worldmodels.nets.heads import DuelingHead

__all__ = ["NatureCNN", "PixelScale", "DuelingHead"]
