"""What an environment is, as a config file says it.

Atari presets follow the Atari 100k protocol: frame skip 4 with a max-pool over the last two frames,
no sticky actions, the minimal action set, episodes cut at 27k agent steps, no-op starts. ``dqn`` is
the Dopamine/DrQ protocol (google/dopamine ``labs/atari_100k``): 84x84 gray, stack 4 zero-padded at
episode starts, terminal on life loss, clipped rewards while training, and up to 29 no-op agent steps at
each new game (its runner's ``max_noops=30``). ``world_model`` is DreamerV3's Atari 100k setting (Hafner et al. 2023,
arXiv 2301.04104): 64x64 RGB, no stack, up to 30 no-op frames. Sticky actions (``sticky_actions``,
Machado et al. 2018's 0.25) are a key of their own for protocols that use them, such as the DQN Replay
Dataset's and the offline agents trained on it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from worldmodels.errors import ConfigError

SUITES = ("atari", "dmc", "test")

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
        suite: ``atari`` (ale-py), ``dmc`` (dm_control) or ``test`` (small numpy tasks).
        task: Atari game in snake case (``pong``, ``ms_pacman``), DMC ``domain-task``
            (``walker-walk``), or a test task (``catch``, ``reach``).
        preset: one of ``dqn``, ``world_model``, ``dmc_model_free``, ``dmc_drq`` (``dmc_model_free`` with
            the PlaNet benchmark's action repeat of the task, as the DrQ paper), ``dmc_world_model``.
        image_size: side of the square observation in pixels.
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
        max_episode_steps: agent steps after which an episode is truncated.
        sticky_actions: Atari: the ALE's ``repeat_action_probability``, the chance that each emulator
            frame repeats the previous action instead of the agent's, in [0, 1) (0: none, the Atari 100k
            protocol and every preset; 0.25: Machado et al. 2018, Dopamine's ``sticky_actions=True``).
        camera: DMC camera id; ``None`` picks 2 for quadruped and 0 otherwise.
    """

    suite: str = "atari"
    task: str = "pong"
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

    def resolved(self) -> EnvConfig:
        """A copy with every ``None`` filled from the preset and the suite defaults, validated."""
        if self.suite not in SUITES:
            raise ConfigError(f"env.suite is '{self.suite}'; choose one of {', '.join(SUITES)}.")
        if self.preset is not None and self.preset not in PRESETS:
            raise ConfigError(f"env.preset is '{self.preset}'; choose one of {', '.join(PRESETS)} or leave it empty.")
        defaults = dict(
            image_size=84, grayscale=self.suite == "atari", frame_stack=1, stack_padding="repeat",
            action_repeat={"atari": 4, "dmc": 2, "test": 1}[self.suite],
            terminal_on_life_loss=False, clip_rewards=False, noop_max=30 if self.suite == "atari" else 0,
            noop_unit="frame",
            max_episode_steps={"atari": 27_000, "dmc": None, "test": None}[self.suite],
            sticky_actions=0.0,
            camera=(2 if self.task.startswith("quadruped") else 0) if self.suite == "dmc" else None,
        )
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
        cfg = replace(self, **values)
        if cfg.image_size < 16:
            raise ConfigError(f"env.image_size is {cfg.image_size}; use at least 16 pixels.")
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
