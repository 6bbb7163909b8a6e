"""Atari 2600 through ale-py and gymnasium's AtariPreprocessing, with the Atari 100k protocol."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from worldmodels.envs.config import EnvConfig
from worldmodels.envs.finish import finish
from worldmodels.errors import ConfigError


def ale_id(game: str) -> str:
    """``ms_pacman`` -> ``ALE/MsPacman-v5``."""
    return "ALE/" + "".join(part.capitalize() for part in game.split("_")) + "-v5"


class LifeLossTerminal(gym.Wrapper):
    """Ends the learning episode when a life is lost while the game goes on (Dopamine's
    ``terminal_on_life_loss``). gymnasium's AtariPreprocessing option resets the whole game instead,
    which changes the data distribution, hence this wrapper. ``reset`` after a life loss returns the
    current frame without resetting the emulator."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._lives = 0
        self._game_over = True
        self._last_obs = None

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._game_over = terminated or truncated
        lives = self.env.unwrapped.ale.lives()
        if 0 < lives < self._lives:
            terminated = True
        self._lives, self._last_obs = lives, obs
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs):
        if self._game_over:
            obs, info = self.env.reset(**kwargs)
        else:
            obs, info = self._last_obs, {}
        self._game_over = False
        self._lives, self._last_obs = self.env.unwrapped.ale.lives(), obs
        return obs, info


class NoopStarts(gym.Wrapper):
    """Dopamine's Atari 100k no-op starts (google/dopamine, ``labs/atari_100k/atari_100k_runner.py``,
    ``_initialize_episode``, ``max_noops=30``): each new game begins with a uniform number of no-op
    agent steps in [0, max_noops), drawn from the environment's seeded generator, in training and in
    evaluation. The no-op steps are not the agent's: they add no score and count toward no time limit.
    A game that ends or loses a life during them starts again, as Dopamine resets on any terminal.
    gymnasium's ``AtariPreprocessing(noop_max=...)`` counts single frames (1 to noop_max) instead; that is
    the ``frame`` unit, DreamerV3's. Without either, the ALE without sticky actions is deterministic and a
    fixed policy plays the same game every time. ``info["noops"]`` says how many were played."""

    def __init__(self, env: gym.Env, max_noops: int):
        super().__init__(env)
        self.max_noops = max_noops

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        count = int(self.env.unwrapped.np_random.integers(0, self.max_noops))
        ale = self.env.unwrapped.ale
        for _ in range(count):
            lives = ale.lives()
            obs, _, terminated, truncated, _ = self.env.step(0)
            if terminated or truncated or ale.lives() < lives:
                obs, info = self.env.reset()
        return obs, {**info, "noops": count}


def make_atari(cfg: EnvConfig, seed: int) -> gym.Env:
    """The ALE game with AtariPreprocessing (frame skip with a max-pool, resize, gray), no-op starts, then
    the shared wrappers, a lost life ending the learning episode where the config says so."""
    import ale_py

    gym.register_envs(ale_py)
    try:
        env = gym.make(
            ale_id(cfg.task), frameskip=1, repeat_action_probability=cfg.sticky_actions,
            full_action_space=False, max_episode_steps=None,
        )
    except gym.error.Error as error:
        raise ConfigError(
            f"env.task '{cfg.task}' is not an Atari game that ale-py knows ({error}); "
            "use the snake-case game name, e.g. pong, breakout, ms_pacman."
        ) from None
    frame_noops = cfg.noop_max if cfg.noop_unit == "frame" else 0
    env = gym.wrappers.AtariPreprocessing(
        env, noop_max=frame_noops, frame_skip=cfg.action_repeat, screen_size=cfg.image_size,
        grayscale_obs=cfg.grayscale, scale_obs=False, terminal_on_life_loss=False,
    )
    if cfg.noop_unit == "agent_step" and cfg.noop_max > 0:
        env = NoopStarts(env, cfg.noop_max)
    return finish(env, cfg, seed, repeats_inside=True,
                  game_wrappers=[LifeLossTerminal] if cfg.terminal_on_life_loss else [])
