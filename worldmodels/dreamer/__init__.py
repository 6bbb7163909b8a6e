"""DreamerV3: RSSM world model and imagined actor-critic, on the shared pipeline."""

from worldmodels.dreamer.agent import DreamerV3

__all__ = ["DreamerV3"]
