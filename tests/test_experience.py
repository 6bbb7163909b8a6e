"""The interaction loop's update schedule: the updates owed are floor(ratio x (env steps - warm-up)),
at fractional ratios and with several environments, by hand."""

import numpy as np
import torch

from conftest import ConstantPolicy
from worldmodels.envs import EnvConfig
from worldmodels.training import Experience
from worldmodels.training.loop import TrainingLoop


class ScriptedAgent(ConstantPolicy):
    """Just enough of an agent for ``Experience.batches``: always action 0, and a view whose samples
    record the env steps at which they were drawn."""

    random_warmup = True

    def __init__(self, updates_per_env_step: float, warmup_burst: bool = False):
        super().__init__(action=0)
        self.updates_per_env_step, self.warmup_burst = updates_per_env_step, warmup_burst

    def attach_loop(self, clock):
        self.clock = clock

    def replay_view(self):
        agent = self

        class View:
            def sample(self, replay):
                return agent.clock.counters.env_steps

        return View()


class ReplayTimeAgent(ScriptedAgent):
    """Its samples record (env steps counted, rows stored per environment) when each batch was drawn."""

    def replay_view(self):
        agent = self

        class View:
            def sample(self, replay):
                return agent.clock.counters.env_steps, replay.time

        return View()


def drawn_at(ratio: float, num_envs: int, warmup: int, total: int, env_processes: bool | None = None,
             data: list | None = None, warmup_burst: bool = False, agent: ScriptedAgent | None = None
             ) -> tuple[list[int], int]:
    """The env steps at which each batch was drawn, and the env steps taken in all (the data module is
    appended to ``data`` when given)."""
    experience = Experience(EnvConfig(suite="test", task="catch", image_size=16, grayscale=True, frame_stack=1),
                            num_envs=num_envs, total_env_steps=total, warmup_steps=warmup, replay_capacity=1000,
                            progress_bar=False, env_processes=env_processes)
    experience.setup("fit")
    steps = list(experience.batches(agent or ScriptedAgent(ratio, warmup_burst)))
    experience.teardown("fit")
    if data is not None:
        data.append(experience)
    return steps, experience.counters.env_steps


def test_half_an_update_per_env_step_draws_one_batch_every_second_step_after_the_warmup():
    steps, taken = drawn_at(ratio=0.5, num_envs=1, warmup=10, total=30)
    assert taken == 30
    assert steps == [12, 14, 16, 18, 20, 22, 24, 26, 28, 30]  # floor(0.5 x (steps - 10)) reaches k at 10 + 2k


def test_the_warmup_burst_owes_the_warmups_steps_at_its_end_then_one_update_per_step():
    # SAC+AE's code (pytorch_sac_ae train.py lines 223-226, commit 7fa560e): at step init_steps it makes
    # init_steps updates, then one per step. Warm-up 10: nothing before env step 10, ten batches drawn at
    # step 10, then one at each step; without the burst, one per step from step 11 (by hand).
    steps, taken = drawn_at(ratio=1.0, num_envs=1, warmup=10, total=15, warmup_burst=True)
    assert taken == 15 and steps == [10] * 10 + [11, 12, 13, 14, 15]
    plain, _ = drawn_at(ratio=1.0, num_envs=1, warmup=10, total=15)
    assert plain == [11, 12, 13, 14, 15]
    half, _ = drawn_at(ratio=0.5, num_envs=1, warmup=10, total=16, warmup_burst=True)  # 0.5 x 10 at once
    assert half == [10] * 5 + [12, 14, 16]


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


def test_environments_in_their_own_processes_owe_the_same_updates_and_store_the_same_steps():
    # With processes the batches owed are drawn while the vector step is in flight, from the replay
    # before it: the same schedule (the step is counted when sent), one step staler replay.
    together, apart = [], []
    assert drawn_at(0.25, 2, 8, 40, env_processes=False, data=together) == \
        drawn_at(0.25, 2, 8, 40, env_processes=True, data=apart)
    assert drawn_at(0.5, 1, 10, 30, env_processes=True) == drawn_at(0.5, 1, 10, 30, env_processes=False)
    for replay in (together[0].replay, apart[0].replay):
        replay.flush()  # rows are staged until a sample or a save writes them
    t = torch.arange(together[0].replay.oldest, together[0].replay.time)
    assert together[0].replay.time == apart[0].replay.time
    for env in range(2):
        column = torch.full_like(t, env)
        one, other = (d.replay.steps(t, column) for d in (together[0], apart[0]))
        assert all(torch.equal(one[k], other[k]) for k in one.keys())
        assert torch.equal(together[0].replay.frames(t, column), apart[0].replay.frames(t, column))


def test_updates_on_a_gpu_run_while_the_environments_step_in_process_as_with_processes(monkeypatch):
    # On a GPU the loop launches the updates owed and steps the environments meanwhile, in this process:
    # the batches are drawn at the same counts and from the same replay rows as with environments in
    # processes of their own (one vector step staler than without overlap).
    with_processes, _ = drawn_at(0.5, 2, 10, 30, env_processes=True, agent=ReplayTimeAgent(0.5))
    plain, _ = drawn_at(0.5, 2, 10, 30, env_processes=False, agent=ReplayTimeAgent(0.5))
    monkeypatch.setattr(TrainingLoop, "_overlaps_updates", lambda self, agent: True)  # as on a GPU
    overlapped, _ = drawn_at(0.5, 2, 10, 30, env_processes=False, agent=ReplayTimeAgent(0.5))
    assert overlapped == with_processes
    assert [s for s, _ in overlapped] == [s for s, _ in plain]  # the same schedule
    assert [t + 1 for _, t in overlapped] == [t for _, t in plain]  # each drawn before the step's rows were stored
