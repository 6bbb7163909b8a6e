"""What an agent needs to know about the environment to build its networks."""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym


@dataclass(frozen=True)
class EnvSpec:
    obs_shape: tuple[int, int, int]  # (k*C, H, W) as the agent sees it, frame stack included
    frame_channels: int  # C of one frame
    num_actions: int | None = None  # discrete action spaces
    action_dim: int | None = None  # continuous actions in [-1, 1]
    action_repeat: int = 1

    @property
    def discrete(self) -> bool:
        return self.num_actions is not None

    @property
    def frame_stack(self) -> int:
        return self.obs_shape[0] // self.frame_channels

    @staticmethod
    def from_spaces(obs: gym.spaces.Box, action: gym.Space, frame_channels: int, action_repeat: int) -> EnvSpec:
        if isinstance(action, gym.spaces.Discrete):
            return EnvSpec(tuple(obs.shape), frame_channels, num_actions=int(action.n), action_repeat=action_repeat)
        return EnvSpec(tuple(obs.shape), frame_channels, action_dim=int(action.shape[0]), action_repeat=action_repeat)
