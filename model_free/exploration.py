"""The epsilon-greedy schedule of the value-based learner (model_free/rainbow.py), as Dopamine writes it."""

from __future__ import annotations


def linearly_decaying_epsilon(step: int, warmup_steps: int, decay_steps: int, final: float) -> float:
    """Dopamine's schedule: 1.0 during warm-up, then linear to ``final`` over ``decay_steps``."""
    steps_left = decay_steps + warmup_steps - step
    bonus = (1.0 - final) * steps_left / decay_steps
    return final + min(max(bonus, 0.0), 1.0 - final)
