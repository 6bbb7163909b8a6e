"""Environment interaction at a replay ratio, as the Lightning data source every agent trains from:
the data module's set-up (environments, replay, the run's clock, processes) and its checkpoint state.
The loop itself, where each env step and its updates happen, is ``worldmodels.training.loop``.

Offline (``dataset``: another run's directory), the replay is that run's and stays as it is: no
environment step is taken for training, batches are drawn until ``max_updates``, and the run's clock
(``RunClock.progress``: checkpoints, evaluations) is the update count. Evaluation games still play the
environment.

On several processes (DDP, ``worldmodels.training.distributed``) each rank steps its own environments
into its own replay (``<run>/replay-rank<r>``; rank 0's stays ``<run>/replay``) with its own seeds, and
holds ``replay_capacity / ranks`` frames. The counters are the run's: ``env_steps`` is summed over the
ranks every few vector steps (``distributed.COUNT_EXCHANGE_EVERY``), so ``total_env_steps`` and ``warmup_steps`` are the whole run's, and each
rank makes ``updates_per_env_step x env_steps / ranks`` updates of its own batch: the gradient averages
``ranks x batch_size`` samples, and the samples trained on per env step are those of one process.
"""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch

from worldmodels.envs import EnvConfig, make_vector_env
from worldmodels.envs.observations import describe_layout
from worldmodels import run_files
from worldmodels.errors import ConfigError
from worldmodels.nets.draws import accelerator_random_states, set_accelerator_random_states
from worldmodels.replay import Replay
from worldmodels.training.clock import LoopCallback, RunClock
from worldmodels.training.counters import Counters
from worldmodels.training.distributed import cpu_group, gather_objects, rank_seed, weights_fingerprint
from worldmodels.training.loop import TrainingLoop
from worldmodels.training.spec import EnvSpec
from worldmodels.training.validate import check_frames_fit, check_replay_device


class Experience(TrainingLoop, L.LightningDataModule):
    """Args:
        env: the environment (suite, task, preset...).
        num_envs: environments stepped together.
        total_env_steps: agent decisions to train for (Atari 100k: 100000).
        warmup_steps: env steps before the first update, with uniform random actions (or the agent's
            own exploration policy, for agents whose ``random_warmup`` is False).
        replay_capacity: frames kept (over all environments).
        replay_storage: ``memory`` or ``memmap`` (disk-backed).
        replay_dir: directory for memmap files (a temporary one when empty).
        replay_device: where the replay's frames are kept and gathered: ``cpu``; ``cuda``, the GPU this
            process trains on (each process's own under DDP), so that no frame crosses the bus per batch
            (the per-step fields stay on the host, and batches equal the ``cpu`` ones); ``auto``, that GPU
            when training runs on one, else the CPU. Needs ``replay_storage: memory`` (``auto`` keeps
            memmap frames on the host) and room for the frames in the GPU's free memory, checked at
            set-up. An offline run's dataset moves there too.
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
                 env_processes: bool | None = None, replay_device: str = "cpu"):
        super().__init__()
        self.env_config = env.resolved()
        self.num_envs, self.total_env_steps, self.warmup_steps = num_envs, total_env_steps, warmup_steps
        if total_env_steps < 1 or warmup_steps < 0:
            raise ConfigError("data.total_env_steps must be positive and data.warmup_steps not negative.")
        self.replay_capacity, self.replay_storage, self.replay_dir = replay_capacity, replay_storage, replay_dir
        # A dataset is read into memory whatever replay_storage says (``open_dataset``).
        self.replay_device = check_replay_device(replay_device, "memory" if dataset is not None else replay_storage)
        self.seed, self.progress_bar, self.max_updates = seed, progress_bar, max_updates
        self.dataset = dataset
        self.env_processes = num_envs > 1 if env_processes is None else env_processes
        self.rank, self.world, self.rank_seed = 0, 1, seed  # set for several processes in ``setup``
        self.clock = RunClock(total_env_steps, warmup_steps, max_updates, offline=dataset is not None)
        self._envs = None
        self.replay: Replay | None = None
        self._rng = np.random.default_rng(seed)
        self._yielded = 0  # batches produced, one ahead of counters.updates while Lightning prefetches (a
        # resume starts again from counters.updates: a fetched batch not trained on is owed again)
        self._obs = self._first = self._agent_state = None
        # Several processes: this rank's env steps not yet exchanged with the others, and its vector steps
        # since the last exchange (``TrainingLoop._count_steps``).
        self.uncounted_env_steps = self._vector_steps_unexchanged = 0

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
                                   self.env_config.frame_stack, self.env_config.action_repeat)

    @property
    def offline(self) -> bool:
        return self.dataset is not None

    @property
    def counters(self) -> Counters:
        """The run's counters (``clock.counters``)."""
        return self.clock.counters

    def setup(self, stage: str) -> None:
        for callback in self.trainer.callbacks if self.trainer is not None else ():
            if isinstance(callback, LoopCallback):  # the loop's callbacks read the run's clock and the loop
                callback.attach(self)
        if self.replay is None and self.trainer is not None and self.trainer.world_size > 1:
            self._become_rank(self.trainer.global_rank, self.trainer.world_size)
        if self.replay is None and self.offline:
            self.replay = self._open_dataset()
        if self.replay is None:
            replay_dir = self.replay_dir
            if replay_dir and self.world > 1:
                replay_dir = str(Path(replay_dir) / f"rank{self.rank}")
            self.replay = Replay(self.replay_capacity // self.world, self.num_envs, storage=self.replay_storage,
                                 directory=replay_dir, seed=self.rank_seed, stack_padding=self.env_config.stack_padding,
                                 layout=self.spec.obs_keys)
        self._place_replay_frames()

    def frames_device(self) -> torch.device:
        """Where ``replay_device`` puts the frames: resolved against the device Lightning trains this
        process on (``strategy.root_device``: each rank's own GPU under DDP). Before a trainer is
        attached (an offline run's start-up checks open the dataset then) the CPU: ``setup`` runs again
        under the trainer and moves the frames."""
        trainer = self.trainer
        if self.replay_device == "cpu" or trainer is None or self.replay.storage == "memmap":
            return torch.device("cpu")
        trains_on = trainer.strategy.root_device
        if trains_on.type == "cuda":
            return trains_on
        if self.replay_device == "cuda":
            raise ConfigError(f"data.replay_device is cuda but this run trains on {trains_on}; keep the frames where "
                              "training runs: --data.replay_device auto (or cpu), or train on a GPU.")
        return torch.device("cpu")  # auto, training on the CPU

    def _place_replay_frames(self) -> None:
        """Put the replay's frames on ``frames_device``, once they fit there. The replay is made on the
        CPU and holds no frame until the first env step (TorchRL allocates at the first write), so only
        a dataset's frames are copied."""
        device = self.frames_device()
        if self.replay.device != device:
            check_frames_fit(self.replay.frame_bytes(), device, self.replay.rows * self.replay.num_envs)
            self.replay.place_frames(device)

    def _become_rank(self, rank: int, world: int) -> None:
        """One of several processes: this rank's seeds for its environments (made again: DMC seeds its
        physics when made), random actions, replay sampling and the global generators (exploration
        noise, augmentations); the weights were made from the shared seed and DDP keeps them equal."""
        self.rank, self.world, self.rank_seed = rank, world, rank_seed(self.seed, rank)
        self.clock.world = world
        cpu_group()  # made now, while every rank sets up at the same point
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
        for what, mine, its in [("observations", describe_layout(self.spec.obs_keys), describe_layout(data.obs_keys)),
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
            if isinstance(callback, LoopCallback):  # Lightning asks for the loader once every restore is done
                callback.on_run_restored(self.trainer)
        return _Batches(self)

    @property
    def replay_log(self) -> Path:
        """Where checkpoints append the replay's rows: ``<run>/replay`` (the trainer's root is the run)."""
        return Path(self.trainer.default_root_dir) / run_files.replay_of_rank(self.rank)

    # ----------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict:
        state = {
            "counters": self.counters.state_dict(),
            "replay": self._persisted_replay(),
            "view": self.trainer.lightning_module.replay_view().state_dict(),  # e.g. the replay's priorities
            "rng": {"numpy": self._rng.bit_generator.state, "torch": torch.get_rng_state(),
                    "accelerators": accelerator_random_states(),
                    "python": random.getstate(), "global_numpy": global_numpy_state()},
            "recent_returns": list(self.clock.recent_returns),
        }
        if self.world == 1:
            return state
        # Lightning writes rank 0's checkpoint only: every rank's state goes into it, with a fingerprint
        # of each rank's weights (equal unless DDP lost a step: that is said, not saved silently).
        state["weights"] = weights_fingerprint(self.trainer.lightning_module)
        state["uncounted_env_steps"] = self.uncounted_env_steps
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
        if "view" in state:  # checkpoints written before the view's state was kept here keep it in the agent's
            self.trainer.lightning_module.replay_view().load_state_dict(state["view"])
        self._rng.bit_generator.state = state["rng"]["numpy"]
        torch.set_rng_state(state["rng"]["torch"])
        set_accelerator_random_states(state["rng"].get("accelerators", {}))
        random.setstate(state["rng"]["python"])
        set_global_numpy_state(state["rng"]["global_numpy"])
        self.clock.recent_returns.extend(state["recent_returns"])
        # Exchanged at the resumed run's first exchange, which every rank reaches after as many vector steps.
        self.uncounted_env_steps, self._vector_steps_unexchanged = state.get("uncounted_env_steps", 0), 0
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
