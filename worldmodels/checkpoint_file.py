"""A checkpoint file as ``worldmodels.fit`` writes it (atomically, with a checksum trailer) and reads it
(``weights_only=True``), and the parts of its contents that readers outside the loop need; without
Lightning, so that the dataset library and the analysis commands can read runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from worldmodels.atomic import save_atomically, verify
from worldmodels.errors import ConfigError

# The key under which Lightning saves the data module's state: its class name (``Experience``).
EXPERIENCE_STATE = "Experience"


def write_checkpoint(checkpoint: dict, path: Path) -> None:
    save_atomically(checkpoint, Path(path))


def read_checkpoint(path, map_location=None) -> dict:
    """The checkpoint at ``path``, loaded with ``weights_only=True`` after its checksum is verified; one
    sentence (``ConfigError``) for a missing, altered, unsafe or unreadable file."""
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


def rank_zero_state(state: dict) -> dict:
    """The first process's part of a saved ``Experience`` state (the whole state of a one-process run)."""
    return state["ranks"][0] if "ranks" in state else state
