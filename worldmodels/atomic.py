"""Files that are either wholly written or not there: checkpoints and replay chunks."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import torch

from worldmodels.errors import ConfigError


def save_atomically(obj, path: Path) -> None:
    """``torch.save`` to ``<path>.tmp``, synced to disk, then renamed over ``path``: an interrupted write
    leaves the previous file intact. A failed write (a full disk) removes the partial file and says so
    in one sentence."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as error:
        tmp.unlink(missing_ok=True)
        if isinstance(error, RuntimeError) and "write" not in str(error).lower():
            raise
        full = getattr(error, "errno", None) == errno.ENOSPC or "No space left" in str(error)
        reason = "the disk is full" if full else (getattr(error, "strerror", None) or str(error).splitlines()[0])
        raise ConfigError(f"{path} could not be written ({reason}); free space or pass another --run_dir, "
                          "then resume: the previous checkpoint is intact.") from None
