"""The interaction loop's update schedule: the updates owed are floor(ratio x (env steps - warm-up)),
at fractional ratios and with several environments, by hand."""

import numpy as np

from conftest import ConstantPolicy
from worldmodels.envs import EnvConfig
from worldmodels.training import Experience


class ScriptedAgent(ConstantPolicy):
    """Just enough of an agent for ``Experience.batches``: always action 0, and a view whose samples
    record the env steps at which they were drawn."""

    random_warmup = True

    def __init__(self, updates_per_env_step: float):
        super().__init__(action=0)
        self.updates_per_env_step = updates_per_env_step

    def attach_loop(self, counters, warmup_steps):
        self.counters = counters

    def replay_view(self):
        agent = self

        class View:
            def sample(self, replay):
                return agent.counters.env_steps

        return View()


def drawn_at(ratio: float, num_envs: int, warmup: int, total: int) -> tuple[list[int], int]:
    """The env steps at which each batch was drawn, and the env steps taken in all."""
    data = Experience(EnvConfig(suite="test", task="catch", image_size=16, grayscale=True, frame_stack=1),
                      num_envs=num_envs, total_env_steps=total, warmup_steps=warmup, replay_capacity=1000,
                      progress_bar=False)
    data.setup("fit")
    steps = list(data.batches(ScriptedAgent(ratio)))
    return steps, data.counters.env_steps


def test_half_an_update_per_env_step_draws_one_batch_every_second_step_after_the_warmup():
    steps, taken = drawn_at(ratio=0.5, num_envs=1, warmup=10, total=30)
    assert taken == 30
    assert steps == [12, 14, 16, 18, 20, 22, 24, 26, 28, 30]  # floor(0.5 x (steps - 10)) reaches k at 10 + 2k


def test_with_two_environments_the_updates_owed_follow_the_env_steps_of_both():
    steps, taken = drawn_at(ratio=0.25, num_envs=2, warmup=8, total=40)
    # A vector step takes up to 2 env steps (fewer when an environment is resetting), so the draws
    # come at the first step count where floor(0.25 x (steps - 8)) has grown, several at once if needed.
    assert len(steps) == int(0.25 * (taken - 8)) and taken >= 40
    assert all(int(0.25 * (s - 8)) >= k + 1 for k, s in enumerate(steps))
    assert np.all(np.diff(steps) >= 0)


def test_the_updates_owed_are_exact_at_ratios_that_are_not_binary_fractions():
    steps, taken = drawn_at(ratio=0.1, num_envs=1, warmup=0, total=100)
    assert len(steps) == 10 and steps == [10 * k for k in range(1, 11)]  # 0.1 x 10k is k, not k - epsilon
