"""Files that are either wholly written or not there: checkpoints and replay chunks."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import torch

from worldmodels.errors import ConfigError


WRITE_FAILURES = ("write", "unexpected pos", "inline_container")
FULL_BELOW = 1 << 20  # free bytes under which a failed write is put down to a full disk


def _free_bytes(directory: Path) -> int:
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return FULL_BELOW


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
        # torch's zip writer reports a short write (a disk that filled up) as
        # "RuntimeError: [enforce fail at inline_container.cc:...] . unexpected pos N vs M".
        text = str(error)
        if isinstance(error, RuntimeError) and not any(w in text.lower() for w in WRITE_FAILURES):
            tmp.unlink(missing_ok=True)
            raise
        full = (getattr(error, "errno", None) == errno.ENOSPC or "No space left" in text
                or _free_bytes(path.parent) < FULL_BELOW)  # measured before the partial file goes
        tmp.unlink(missing_ok=True)
        reason = "the disk is full" if full else (getattr(error, "strerror", None) or str(error).splitlines()[0])
        raise ConfigError(f"{path} could not be written ({reason}); free space or pass another --run_dir, "
                          "then resume: the previous checkpoint is intact.") from None
