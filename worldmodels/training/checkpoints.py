"""Checkpoints that survive interruption: periodic, at the end, and when a run is stopped; written
atomically; refused with one clear sentence when corrupt."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from worldmodels import run_files
from worldmodels.checkpoint_file import read_checkpoint, write_checkpoint
from worldmodels.training.clock import LoopCallback


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes to ``<path>.tmp``, syncs it to disk, then renames it over ``<path>`` (``save_atomically``):
    an interrupted write leaves the previous checkpoint intact. Loads with ``weights_only=True``
    (``worldmodels.checkpoint_file``)."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        write_checkpoint(checkpoint, Path(path))

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        return read_checkpoint(path, map_location)

    def remove_checkpoint(self, path) -> None:
        Path(path).unlink(missing_ok=True)


class PeriodicCheckpoint(LoopCallback):
    """Saves ``<dirpath>/last.ckpt`` every ``every_env_steps`` (warm-up included; updates in an offline
    run, after the update), when training ends,
    and when it is interrupted by Ctrl-C, with the agent, optimizers, counters, RNG states and the
    replay's cursor (the data module appends the new replay rows to ``<run>/replay`` as it is saved).

    Args:
        every_env_steps: save each time this many more env steps have been taken; in an offline run
            (``data.dataset``), each time this many more updates have been made: the run's clock
            (``RunClock.progress``) counts updates there, and the option keeps its name for existing configs.
        dirpath: directory of the checkpoint (set by ``worldmodels.fit`` to ``<run_dir>/checkpoints``).
    """

    def __init__(self, every_env_steps: int = 10_000, dirpath: str | None = None):
        self.every_env_steps, self.dirpath = every_env_steps, dirpath
        self._saved_at = 0

    @property
    def path(self) -> Path:
        return Path(self.dirpath or run_files.CHECKPOINTS) / run_files.LAST_CHECKPOINT

    def _save(self, trainer: L.Trainer) -> None:
        self._saved_at = self.clock.progress
        trainer.save_checkpoint(self.path, weights_only=False)  # the whole training state

    def on_env_steps(self, trainer) -> None:
        """After every environment step, warm-up included (``worldmodels.training.loop``)."""
        self._save_if_due(trainer)

    def on_train_batch_end(self, trainer, agent, outputs, batch, batch_idx) -> None:
        if self.clock.offline:  # the clock is the update count, complete once the update is
            self._save_if_due(trainer)

    def _save_if_due(self, trainer) -> None:
        now = self.clock.progress
        if self.every_env_steps and now // self.every_env_steps > self._saved_at // self.every_env_steps:
            self._save(trainer)

    def on_train_end(self, trainer, agent) -> None:
        self._save(trainer)

    def on_exception(self, trainer, agent, exception) -> None:
        # Only a deliberate stop is saved: after an error the state may be half-updated, and the last
        # periodic checkpoint is the one to trust.
        if isinstance(exception, KeyboardInterrupt) and trainer.world_size > 1:
            # Saving gathers every process's state, and the others are not saving: the periodic one stands.
            print(f"\nInterrupted: resume from the last periodic checkpoint, --ckpt_path {self.path}")
            return
        if isinstance(exception, KeyboardInterrupt) and self.loop is not None and self.loop.replay is not None:
            self._save(trainer)
            print(f"\nInterrupted: saved {self.path}; resume with --ckpt_path {self.path}")

    def state_dict(self) -> dict:
        return {"saved_at": self._saved_at}

    def load_state_dict(self, state: dict) -> None:
        self._saved_at = state["saved_at"]
