"""Environments behind one interface: observations of uint8 (C, H, W) images and float32 (D,) vectors,
one array or a dict of keys (``worldmodels.envs.observations``; frame stacks concatenated along C and D),
``Discrete``, ``MultiDiscrete`` or ``Box`` actions in [-1, 1], terminated and truncated kept apart, episode
statistics (true score and length) in ``info["episode"]`` when a game ends, and a suite's extra episode
figures (Crafter's achievements) in ``info["episode_extras"]``.

Suites: ``atari``, ``dmc``, ``test`` (small numpy tasks), ``gym`` (any Gymnasium environment) and
``crafter``; each makes its environment and ends in the same wrappers (``worldmodels.envs.finish``)."""

from __future__ import annotations

from functools import partial

import gymnasium as gym

from worldmodels.envs.config import EnvConfig, PRESETS
from worldmodels.envs.vector import Step, SubprocessVectorEnv, VectorEnv
from worldmodels.errors import ConfigError

__all__ = ["EnvConfig", "PRESETS", "Step", "SubprocessVectorEnv", "VectorEnv", "make_env", "make_vector_env"]


def make_env(cfg: EnvConfig, seed: int = 0, training: bool = True) -> gym.Env:
    """One environment; ``training=False`` gives the evaluation variant (true rewards, whole games)."""
    cfg = cfg.resolved() if training else cfg.for_evaluation()
    if cfg.suite == "atari":
        from worldmodels.envs.atari import make_atari

        return make_atari(cfg, seed)
    if cfg.suite == "dmc":
        from worldmodels.envs.dmc import make_dmc

        return make_dmc(cfg, seed)
    if cfg.suite == "gym":
        from worldmodels.envs.gym_suite import make_gym

        return make_gym(cfg, seed)
    if cfg.suite == "crafter":
        from worldmodels.envs.crafter_suite import make_crafter

        return make_crafter(cfg, seed)
    from worldmodels.envs.toy import make_toy

    return make_toy(cfg, seed)


def make_vector_env(cfg: EnvConfig, num_envs: int, seed: int = 0, training: bool = True,
                    processes: bool = False) -> VectorEnv:
    """``num_envs`` copies stepped together. The step after an episode's last one returns the new
    episode's first frame (its action is ignored), so every vector step yields exactly one frame per
    environment, which the replay stores once. ``processes``: each copy in a process of its own."""
    if num_envs < 1:
        raise ConfigError(f"num_envs is {num_envs}; it must be at least 1.")
    makers = [partial(make_env, cfg, seed + i, training) for i in range(num_envs)]
    return SubprocessVectorEnv(makers) if processes else VectorEnv(makers)
