"""The replay's on-disk log: append-only chunk files in the run directory, as the official DreamerV3
keeps its replay.

Each checkpoint appends one file with the rows written since the previous one,
``<dir>/rows-<t0>-<t1>.pt`` (logical times ``t0 <= t < t1`` of every environment column), so a write
costs the new rows and not the capacity. A resumed run reads back the files that cover its window
``[max(0, time - rows), time)``. Files are written to ``.tmp`` and renamed, before the checkpoint that
counts on them; a file that starts at or after the checkpoint's cursor was written by a run that died
before its checkpoint and is removed by that run's own resume; a reader (a dataset, ``clean=False``)
reads only the files the cursor covers, ignores newer and half-written ones and removes nothing: the
run may be writing its next checkpoint at that moment. Files wholly older than the window are removed when a newer one
is written, so the log holds about one replay's worth of rows.

TorchRL's LazyMemmapStorage is not used for this: it is a ring overwritten in place, so after a crash
it holds rows newer than the last checkpoint over rows that the checkpoint still needs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from worldmodels.atomic import save_atomically, verify
from worldmodels.errors import ConfigError
from worldmodels.run_directory import run_id_of

_NAME = re.compile(r"rows-(\d+)-(\d+)\.pt$")


@dataclass(frozen=True)
class Chunk:
    path: Path
    start: int  # first logical time held
    stop: int  # one past the last

    def load(self) -> dict:
        """The file's rows, once its bytes match their checksum and it names this run and its own rows."""
        try:
            intact = verify(self.path)
            rows = torch.load(self.path, map_location="cpu", weights_only=True) if intact is not False else None
        except Exception as error:
            raise ConfigError(f"replay file {self.path} cannot be read ({type(error).__name__}); it is corrupt: "
                              "start a new run, or resume from a copy of the run directory.") from None
        if intact is False:
            raise ConfigError(f"replay file {self.path} does not match the checksum written with it (its bytes changed "
                              "after it was written: a disk, copy or transfer fault); start a new run, or resume from "
                              "a copy of the run directory.")
        run = run_id_of(self.path.parent.parent)
        if isinstance(rows, dict) and "run" in rows and run is not None and rows["run"] != run:
            raise ConfigError(f"replay file {self.path} was written by another run (id {rows['run']}, this run is "
                              f"{run}); remove it, or resume that run from its own directory.")
        if isinstance(rows, dict) and "start" in rows and (rows["start"], rows["stop"]) != (self.start, self.stop):
            raise ConfigError(f"replay file {self.path} holds rows {rows['start']}-{rows['stop']}, not the rows its "
                              "name says; it was renamed: restore its name, or start a new run.")
        return rows


def chunks_in(directory: Path) -> list[Chunk]:
    """The chunk files of ``directory``, oldest first (none when it does not exist)."""
    if not directory.is_dir():
        return []
    found = [(m, p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return sorted((Chunk(p, int(m[1]), int(m[2])) for m, p in found), key=lambda c: c.start)


def write_chunk(directory: Path, start: int, stop: int, rows: dict) -> Path:
    """Write rows ``start <= t < stop`` atomically: a crash leaves the previous files as they were."""
    path = directory / f"rows-{start:010d}-{stop:010d}.pt"
    run = run_id_of(directory.parent)
    save_atomically({**rows, "start": start, "stop": stop, **({"run": run} if run else {})}, path)
    return path


def _remove_partial_files(directory: Path) -> None:
    for tmp in directory.glob("rows-*.pt.tmp") if directory.is_dir() else ():
        tmp.unlink(missing_ok=True)


def drop_before(directory: Path, oldest: int) -> None:
    """Remove files whose rows all lie before ``oldest`` (overwritten in the ring: never read again),
    and half-written ``.tmp`` files."""
    for chunk in chunks_in(directory):
        if chunk.stop <= oldest:
            chunk.path.unlink(missing_ok=True)
    _remove_partial_files(directory)


def window(directory: Path, oldest: int, time: int, clean: bool = True) -> list[Chunk]:
    """The files covering ``[oldest, time)`` in order; one sentence when they do not cover it exactly
    (files follow each other without gap or overlap: each starts where the previous one stopped).

    ``clean`` (the run's own resume, under its lock) first removes files written past ``time`` by a run
    that died before its next checkpoint, and half-written ``.tmp`` files. A reader passes
    ``clean=False``: files past ``time`` are ignored (a running writer's next checkpoint may count on
    them) and nothing is removed."""
    if clean:
        for chunk in chunks_in(directory):
            if chunk.start >= time:
                chunk.path.unlink()
        _remove_partial_files(directory)
    needed = [c for c in chunks_in(directory) if c.stop > oldest and c.start < time]
    covered = (bool(needed) and needed[0].start <= oldest and needed[-1].stop == time
               and all(a.stop == b.start for a, b in zip(needed, needed[1:])))
    if oldest == time or covered:
        return needed
    held = ", ".join(f"{c.start}-{c.stop}" for c in needed) or "none"
    raise ConfigError(f"the replay directory {directory} holds rows {held} but the checkpoint needs rows "
                      f"{oldest}-{time}; it belongs to another run or lost files: resume from that run's own "
                      "directory or start a new run.")
