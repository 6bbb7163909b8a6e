"""Environment interaction at a replay ratio, as the Lightning data source every agent trains from.

Each batch handed to ``training_step`` is produced here: step the environments with the agent's
exploration policy (uniform random actions during warm-up), store the frames once in the replay,
and whenever the updates due (ratio x env steps after the warm-up) exceed those made, sample a
batch from the agent's replay view. The run ends when the environment step budget is spent.

Offline (``dataset``: another run's directory), the replay is that run's and stays as it is: no
environment step is taken for training, batches are drawn until ``max_updates``, and the run's clock
(``progress``: checkpoints, evaluations) is the update count. Evaluation games still play the
environment. Each offline batch is drawn from a generator seeded by its own index, so a resumed run
draws exactly the batches an uninterrupted one would, whatever Lightning had prefetched.

On several processes (DDP, ``worldmodels.training.distributed``) each rank steps its own environments
into its own replay (``<run>/replay-rank<r>``; rank 0's stays ``<run>/replay``) with its own seeds, and
holds ``replay_capacity / ranks`` frames. The counters are the run's: ``env_steps`` is summed over the
ranks after each vector step, so ``total_env_steps`` and ``warmup_steps`` are the whole run's, and each
rank makes ``updates_per_env_step x env_steps / ranks`` updates of its own batch: the gradient averages
``ranks x batch_size`` samples, and the samples trained on per env step are those of one process.
"""

from __future__ import annotations

import random
import time
import warnings
from collections import deque
from pathlib import Path

import lightning as L
import numpy as np
import torch
from tqdm.auto import tqdm

from worldmodels.envs import EnvConfig, make_vector_env
from worldmodels import run_files
from worldmodels.errors import ConfigError
from worldmodels.replay import Replay
from worldmodels.training.counters import Counters
from worldmodels.nets.draws import accelerator_random_states, set_accelerator_random_states
from worldmodels.training.distributed import gather_objects, rank_seed, sum_over_ranks, weights_fingerprint
from worldmodels.training.spec import EnvSpec


class Experience(L.LightningDataModule):
    """Args:
        env: the environment (suite, task, preset...).
        num_envs: environments stepped together.
        total_env_steps: agent decisions to train for (Atari 100k: 100000).
        warmup_steps: env steps before the first update, with uniform random actions (or the agent's
            own exploration policy, for agents whose ``random_warmup`` is False).
        replay_capacity: frames kept (over all environments).
        replay_storage: ``memory`` or ``memmap`` (disk-backed).
        replay_dir: directory for memmap files (a temporary one when empty).
        seed: seeds environments, random actions and replay sampling (linked to ``seed_everything``).
        max_updates: stop after this many updates even if env steps remain (smoke runs of big models).
        progress_bar: show env steps, steps per second and the last episode's return.
        dataset: train offline from this run directory's replay (``python -m worldmodels.dataset info``
            shows what it holds); ``max_updates`` is then the budget and the env-step settings are unused.
        env_processes: step each environment in a process of its own, while the updates owed run
            (``None``: when ``num_envs`` > 1). The updates trained while a vector step is in flight draw
            from the replay before that step's frames: one env step stale; the replay ratio is exact.
    """

    def __init__(self, env: EnvConfig, num_envs: int = 1, total_env_steps: int = 100_000, warmup_steps: int = 1600,
                 replay_capacity: int = 100_000, replay_storage: str = "memory", replay_dir: str | None = None,
                 seed: int = 0, max_updates: int | None = None, progress_bar: bool = True, dataset: str | None = None,
                 env_processes: bool | None = None):
        super().__init__()
        self.env_config = env.resolved()
        self.num_envs, self.total_env_steps, self.warmup_steps = num_envs, total_env_steps, warmup_steps
        if total_env_steps < 1 or warmup_steps < 0:
            raise ConfigError("data.total_env_steps must be positive and data.warmup_steps not negative.")
        self.replay_capacity, self.replay_storage, self.replay_dir = replay_capacity, replay_storage, replay_dir
        self.seed, self.progress_bar, self.max_updates = seed, progress_bar, max_updates
        self.dataset = dataset
        self.env_processes = num_envs > 1 if env_processes is None else env_processes
        self.rank, self.world, self.rank_seed = 0, 1, seed  # set for several processes in ``setup``
        self.counters = Counters()
        self.finished_games: list[tuple[float, int]] = []  # (score, length) since the loggers last read them
        self.recent_returns: deque[float] = deque(maxlen=10)
        self._envs = None
        self.replay: Replay | None = None
        self._rng = np.random.default_rng(seed)
        self._yielded = 0  # batches produced, one ahead of counters.updates while Lightning prefetches (a
        # resume starts again from counters.updates: a fetched batch not trained on is owed again)
        self._obs = self._first = self._agent_state = None

    # ----------------------------------------------------------------- set-up
    @property
    def envs(self):
        if self._envs is None:
            self._envs = make_vector_env(self.env_config, self.num_envs, self.rank_seed, training=True,
                                         processes=self.env_processes)
        return self._envs

    @property
    def spec(self) -> EnvSpec:
        envs = self.envs
        return EnvSpec.from_spaces(envs.single_observation_space, envs.single_action_space,
                                   self.env_config.frame_channels, self.env_config.action_repeat)

    @property
    def offline(self) -> bool:
        return self.dataset is not None

    @property
    def progress(self) -> int:
        """The run's clock, on which checkpoints and evaluations trigger: env steps, or updates offline."""
        return self.counters.updates if self.offline else self.counters.env_steps

    @property
    def progress_key(self) -> str:
        return "updates" if self.offline else "env_steps"

    def setup(self, stage: str) -> None:
        if self.replay is None and self.trainer is not None and self.trainer.world_size > 1:
            self._become_rank(self.trainer.global_rank, self.trainer.world_size)
        if self.replay is None and self.offline:
            self.replay = self._open_dataset()
        if self.replay is None:
            replay_dir = self.replay_dir
            if replay_dir and self.world > 1:
                replay_dir = str(Path(replay_dir) / f"rank{self.rank}")
            self.replay = Replay(self.replay_capacity // self.world, self.num_envs, self.env_config.frame_stack,
                                 self.env_config.frame_channels, self.replay_storage, replay_dir, seed=self.rank_seed,
                                 stack_padding=self.env_config.stack_padding)

    def _become_rank(self, rank: int, world: int) -> None:
        """One of several processes: this rank's seeds for its environments (made again: DMC seeds its
        physics when made), random actions, replay sampling and the global generators (exploration
        noise, augmentations); the weights were made from the shared seed and DDP keeps them equal."""
        self.rank, self.world, self.rank_seed = rank, world, rank_seed(self.seed, rank)
        self._rng = np.random.default_rng(self.rank_seed)
        if self._envs is not None:
            self._envs.close()
            self._envs = None
        torch.manual_seed(self.rank_seed)
        np.random.seed(self.rank_seed % 2**32)
        random.seed(self.rank_seed)

    def _open_dataset(self) -> Replay:
        from worldmodels.replay.dataset import describe_actions, open_dataset

        data = open_dataset(Path(self.dataset))
        for what, mine, its in [("observations", self.spec.obs_shape, data.obs_shape),
                                ("actions", describe_actions(self.env_config, self.spec.action_dim), data.actions)]:
            if mine != its:
                raise ConfigError(f"dataset {self.dataset} holds {what} {its} but this run's data.env gives {mine}; "
                                  f"train on it with its environment ({data.env.suite}/{data.env.task}, as in its config).")
        return data.replay  # its sampling generator is reseeded for every batch (_offline_batches)

    def teardown(self, stage: str) -> None:
        if self._envs is not None:  # environment processes end with the run, not with the interpreter
            self._envs.close()
            self._envs, self._obs = None, None

    def train_dataloader(self):
        # Not ``self``: Lightning saves the state of a stateful loader in its loop state, which would
        # put the replay's state into the checkpoint a second time.
        for callback in self.trainer.callbacks if self.trainer is not None else ():
            if hasattr(callback, "on_run_restored"):  # Lightning asks for the loader once every restore is done
                callback.on_run_restored(self.trainer)
        return _Batches(self)

    @property
    def replay_log(self) -> Path:
        """Where checkpoints append the replay's rows: ``<run>/replay`` (the trainer's root is the run)."""
        return Path(self.trainer.default_root_dir) / run_files.replay_of_rank(self.rank)

    # ----------------------------------------------------------------- the loop
    def __iter__(self):
        return self.batches(self.trainer.lightning_module)

    def batches(self, agent):
        """Interact with ``agent``'s exploration policy and yield its training batches until the
        step budget is spent."""
        agent.attach_loop(self.counters, self.warmup_steps)
        view = agent.replay_view()
        if self.offline:
            yield from self._offline_batches(agent, view)
            return
        bar = tqdm(total=self.total_env_steps, initial=self.counters.env_steps, unit="step", dynamic_ncols=True,
                   disable=not self.progress_bar or self.rank != 0, desc="env steps")
        clock, clock_steps = time.perf_counter(), self.counters.env_steps
        self._yielded = self.counters.updates
        if self._obs is None:
            self.begin_episodes()
        try:
            while self.counters.env_steps < self.total_env_steps and not self._update_budget_spent():
                if self.envs.asynchronous:  # the updates owed run while the environments step
                    taken = yield from self._interact_overlapped(agent, view)
                else:
                    taken = self._interact(agent)
                bar.update(taken)
                self._tell_callbacks_env_steps()
                yield from self._batches_due(agent, view)  # none left after an overlapped step
                if time.perf_counter() - clock > 1.0:
                    sps = (self.counters.env_steps - clock_steps) / (time.perf_counter() - clock)
                    clock, clock_steps = time.perf_counter(), self.counters.env_steps
                    last = f"{self.recent_returns[-1]:.1f}" if self.recent_returns else "-"
                    bar.set_postfix_str(f"{sps:.0f} steps/s, updates {self.counters.updates}, last return {last}")
            if self.trainer is not None:
                self.trainer.should_stop = True  # the step budget ends the run, not Lightning's epoch count
        finally:
            bar.close()

    def _batches_due(self, agent, view):
        while self._yielded < self.updates_due(agent) and not self._update_budget_spent():
            self._yielded += 1
            yield view.sample(self.replay)

    def _offline_batches(self, agent, view):
        self._yielded = self.counters.updates
        bar = tqdm(total=self.max_updates, initial=self._yielded, unit="update", dynamic_ncols=True,
                   disable=not self.progress_bar, desc="updates (offline)")
        try:
            while not self._update_budget_spent():
                self._yielded += 1
                self.replay.generator.manual_seed(self.seed * 1_000_003 + self._yielded)
                yield view.sample(self.replay)
                bar.update(1)
            self.trainer.should_stop = True
        finally:
            bar.close()

    def updates_due(self, agent) -> int:
        """Updates owed after the env steps taken: ratio x (steps - warm-up). A function of the counters,
        not a running credit, so that a run stopped anywhere (Ctrl-C inside an env step, kill -9 while
        Lightning holds a fetched batch it has not trained on) owes exactly the same after a resume.
        Several processes share the run's updates: each makes its part, all of them the same number.
        An agent with ``warmup_burst`` (SAC+AE) is owed ratio x steps once the warm-up is over: the
        warm-up's share at once when it ends, then the ratio per step."""
        steps, warmup = self.counters.env_steps, self.warmup_steps
        counted = steps if agent.warmup_burst and steps >= warmup else max(0, steps - warmup)
        return int(agent.updates_per_env_step * counted / self.world + 1e-9)

    def _tell_callbacks_env_steps(self) -> None:
        """Callbacks that act on env steps (checkpoints) run here, during the warm-up too, when no
        training batch ends. What they save is consistent wherever they run: the updates owed after a
        resume follow from the counters (``updates_due``)."""
        for callback in self.trainer.callbacks if self.trainer is not None else ():
            if hasattr(callback, "on_env_steps"):
                callback.on_env_steps(self.trainer)

    def _update_budget_spent(self) -> bool:
        return self.max_updates is not None and self._yielded >= self.max_updates

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        # Counted here, when training_step is about to get the batch: Lightning fetches one batch ahead.
        self.counters.updates += 1
        return batch

    def begin_episodes(self) -> None:
        """Reset every environment and store the first frames (at the start and after a resume)."""
        step = self.envs.reset(seed=self.rank_seed + 1000 * self.counters.episodes)
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
        """``_interact`` with the environments in their own processes: send the actions, count the step
        (known before it completes: the environments that do not restart), yield the batches now owed
        (Lightning trains on them while the environments step), then store the step."""
        actions = self._actions(agent)
        self.envs.step_async(actions)
        taken = self._count_steps(int(self.envs.stepping.sum()), agent)
        yield from self._batches_due(agent, view)
        step = self.envs.step_wait()
        self._store(step, actions)
        self._count_games(step)
        return taken

    def _actions(self, agent) -> np.ndarray:
        if self.counters.env_steps < self.warmup_steps and agent.random_warmup:
            return self.envs.random_actions(self._rng)
        with agent.acting():
            if self._agent_state is None:
                self._agent_state = agent.initial_state(self.num_envs)
            obs = torch.as_tensor(self._obs, device=agent.device)
            first = torch.as_tensor(self._first, device=agent.device)
            actions, self._agent_state = agent.act(obs, self._agent_state, first, explore=True)
            return actions.cpu().numpy()

    def _count_steps(self, taken: int, agent) -> int:
        if self.world > 1:  # every rank's, so that all of them owe the same updates and save at the same step
            taken = int(sum_over_ranks(torch.tensor([taken], device=agent.device)))
        self.counters.env_steps += taken
        self.counters.frames += taken * self.env_config.action_repeat
        return taken

    def _count_games(self, step) -> None:
        for _, score, length in step.finished_games:
            self.counters.episodes += 1
            self.finished_games.append((score, length))
            self.recent_returns.append(score)

    def _store(self, step, actions) -> None:
        self.replay.add(step.obs, actions, step.reward, step.terminated, step.truncated, step.first)
        self._obs, self._first = step.obs, step.first

    # ----------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict:
        state = {
            "counters": self.counters.state_dict(),
            "replay": self._persisted_replay(),
            "rng": {"numpy": self._rng.bit_generator.state, "torch": torch.get_rng_state(),
                    "accelerators": accelerator_random_states(),
                    "python": random.getstate(), "global_numpy": global_numpy_state()},
            "recent_returns": list(self.recent_returns),
        }
        if self.world == 1:
            return state
        # Lightning writes rank 0's checkpoint only: every rank's state goes into it, with a fingerprint
        # of each rank's weights (equal unless DDP lost a step: that is said, not saved silently).
        state["weights"] = weights_fingerprint(self.trainer.lightning_module)
        ranks = gather_objects(state)
        if any(r["weights"] != ranks[0]["weights"] for r in ranks):
            warnings.warn(f"the ranks' weights differ at env step {self.counters.env_steps}: the processes have "
                          "diverged; this checkpoint holds rank 0's.", stacklevel=1)
        return {"ranks": ranks}

    def _persisted_replay(self) -> dict:
        if not self.offline:  # an offline run adds no rows: its replay is the dataset's, on disk already
            self.replay.persist(self.replay_log)  # before the checkpoint that counts on these rows is written
        return self.replay.state_dict()

    def load_state_dict(self, state: dict) -> None:
        saved = len(state.get("ranks", [state]))
        if saved != self.world:
            raise ConfigError(f"the checkpoint was written by a run of {saved} process(es) and this one has "
                              f"{self.world}: resume it with as many (trainer.devices x trainer.num_nodes = {saved}).")
        state = state["ranks"][self.rank] if "ranks" in state else state
        self.counters.load_state_dict(state["counters"])
        if self.offline:
            if state["replay"]["time"] != self.replay.time:
                raise ConfigError(f"dataset {self.dataset} has changed since this run started (it holds rows up to "
                                  f"{self.replay.time}, the run trained on rows up to {state['replay']['time']}): "
                                  "start a new offline run.")
        else:
            self.replay.load_state_dict(state["replay"], self.replay_log)
        self._rng.bit_generator.state = state["rng"]["numpy"]
        torch.set_rng_state(state["rng"]["torch"])
        set_accelerator_random_states(state["rng"].get("accelerators", {}))
        random.setstate(state["rng"]["python"])
        set_global_numpy_state(state["rng"]["global_numpy"])
        self.recent_returns.extend(state["recent_returns"])
        self._obs = None  # environments cannot be checkpointed: resumed runs start new episodes


class _Batches:
    """The training batches of an ``Experience``, as Lightning's (stateless) train loader."""

    def __init__(self, experience: Experience):
        self.experience = experience

    def __iter__(self):
        return iter(self.experience)


def global_numpy_state() -> tuple:
    """numpy's global RNG state without numpy arrays, so checkpoints load with ``weights_only=True``."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss


def set_global_numpy_state(state) -> None:
    name, keys, *rest = state
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
