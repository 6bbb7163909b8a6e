"""Files that are either wholly written or not there, and that say when their bytes changed since:
checkpoints and replay chunks.

Each file ends with a trailer, ``TRAILER`` and the 64-bit XXH3 checksum of every byte before it in hex
(torch reads a zip archive from its end record and ignores bytes after it, so the files stay ordinary
torch files). ``verify`` reads a file back and compares. The checksum catches what disks, copies and
transfers do to bytes; it is not a defence against a crafted file, which ``torch.load(weights_only=True)``
is. XXH3 (the ``xxhash`` package) because it runs at memory speed (7.8 GB/s on one 2 GHz EPYC core,
against 2.8 for zlib's CRC-32 and 1.2 for SHA-256), so it adds nothing measurable to an fsync'd write
(tools/bench_checksum.py). torch's own per-record CRC-32s are turned off for these files: nothing checks
them at load, and they add 13-20% to a write."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import torch
import xxhash

from worldmodels.errors import ConfigError


WRITE_FAILURES = ("write", "unexpected pos", "inline_container")
FULL_BELOW = 1 << 20  # free bytes under which a failed write is put down to a full disk


def _free_bytes(directory: Path) -> int:
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return FULL_BELOW


TRAILER = b"\nworldmodels-xxh3:"
_TRAILER_SIZE = len(TRAILER) + 16 + 1
_PIECE = 8 << 20  # bytes read at a time by verify


class _ChecksummingWriter:
    """A file object for ``torch.save`` that checksums what it writes as it writes it."""

    def __init__(self, file):
        self.file, self.name, self.checksum = file, file.name, xxhash.xxh3_64()

    def write(self, data) -> int:
        self.checksum.update(data)
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()

    def trailer(self) -> bytes:
        return TRAILER + self.checksum.hexdigest().encode() + b"\n"


def verify(path: Path) -> bool | None:
    """Whether ``path``'s bytes match the checksum in its trailer (None: it has no trailer)."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        if size < _TRAILER_SIZE:
            return None
        f.seek(size - _TRAILER_SIZE)
        trailer = f.read()
        if not trailer.startswith(TRAILER):
            return None
        checksum, left = xxhash.xxh3_64(), size - _TRAILER_SIZE
        f.seek(0)
        buffer = memoryview(bytearray(min(_PIECE, max(left, 1))))
        while left:
            n = f.readinto(buffer[:min(left, len(buffer))])
            if not n:
                return False
            checksum.update(buffer[:n])
            left -= n
    return checksum.hexdigest().encode() == trailer[len(TRAILER):-1]


def _save_with_trailer(obj, f) -> None:
    torch_crcs = torch.serialization.get_crc32_options()
    torch.serialization.set_crc32_options(False)  # the trailer's checksum replaces torch's per-record ones
    try:
        writer = _ChecksummingWriter(f)
        torch.save(obj, writer)
        f.write(writer.trailer())
    finally:
        torch.serialization.set_crc32_options(torch_crcs)


def save_atomically(obj, path: Path) -> None:
    """``torch.save`` to ``<path>.tmp``, synced to disk, then renamed over ``path``: an interrupted write
    leaves the previous file intact. A failed write (a full disk) removes the partial file and says so
    in one sentence."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            _save_with_trailer(obj, f)
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
