"""Checkpoints that survive interruption: periodic, at the end, and when a run is stopped; written
atomically; refused with one clear sentence when corrupt."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from worldmodels.errors import ConfigError


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes to ``<path>.tmp``, syncs it to disk, then renames it over ``<path>``: an interrupted write
    leaves the previous checkpoint intact. Lightning's own atomic save first serialises the whole
    checkpoint into memory, which doubles the memory of a checkpoint that holds the replay."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        if not Path(path).is_file():
            raise ConfigError(f"checkpoint {path} does not exist; pass the path of a .ckpt file or --ckpt_path last.")
        try:
            # Our checkpoints hold numpy RNG states and counters, hence weights_only=False: load only your own files.
            return torch.load(path, map_location=map_location or "cpu", weights_only=False)
        except Exception as error:
            raise ConfigError(f"checkpoint {path} cannot be read ({type(error).__name__}: {error}); it is corrupt or "
                              "not a checkpoint: resume from another file or start a new run.") from None

    def remove_checkpoint(self, path) -> None:
        Path(path).unlink(missing_ok=True)


class PeriodicCheckpoint(L.Callback):
    """Saves ``<dirpath>/last.ckpt`` every ``every_env_steps``, when training ends, and when it is
    interrupted (Ctrl-C or an error), with the agent, optimizers, counters, RNG states and replay.

    Args:
        every_env_steps: save each time this many more env steps have been taken.
        dirpath: directory of the checkpoint (set by ``worldmodels.fit`` to ``<run_dir>/checkpoints``).
    """

    def __init__(self, every_env_steps: int = 10_000, dirpath: str | None = None):
        self.every_env_steps, self.dirpath = every_env_steps, dirpath
        self._saved_at = 0

    @property
    def path(self) -> Path:
        return Path(self.dirpath or "checkpoints") / "last.ckpt"

    def _save(self, trainer: L.Trainer) -> None:
        self._saved_at = trainer.datamodule.counters.env_steps
        trainer.save_checkpoint(self.path)

    def on_train_batch_end(self, trainer, agent, outputs, batch, batch_idx) -> None:
        steps = trainer.datamodule.counters.env_steps
        if self.every_env_steps and steps // self.every_env_steps > self._saved_at // self.every_env_steps:
            self._save(trainer)

    def on_train_end(self, trainer, agent) -> None:
        self._save(trainer)

    def on_exception(self, trainer, agent, exception) -> None:
        # Only a deliberate stop is saved: after an error the state may be half-updated, and the last
        # periodic checkpoint is the one to trust.
        if isinstance(exception, KeyboardInterrupt) and trainer.datamodule.replay is not None:
            self._save(trainer)
            print(f"\nInterrupted: saved {self.path}; resume with --ckpt_path {self.path}")

    def state_dict(self) -> dict:
        return {"saved_at": self._saved_at}

    def load_state_dict(self, state: dict) -> None:
        self._saved_at = state["saved_at"]
