"""The training loop: where one environment step and the updates it makes owed happen.

Lightning trains on the batches this loop yields (``Experience`` is the data module that owns it).
One turn of ``TrainingLoop.batches``:

    act      ``_actions``: uniform random actions during the warm-up (unless the agent explores its own
             way from the start), else the agent's exploration policy
    step     ``_interact``: one vector step of the environments, counted on the run's clock
             (``RunClock``: env steps summed over the ranks, games finished; several processes
             exchange their counts every ``COUNT_EXCHANGE_EVERY`` vector steps)
    store    ``_store``: the frames go once into the replay
    trigger  ``_tell_callbacks_env_steps``: each ``LoopCallback``'s ``on_env_steps`` (the periodic
             checkpoint), warm-up included
    update   ``_batches_due``: while the updates owed (``RunClock.updates_due``: ratio x env steps after
             the warm-up) exceed those produced, sample a batch from the agent's replay view and yield
             it; Lightning counts it as it hands it to ``training_step`` (``on_before_batch_transfer``),
             then calls ``on_train_batch_end`` of the callbacks: evaluation, health, the numerical guard,
             the offline checkpoint, the logged counters

With environments in processes of their own, or an agent on a GPU (``_interact_overlapped``), the
updates owed run while the environments step: the step is counted when its actions are sent and
stored when it returns, so those updates draw from the replay before that step's frames (one env step
stale; the replay ratio is exact). On a GPU the updates are launched, not waited for, and the host
steps the environments while the device trains; the observations go up and the actions come down
through pinned buffers (``worldmodels.training.transfer``). The run ends when the env-step budget (or
``max_updates``) is spent: the loop sets ``trainer.should_stop``.

Offline (``_offline_batches``) no environment is stepped: batches are drawn until ``max_updates``,
each from a generator seeded by its own index, so a resumed run draws exactly the batches an
uninterrupted one would, whatever Lightning had prefetched.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from lightning_utilities.core.apply_func import apply_to_collection
from tqdm.auto import tqdm

from worldmodels.training.clock import LoopCallback, RunClock
from worldmodels.training.distributed import COUNT_EXCHANGE_EVERY, cpu_group, sum_over_ranks
from worldmodels.training.transfer import DeviceTransfer


class TrainingLoop:
    """The loop's half of ``Experience``: its set-up and checkpoint state are in ``experience.py``.
    Uses the data module's ``clock``, ``envs``, ``replay``, ``_rng``, ``trainer`` and environment
    settings."""

    clock: RunClock
    _transfer: DeviceTransfer | None = None  # made for the agent's device at its first action

    def __iter__(self):
        return self.batches(self.trainer.lightning_module)

    def batches(self, agent):
        """Interact with ``agent``'s exploration policy and yield its training batches until the
        step budget is spent."""
        agent.attach_loop(self.clock)
        view = agent.replay_view()
        if self.offline:
            yield from self._offline_batches(agent, view)
            return
        counters = self.clock.counters
        bar = tqdm(total=self.total_env_steps, initial=counters.env_steps, unit="step", dynamic_ncols=True,
                   disable=not self.progress_bar or self.rank != 0, desc="env steps")
        timer, timer_steps = time.perf_counter(), counters.env_steps
        self._yielded = counters.updates
        if self._obs is None:
            self.begin_episodes()
        try:
            while counters.env_steps < self.total_env_steps and not self.clock.budget_spent(self._yielded):
                if self._overlaps_updates(agent):  # the updates owed run while the environments step
                    taken = yield from self._interact_overlapped(agent, view)
                else:
                    taken = self._interact(agent)
                bar.update(taken)
                self._tell_callbacks_env_steps()
                yield from self._batches_due(agent, view)  # none left after an overlapped step
                if time.perf_counter() - timer > 1.0:
                    sps = (counters.env_steps - timer_steps) / (time.perf_counter() - timer)
                    timer, timer_steps = time.perf_counter(), counters.env_steps
                    recent = self.clock.recent_returns
                    last = f"{recent[-1]:.1f}" if recent else "-"
                    bar.set_postfix_str(f"{sps:.0f} steps/s, updates {counters.updates}, last return {last}")
            if self.trainer is not None:
                self.trainer.should_stop = True  # the step budget ends the run, not Lightning's epoch count
        finally:
            bar.close()

    def _overlaps_updates(self, agent) -> bool:
        """Whether the environments step while the updates owed run: when they step in processes of their
        own, or when the updates run on a GPU (launched, not waited for, while the host steps them)."""
        return self.envs.asynchronous or agent.device.type == "cuda"

    def _batches_due(self, agent, view):
        while self._yielded < self.clock.updates_due(agent) and not self.clock.budget_spent(self._yielded):
            self._yielded += 1
            yield view.sample(self.replay)

    def _offline_batches(self, agent, view):
        self._yielded = self.clock.counters.updates
        bar = tqdm(total=self.max_updates, initial=self._yielded, unit="update", dynamic_ncols=True,
                   disable=not self.progress_bar, desc="updates (offline)")
        try:
            while not self.clock.budget_spent(self._yielded):
                self._yielded += 1
                self.replay.generator.manual_seed(self.seed * 1_000_003 + self._yielded)
                yield view.sample(self.replay)
                bar.update(1)
            self.trainer.should_stop = True
        finally:
            bar.close()

    def _tell_callbacks_env_steps(self) -> None:
        for callback in self.trainer.callbacks if self.trainer is not None else ():
            if isinstance(callback, LoopCallback):
                callback.on_env_steps(self.trainer)

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        # Counted here, when training_step is about to get the batch: Lightning fetches one batch ahead.
        self.clock.count_update()
        return batch

    def transfer_batch_to_device(self, batch, device: torch.device, dataloader_idx: int):
        """On a GPU, each host tensor of the batch goes through page-locked memory with a non-blocking
        copy, so the transfer overlaps the host's next work (torch's caching host allocator keeps the
        pinned blocks, and reuses one only once its copy is done); tensors already there (a replay kept
        on the device) stay. Elsewhere Lightning's plain copy."""
        if device.type != "cuda":
            return super().transfer_batch_to_device(batch, device, dataloader_idx)
        return apply_to_collection(batch, torch.Tensor, lambda t: t if t.device == device
                                   else t.pin_memory().to(device, non_blocking=True))

    def begin_episodes(self) -> None:
        """Reset every environment and store the first frames (at the start and after a resume)."""
        step = self.envs.reset(seed=self.rank_seed + 1000 * self.clock.counters.episodes)
        self._store(step, self.envs.random_actions(self._rng))
        self._agent_state = None

    def _interact(self, agent) -> int:
        """One vector step; returns the number of env steps it executed over every rank (reset steps
        are not ones)."""
        actions = self._actions(agent)
        step = self.envs.step(actions)
        self._store(step, actions)
        taken = self._count_steps(int((~step.first).sum()), agent)
        self._count_games(step)
        return taken

    def _interact_overlapped(self, agent, view):
        """``_interact`` with the environments stepping while updates run (in their own processes, or on
        the host while a GPU trains): send the actions, count the step (known before it completes: the
        environments that do not restart), yield the batches now owed, then store the step."""
        actions = self._actions(agent)
        self.envs.step_async(actions)
        taken = self._count_steps(int(self.envs.stepping.sum()), agent)
        yield from self._batches_due(agent, view)
        step = self.envs.step_wait()
        self._store(step, actions)
        self._count_games(step)
        return taken

    def _actions(self, agent) -> np.ndarray:
        if self.clock.counters.env_steps < self.warmup_steps and agent.random_warmup:
            return self.envs.random_actions(self._rng)
        if self._transfer is None or self._transfer.device != agent.device:
            self._transfer = DeviceTransfer(agent.device)
        with agent.acting():
            if self._agent_state is None:
                self._agent_state = agent.initial_state(self.num_envs)
            obs = self._transfer.to_device(self._obs)
            first = self._transfer.to_device(self._first, "first")
            actions, self._agent_state = agent.act(obs, self._agent_state, first, explore=True)
            return self._transfer.to_host(actions)

    def _count_steps(self, taken: int, agent) -> int:
        """Count this vector step's env steps on the run's clock; returns those counted now. Several
        processes count every rank's, so that all of them owe the same updates and save at the same step,
        but exchange them only every ``COUNT_EXCHANGE_EVERY`` vector steps (equal on every rank), on the
        CPU: until then a rank keeps its own (``uncounted_env_steps``, saved with its checkpoint state)."""
        if self.world > 1:
            self.uncounted_env_steps += taken
            self._vector_steps_unexchanged += 1
            if self._vector_steps_unexchanged < COUNT_EXCHANGE_EVERY:
                return 0
            taken = int(sum_over_ranks(torch.tensor([self.uncounted_env_steps]), group=cpu_group()))
            self.uncounted_env_steps = self._vector_steps_unexchanged = 0
        self.clock.count_env_steps(taken, self.env_config.action_repeat)
        return taken

    def _count_games(self, step) -> None:
        for env, score, length in step.finished_games:
            self.clock.count_game(score, length, step.game_extras.get(env))

    def _store(self, step, actions) -> None:
        self.replay.add(step.obs, actions, step.reward, step.terminated, step.truncated, step.first)
        self._obs, self._first = step.obs, step.first
