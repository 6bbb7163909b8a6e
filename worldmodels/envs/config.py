"""What an environment is, as a config file says it.

Atari presets follow the Atari 100k protocol: frame skip 4 with a max-pool over the last two frames,
no sticky actions, the minimal action set, episodes cut at 27k agent steps, no-op starts. ``dqn`` is
the Dopamine/DrQ protocol (google/dopamine ``labs/atari_100k``): 84x84 gray, stack 4 zero-padded at
episode starts, terminal on life loss, clipped rewards while training, and up to 29 no-op agent steps at
each new game (its runner's ``max_noops=30``). ``world_model`` is DreamerV3's Atari 100k setting (Hafner et al. 2023,
arXiv 2301.04104): 64x64 RGB, no stack, up to 30 no-op frames. Sticky actions (``sticky_actions``,
Machado et al. 2018's 0.25) are a key of their own for protocols that use them, such as the DQN Replay
Dataset's and the offline agents trained on it.

The ``gym`` suite makes any Gymnasium environment: a registered id (``task``), a class
(``entry_point``) or a factory function (``make``); ``crafter`` is Hafner's Crafter (arXiv 2109.06780).
Every suite ends in the same wrappers (``worldmodels.envs.finish``); the keys an observation has are
said in ``worldmodels.envs.observations`` and made in ``worldmodels.envs.keys``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields, replace
from typing import Any

from worldmodels.errors import ConfigError

SUITES = ("atari", "dmc", "test", "gym", "crafter")
OBSERVATIONS = ("pixels", "states", "both")  # env.observation of the dmc and test suites
CRAFTER_TASKS = ("reward", "no_reward")  # crafter.Env(reward=True) or (reward=False)

PRESETS: dict[str, dict] = {
    "dqn": dict(
        image_size=84, grayscale=True, frame_stack=4, action_repeat=4,
        terminal_on_life_loss=True, clip_rewards=True, noop_max=30, noop_unit="agent_step", max_episode_steps=27_000,
        stack_padding="zero",
    ),
    "world_model": dict(
        image_size=64, grayscale=False, frame_stack=1, action_repeat=4,
        terminal_on_life_loss=False, clip_rewards=False, noop_max=30, max_episode_steps=27_000,
    ),
    # DrQ-v2 / A-LIX pixels: 84x84 RGB, stack 3, action repeat 2.
    "dmc_model_free": dict(image_size=84, grayscale=False, frame_stack=3, action_repeat=2),
    # DrQ (SAC) pixels: as dmc_model_free, with the PlaNet benchmark's action repeat of each task.
    "dmc_drq": dict(image_size=84, grayscale=False, frame_stack=3),
    # DreamerV3 DMC vision: 64x64 RGB, no stack, action repeat 2.
    "dmc_world_model": dict(image_size=64, grayscale=False, frame_stack=1, action_repeat=2),
}


# The PlaNet benchmark's action repeat per task, which the DrQ paper uses (Kostrikov et al.,
# arXiv 2004.13649, appendix; Hafner et al., PlaNet, arXiv 1811.04551).
PLANET_ACTION_REPEAT = {"cartpole-swingup": 8, "finger-spin": 2, "walker-walk": 2, "cheetah-run": 4,
                        "reacher-easy": 4, "ball_in_cup-catch": 4}


@dataclass
class EnvConfig:
    """One environment. Fields left as ``None`` take the preset's value, then the suite default.

    Args:
        suite: ``atari`` (ale-py), ``dmc`` (dm_control), ``test`` (small numpy tasks), ``gym`` (any
            Gymnasium environment) or ``crafter``.
        task: Atari game in snake case (``pong``, ``ms_pacman``, the default), DMC ``domain-task``
            (``walker-walk``), a test task (``catch``, ``reach``), a registered Gymnasium id
            (``CartPole-v1``, ``MinAtar/Breakout-v1``, ``module:Id`` to import ``module`` first), or Crafter's
            ``reward`` (the default) or ``no_reward``.
        preset: one of ``dqn``, ``world_model``, ``dmc_model_free``, ``dmc_drq`` (``dmc_model_free`` with
            the PlaNet benchmark's action repeat of the task, as the DrQ paper), ``dmc_world_model``.
        image_size: side of the square observation in pixels; image keys of another size are resized
            (cv2 INTER_AREA). In the gym suite ``None`` (its default) keeps each image's own size.
        grayscale: one channel instead of RGB.
        frame_stack: number of most recent frames concatenated along the channel axis.
        stack_padding: what fills a stack before an episode's first frame: ``repeat`` (that frame;
            DrQ-v2, DreamerV3) or ``zero`` (Dopamine's Atari agents, the ``dqn`` preset).
        action_repeat: environment frames per agent decision (Atari: frame skip).
        terminal_on_life_loss: Atari: a lost life ends the agent's episode (the game itself
            continues, as in Dopamine); evaluation scores the whole game.
        clip_rewards: training only: rewards pass through ``sign``.
        noop_max: Atari: no-op starts at each new game, up to this many (0: none, for ablations).
        noop_unit: ``frame`` (gymnasium's AtariPreprocessing: 1 to noop_max single frames; DreamerV3)
            or ``agent_step`` (Dopamine's Atari 100k runner: 0 to noop_max - 1 agent steps of
            ``action_repeat`` frames; the ``dqn`` preset).
        max_episode_steps: agent steps after which an episode is truncated (``None``: the environment's
            own limit only).
        sticky_actions: Atari: the ALE's ``repeat_action_probability``, the chance that each emulator
            frame repeats the previous action instead of the agent's, in [0, 1) (0: none, the Atari 100k
            protocol and every preset; 0.25: Machado et al. 2018, Dopamine's ``sticky_actions=True``).
        camera: DMC camera id; ``None`` picks 2 for quadruped and 0 otherwise.
        entry_point: gym suite: ``pkg.module:Class`` of an environment that is not registered, made with
            ``kwargs``.
        make: gym suite: ``pkg.module:function`` that returns a gymnasium Env, called with ``kwargs``.
        kwargs: keyword arguments of the gym environment (``gym.make``, the class or the factory) or of
            ``crafter.Env``; a JSON object on the command line.
        cnn_keys: a regular expression (``re.fullmatch`` on key names): the keys it matches are images,
            read by the CNN. With ``cnn_keys`` or ``mlp_keys`` set, keys neither matches are dropped;
            unset, each key goes where its kind sends it (``worldmodels.envs.keys``).
        mlp_keys: likewise, the keys read by the MLP as float32 vectors (images flattened).
        render_pixels: gym suite: make the environment with ``render_mode="rgb_array"`` and add its
            rendered frame as the image key ``pixels`` (TorchRL's GymEnv(from_pixels=True) names).
        observation: dmc and test suites: ``pixels`` (the default: the rendered frame), ``states`` (the
            task's state as one float32 vector) or ``both`` (keys ``pixels`` and ``observation``).
    """

    suite: str = "atari"
    task: str | None = None
    preset: str | None = None
    image_size: int | None = None
    grayscale: bool | None = None
    frame_stack: int | None = None
    stack_padding: str | None = None
    action_repeat: int | None = None
    terminal_on_life_loss: bool | None = None
    clip_rewards: bool | None = None
    noop_max: int | None = None
    noop_unit: str | None = None
    max_episode_steps: int | None = None
    sticky_actions: float | None = None
    camera: int | None = None
    entry_point: str | None = None
    make: str | None = None
    kwargs: dict[str, Any] | None = None
    cnn_keys: str | None = None
    mlp_keys: str | None = None
    render_pixels: bool | None = None
    observation: str | None = None

    def resolved(self) -> EnvConfig:
        """A copy with every ``None`` filled from the preset and the suite defaults, validated."""
        if self.suite not in SUITES:
            raise ConfigError(f"env.suite is '{self.suite}'; choose one of {', '.join(SUITES)}.")
        if self.preset is not None and self.preset not in PRESETS:
            raise ConfigError(f"env.preset is '{self.preset}'; choose one of {', '.join(PRESETS)} or leave it empty.")
        defaults = _suite_defaults(self.suite, self.task)
        defaults.update(PRESETS.get(self.preset, {}))
        if self.preset == "dmc_drq" and self.action_repeat is None:
            if self.task not in PLANET_ACTION_REPEAT:
                raise ConfigError(f"env.preset dmc_drq knows the PlaNet action repeat of {', '.join(PLANET_ACTION_REPEAT)} "
                                  f"only; set env.action_repeat for '{self.task}'.")
            defaults["action_repeat"] = PLANET_ACTION_REPEAT[self.task]
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for key, value in values.items():
            if value is None and key in defaults:
                values[key] = defaults[key]
        values["kwargs"] = _parsed_kwargs(values["kwargs"])
        cfg = replace(self, **values)
        _check_common(cfg)
        _check_environment(cfg)
        _check_keys(cfg)
        return cfg

    def for_evaluation(self) -> EnvConfig:
        """Evaluation scores whole games with true rewards: no clipping. Life-loss terminals stay:
        they restart the agent's episode (a zeroed frame stack) while the game plays on
        (``run_episodes``), as Dopamine evaluates its Atari agents."""
        return replace(self.resolved(), clip_rewards=False)

    @property
    def frame_channels(self) -> int:
        """Channels of one frame (the replay stores one frame per step, not the stack)."""
        return 1 if self.resolved().grayscale else 3


def _suite_defaults(suite: str, task: str | None) -> dict[str, Any]:
    """The value of each field that neither the config nor its preset sets, for ``suite``."""
    return dict(
        task={"atari": "pong", "crafter": "reward"}.get(suite),
        image_size={"gym": None, "crafter": 64}.get(suite, 84),  # Crafter's own 64x64; gym: each image's own
        grayscale=suite == "atari", frame_stack=1, stack_padding="repeat",
        action_repeat={"atari": 4, "dmc": 2}.get(suite, 1),
        terminal_on_life_loss=False, clip_rewards=False, noop_max=30 if suite == "atari" else 0,
        noop_unit="frame",
        max_episode_steps=27_000 if suite == "atari" else None,
        sticky_actions=0.0,
        camera=(2 if (task or "").startswith("quadruped") else 0) if suite == "dmc" else None,
        render_pixels=False,
        observation="pixels" if suite in ("dmc", "test") else None,
    )


def _parsed_kwargs(kwargs: Any) -> dict[str, Any] | None:
    """``env.kwargs`` as a dict: the command line gives it as a JSON object."""
    if isinstance(kwargs, str):
        try:
            kwargs = json.loads(kwargs)
        except json.JSONDecodeError as error:
            raise ConfigError(f"env.kwargs is '{kwargs}', which is not JSON ({error}); write it as a JSON object, "
                              'e.g. {"max_episode_steps": 100}.') from None
    if kwargs is not None and not isinstance(kwargs, dict):
        raise ConfigError(f"env.kwargs is {kwargs!r}; write it as a JSON object of keyword arguments, e.g. "
                          '{"max_episode_steps": 100}.')
    return kwargs


def _check_common(cfg: EnvConfig) -> None:
    """The checks of the fields every suite has."""
    if cfg.image_size is not None and cfg.image_size < 16:
        raise ConfigError(f"env.image_size is {cfg.image_size}; use at least 16 pixels.")
    if cfg.image_size is None and cfg.suite != "gym":
        raise ConfigError(f"env.image_size is empty; the {cfg.suite} suite needs a size in pixels (at least 16).")
    if cfg.stack_padding not in ("repeat", "zero"):
        raise ConfigError(f"env.stack_padding is '{cfg.stack_padding}'; choose repeat or zero.")
    if cfg.noop_unit not in ("frame", "agent_step") or cfg.noop_max < 0:
        raise ConfigError(f"env.noop_unit is '{cfg.noop_unit}' and env.noop_max {cfg.noop_max}; choose frame or "
                          "agent_step, and a noop_max of at least 0.")
    if cfg.frame_stack < 1 or cfg.action_repeat < 1:
        raise ConfigError("env.frame_stack and env.action_repeat must be at least 1.")
    if cfg.suite != "atari" and cfg.terminal_on_life_loss:
        raise ConfigError("env.terminal_on_life_loss only applies to Atari; set it to false.")
    if not 0.0 <= cfg.sticky_actions < 1.0 or (cfg.suite != "atari" and cfg.sticky_actions > 0):
        raise ConfigError(f"env.sticky_actions is {cfg.sticky_actions}; use a probability in [0, 1) (0.25 for "
                          "Machado et al.'s sticky actions, 0 for none), and only on Atari.")


def _check_environment(cfg: EnvConfig) -> None:
    """Which environment: the fields that name it, and those only some suites take."""
    named = [name for name in ("task", "entry_point", "make") if getattr(cfg, name) is not None]
    if cfg.suite == "gym" and len(named) != 1:
        said = f"env.{' and env.'.join(named)} are set" if named else "env.task, env.entry_point and env.make are empty"
        raise ConfigError(f"{said}; set exactly one of env.task (a registered id such as CartPole-v1), env.entry_point "
                          "('pkg.module:Class') and env.make ('pkg.module:function').")
    if cfg.suite != "gym" and (cfg.entry_point is not None or cfg.make is not None):
        raise ConfigError(f"env.entry_point and env.make name environments of the gym suite, and env.suite is "
                          f"'{cfg.suite}'; set env.suite to gym or leave them empty.")
    if cfg.suite != "gym" and cfg.task is None:
        raise ConfigError(f"env.task is empty; name a task of the {cfg.suite} suite.")
    for name in ("entry_point", "make"):
        value = getattr(cfg, name)
        if value is not None and (value.count(":") != 1 or not all(value.split(":"))):
            raise ConfigError(f"env.{name} is '{value}'; write it as 'pkg.module:{'Class' if name == 'entry_point' else 'function'}'.")
    if cfg.kwargs is not None and cfg.suite not in ("gym", "crafter"):
        raise ConfigError(f"env.kwargs is set for the {cfg.suite} suite; only gym and crafter environments take "
                          "keyword arguments, leave it empty.")
    if cfg.render_pixels and cfg.suite != "gym":
        raise ConfigError(f"env.render_pixels is true for the {cfg.suite} suite; it adds rendered frames to gym "
                          "environments only (dmc and test: set env.observation to both).")
    if cfg.suite in ("dmc", "test") and cfg.observation not in OBSERVATIONS:
        raise ConfigError(f"env.observation is '{cfg.observation}'; choose one of {', '.join(OBSERVATIONS)}.")
    if cfg.suite not in ("dmc", "test") and cfg.observation is not None:
        raise ConfigError(f"env.observation is '{cfg.observation}' for the {cfg.suite} suite; it applies to dmc and "
                          "test tasks only (a gym environment adds pixels with env.render_pixels), leave it empty.")
    if cfg.suite == "crafter" and cfg.task not in CRAFTER_TASKS:
        raise ConfigError(f"env.task is '{cfg.task}' for Crafter; choose {' or '.join(CRAFTER_TASKS)}.")


def _check_keys(cfg: EnvConfig) -> None:
    """``cnn_keys`` and ``mlp_keys`` must be regular expressions."""
    for name in ("cnn_keys", "mlp_keys"):
        pattern = getattr(cfg, name)
        if pattern is None:
            continue
        try:
            re.compile(pattern)
        except re.error as error:
            raise ConfigError(f"env.{name} is '{pattern}', which is not a regular expression ({error}); write one "
                              "that re.fullmatch can match against key names, e.g. 'pixels|image'.") from None
