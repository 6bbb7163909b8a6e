"""Checkpoints that survive interruption: periodic, at the end, and when a run is stopped; written
atomically; refused with one clear sentence when corrupt."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from worldmodels.atomic import save_atomically, verify
from worldmodels.errors import ConfigError


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes to ``<path>.tmp``, syncs it to disk, then renames it over ``<path>`` (``save_atomically``):
    an interrupted write leaves the previous checkpoint intact. Loads with ``weights_only=True``."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        save_atomically(checkpoint, Path(path))

    def load_checkpoint(self, path, map_location=None, weights_only=None):
        if not Path(path).is_file():
            raise ConfigError(f"checkpoint {path} does not exist; pass the path of a .ckpt file or --ckpt_path last.")
        if verify(Path(path)) is False:
            others = [p for p in sorted(Path(path).parent.glob("*.ckpt")) if p != Path(path) and verify(p)]
            instead = (f"resume from {others[0]} (--ckpt_path {others[0]}), which is intact," if others
                       else "no other checkpoint of this run is kept:")
            raise ConfigError(f"checkpoint {path} does not match the checksum written with it (its bytes changed after "
                              f"it was written: a disk, copy or transfer fault); {instead} or start a new run.")
        try:
            # weights_only: unpickling may build only tensors, Python primitives and the allow-list, so a
            # checkpoint from elsewhere cannot run code.
            with torch.serialization.safe_globals(ALLOWED_GLOBALS):
                checkpoint = torch.load(path, map_location=map_location or "cpu", weights_only=True)
        except Exception as error:
            unsafe = _unsafe_globals(path)
            if unsafe:
                raise ConfigError(f"checkpoint {path} holds objects other than tensors and plain values "
                                  f"({', '.join(unsafe)}); it was not written by worldmodels.fit, and loading it "
                                  "could run code.") from None
            detail = str(error).splitlines()[0] if str(error) else ""
            detail = f": {detail}" if detail and "Weights only load failed" not in detail and len(detail) < 150 else ""
            raise ConfigError(f"checkpoint {path} cannot be read ({type(error).__name__}{detail}); it is corrupt or "
                              "not a checkpoint: resume from another file or start a new run.") from None
        return without_legacy_loader_state(checkpoint)

    def remove_checkpoint(self, path) -> None:
        Path(path).unlink(missing_ok=True)


# Besides tensors and Python primitives, checkpoints written before the replay left them hold numpy
# arrays (episode ids, numpy's RNG keys). Nothing else is allowed.
ALLOWED_GLOBALS = [np._core.multiarray._reconstruct, np.ndarray, np.dtype, np.dtypes.UInt32DType,
                   np.dtypes.Int64DType]


def _unsafe_globals(path) -> list[str]:
    """What a torch checkpoint would need to import beyond the allow-list (none for a corrupt file)."""
    try:
        allowed = {f"{g.__module__}.{g.__qualname__}" for g in ALLOWED_GLOBALS}
        return [g for g in torch.serialization.get_unsafe_globals_in_checkpoint(path) if g not in allowed]
    except Exception:
        return []


def without_legacy_loader_state(checkpoint: dict) -> dict:
    """Checkpoints written before ``Experience.train_dataloader`` returned a stateless loader hold a
    second copy of the data module's state (replay included) in Lightning's loop state; Lightning
    would refuse it now that the loader keeps no state."""
    fit_loop = checkpoint.get("loops", {}).get("fit_loop", {}) if isinstance(checkpoint, dict) else {}
    fit_loop.get("state_dict", {}).pop("combined_loader", None)
    return checkpoint


class PeriodicCheckpoint(L.Callback):
    """Saves ``<dirpath>/last.ckpt`` every ``every_env_steps`` (warm-up included; updates in an offline
    run, after the update), when training ends,
    and when it is interrupted by Ctrl-C, with the agent, optimizers, counters, RNG states and the
    replay's cursor (the data module appends the new replay rows to ``<run>/replay`` as it is saved).

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
        self._saved_at = trainer.datamodule.progress
        trainer.save_checkpoint(self.path, weights_only=False)  # the whole training state

    def on_env_steps(self, trainer) -> None:
        """Called by ``Experience`` after every environment step, warm-up included."""
        self._save_if_due(trainer)

    def on_train_batch_end(self, trainer, agent, outputs, batch, batch_idx) -> None:
        if trainer.datamodule.offline:  # the clock is the update count, complete once the update is
            self._save_if_due(trainer)

    def _save_if_due(self, trainer) -> None:
        now = trainer.datamodule.progress
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
        if isinstance(exception, KeyboardInterrupt) and trainer.datamodule.replay is not None:
            self._save(trainer)
            print(f"\nInterrupted: saved {self.path}; resume with --ckpt_path {self.path}")

    def state_dict(self) -> dict:
        return {"saved_at": self._saved_at}

    def load_state_dict(self, state: dict) -> None:
        self._saved_at = state["saved_at"]
