"""What an agent needs to know about the environment to build its networks."""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym

from worldmodels.envs.observations import SINGLE_KEY, ObsKey, is_dict, layout_of
from worldmodels.errors import ConfigError


@dataclass(frozen=True)
class EnvSpec:
    """Args:
        obs_shape: (k*C, H, W) of the observation when it is one image (every Atari and DMC-pixels
            preset); ``None`` when it is a vector or a dict of keys (then see ``obs_keys``).
        frame_channels: C of one frame of that image (0 when there is none).
        num_actions: ``Discrete`` action spaces: the number of actions.
        action_dim: ``Box`` actions in [-1, 1]: their dimension.
        action_repeat: environment frames per agent decision.
        obs_keys: every observation key (``worldmodels.envs.observations``); one image key named ``obs``
            of ``obs_shape`` when left empty.
        action_nvec: ``MultiDiscrete`` action spaces: the number of choices of each sub-action.
    """

    obs_shape: tuple[int, int, int] | None
    frame_channels: int
    num_actions: int | None = None
    action_dim: int | None = None
    action_repeat: int = 1
    obs_keys: tuple[ObsKey, ...] = ()
    action_nvec: tuple[int, ...] | None = None

    def __post_init__(self):
        if not self.obs_keys:
            if self.obs_shape is None:
                raise ValueError("an EnvSpec needs obs_shape or obs_keys")
            stack = self.obs_shape[0] // self.frame_channels
            object.__setattr__(self, "obs_keys", (ObsKey(SINGLE_KEY, "image", tuple(self.obs_shape), stack),))

    @property
    def discrete(self) -> bool:
        return self.num_actions is not None

    @property
    def multi_discrete(self) -> bool:
        return self.action_nvec is not None

    @property
    def action_kind(self) -> str:
        """``discrete``, ``multi_discrete`` or ``continuous``, for messages and checks."""
        return "discrete" if self.discrete else "multi_discrete" if self.multi_discrete else "continuous"

    @property
    def frame_stack(self) -> int:
        return self.obs_keys[0].frame_stack

    @property
    def dict_obs(self) -> bool:
        """Observations are dicts of keys (else one tensor)."""
        return is_dict(self.obs_keys)

    @property
    def image_keys(self) -> tuple[ObsKey, ...]:
        return tuple(key for key in self.obs_keys if key.kind == "image")

    @property
    def vector_keys(self) -> tuple[ObsKey, ...]:
        return tuple(key for key in self.obs_keys if key.kind == "vector")

    def require(self, agent: str, actions: tuple[str, ...] = ("discrete", "continuous"),
                kinds: tuple[str, ...] = ("image", "vector")) -> None:
        """One sentence, at build time, when ``agent`` cannot take this environment's actions or keys."""
        if self.action_kind not in actions:
            raise ConfigError(f"{agent} takes {' or '.join(actions)} actions, and this environment's are "
                              f"{self.action_kind}; choose an agent that takes them, or another environment.")
        refused = [key.describe() for key in self.obs_keys if key.kind not in kinds]
        if refused:
            raise ConfigError(f"{agent} reads {' and '.join(kinds)} observations only, and this environment has "
                              f"{'; '.join(refused)}; drop the key with data.env.cnn_keys / mlp_keys, or choose "
                              "another agent.")

    @staticmethod
    def from_spaces(obs: gym.Space, action: gym.Space, frame_stack: int, action_repeat: int) -> EnvSpec:
        """The spec of a (wrapped) environment's spaces; ``frame_stack``: frames per observation."""
        keys = layout_of(obs, frame_stack)
        single_image = not is_dict(keys) and keys[0].kind == "image"
        obs_shape = keys[0].shape if single_image else None
        channels = keys[0].frame_shape[0] if single_image else 0
        common = dict(action_repeat=action_repeat, obs_keys=keys)
        if isinstance(action, gym.spaces.Discrete):
            return EnvSpec(obs_shape, channels, num_actions=int(action.n), **common)
        if isinstance(action, gym.spaces.MultiDiscrete):
            if action.nvec.ndim != 1:
                raise ConfigError(f"the action space is {action}; MultiDiscrete actions must be one-dimensional.")
            return EnvSpec(obs_shape, channels, action_nvec=tuple(int(n) for n in action.nvec), **common)
        if isinstance(action, gym.spaces.Box) and len(action.shape) == 1:
            return EnvSpec(obs_shape, channels, action_dim=int(action.shape[0]), **common)
        raise ConfigError(f"the action space is {action}; the agents take Discrete, MultiDiscrete and "
                          "one-dimensional Box actions.")
