"""The wrappers every suite ends in, in one order. A suite makes its environment (an adapter around its
library, or ``gym.make``), then ``finish`` applies, innermost first:

1. ``ObservationKeys``: observations as the agents' images and vectors, routed by cnn_keys / mlp_keys.
2. ``ProcessImages``: image keys to ``image_size`` and to gray, where they are not already.
3. ``ActionRepeat``: unless the suite's adapter repeats actions itself (Atari's frame skip max-pools
   the last two frames; DMC renders once per agent step, not once per physics step).
4. ``TimeLimit`` at ``max_episode_steps`` agent steps, then ``EpisodeExtras`` (outside it, so a truncated
   episode has its extras too).
5. ``RecordEpisodeStatistics``: the true score and length of each episode, in agent steps, before any
   reward clipping or life-loss terminal.
6. The suite's game wrappers (Atari: a lost life ends the learning episode; inside the frame stack, so
   that the stack restarts, and outside the statistics, so that they count whole games).
7. ``ClipReward``, then ``FrameStack`` (stacks are rebuilt the same way by the replay).
8. Box actions in [-1, 1] (``unit_actions``), and the action space seeded for random warm-up actions.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import gymnasium as gym

from worldmodels.envs.config import EnvConfig
from worldmodels.envs.keys import ObservationKeys
from worldmodels.envs.wrappers import (ActionRepeat, ClipReward, EpisodeExtras, FrameStack, ProcessImages,
                                       unit_actions)


def finish(env: gym.Env, cfg: EnvConfig, seed: int, *, repeats_inside: bool = False,
           game_wrappers: Sequence[Callable[[gym.Env], gym.Env]] = (),
           episode_extras: Callable[[dict[str, Any]], dict[str, float]] | None = None) -> gym.Env:
    """``env`` with the shared wrappers of a resolved ``cfg`` (module docstring). ``repeats_inside``: the
    adapter already plays ``cfg.action_repeat`` frames per step. ``episode_extras``: what to add to the
    info of an episode's last step."""
    env = ObservationKeys(env, cfg.cnn_keys, cfg.mlp_keys)
    if ProcessImages.needed(env.observation_space, cfg.image_size, cfg.grayscale):
        env = ProcessImages(env, cfg.image_size, cfg.grayscale)
    if cfg.action_repeat > 1 and not repeats_inside:
        env = ActionRepeat(env, cfg.action_repeat)
    if cfg.max_episode_steps:
        env = gym.wrappers.TimeLimit(env, cfg.max_episode_steps)
    if episode_extras is not None:
        env = EpisodeExtras(env, episode_extras)
    env = gym.wrappers.RecordEpisodeStatistics(env)
    for wrap in game_wrappers:
        env = wrap(env)
    if cfg.clip_rewards:
        env = ClipReward(env)
    if cfg.frame_stack > 1:
        env = FrameStack(env, cfg.frame_stack, cfg.stack_padding)
    env = unit_actions(env)
    env.action_space.seed(seed)
    return env
