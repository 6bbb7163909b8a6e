"""Run-wide counters, logged with every metric and restored on resume."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Counters:
    env_steps: int = 0  # agent decisions executed by the environments
    frames: int = 0  # env_steps x action repeat (Atari 100k = 100k env steps = 400k frames)
    episodes: int = 0  # games finished while training
    updates: int = 0  # batches given to training_step

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)
