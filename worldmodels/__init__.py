"""One training pipeline for reinforcement learning from pixels.

The core (environments, replay, the Lightning loop, networks) lives here; agents plug in
through :class:`worldmodels.training.Agent` and are chosen by a config's ``class_path``.
"""

__version__ = "0.1.0"

