"""Files that are either wholly written or not there, and that say when their bytes changed since:
checkpoints and replay chunks.

Each file ends with a trailer, ``TRAILER`` and the SHA-256 of every byte before it in hex, computed
while the file is written (in a helper thread, beside the write: hashlib and file writes release the
GIL). torch reads a zip archive from its end record and ignores bytes after it, so the files stay
ordinary torch files. ``verify`` reads a file back and compares; files written before the trailer
existed have none and are not checked."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
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


DIGEST = True  # tools/bench_digest.py turns it off to measure its cost
TRAILER = b"\nworldmodels-sha256:"
_TRAILER_SIZE = len(TRAILER) + 64 + 1
_PIECE = 8 << 20  # bytes hashed while the previous piece is written
_hasher = ThreadPoolExecutor(1, thread_name_prefix="digest")


class _HashingWriter:
    """A file object for ``torch.save`` that hashes what it writes, in pieces: the digest of a piece is
    computed in a helper thread while the piece is written."""

    def __init__(self, file):
        self.file, self.digest = file, hashlib.sha256()
        self.name = file.name

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        for start in range(0, len(view), _PIECE):
            piece = view[start:start + _PIECE]
            hashed = _hasher.submit(self.digest.update, piece)
            self.file.write(piece)
            hashed.result()
        return len(view)

    def flush(self) -> None:
        self.file.flush()


def verify(path: Path) -> bool | None:
    """Whether ``path``'s bytes match the digest in its trailer (None: it has no trailer)."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        if size < _TRAILER_SIZE:
            return None
        f.seek(size - _TRAILER_SIZE)
        trailer = f.read()
        if not trailer.startswith(TRAILER):
            return None
        digest, left = hashlib.sha256(), size - _TRAILER_SIZE
        f.seek(0)
        buffer = bytearray(min(_PIECE, max(left, 1)))
        while left:
            n = f.readinto(memoryview(buffer)[:min(left, len(buffer))])
            if not n:
                return False
            digest.update(memoryview(buffer)[:n])
            left -= n
    return digest.hexdigest().encode() == trailer[len(TRAILER):-1]


def save_atomically(obj, path: Path) -> None:
    """``torch.save`` to ``<path>.tmp``, synced to disk, then renamed over ``path``: an interrupted write
    leaves the previous file intact. A failed write (a full disk) removes the partial file and says so
    in one sentence."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            if DIGEST:
                writer = _HashingWriter(f)
                torch.save(obj, writer)
                f.write(TRAILER + writer.digest.hexdigest().encode() + b"\n")
            else:
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
