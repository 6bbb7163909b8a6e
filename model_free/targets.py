"""TD targets and exploration schedules shared by the value-based agents."""

from __future__ import annotations

import torch


def double_q_target(next_q_online: torch.Tensor, next_q_target: torch.Tensor, reward: torch.Tensor,
                    discount: torch.Tensor) -> torch.Tensor:
    """reward + discount * Q_target(s', argmax_a Q_online(s', a)) (van Hasselt et al., 2016).
    ``discount`` already holds gamma^n and is 0 past a terminal (see TransitionView)."""
    best = next_q_online.argmax(dim=-1, keepdim=True)
    return reward + discount * next_q_target.gather(-1, best).squeeze(-1)


def linearly_decaying_epsilon(step: int, warmup_steps: int, decay_steps: int, final: float) -> float:
    """Dopamine's schedule: 1.0 during warm-up, then linear to ``final`` over ``decay_steps``."""
    steps_left = decay_steps + warmup_steps - step
    bonus = (1.0 - final) * steps_left / decay_steps
    return final + min(max(bonus, 0.0), 1.0 - final)
