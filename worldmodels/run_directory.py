"""The run directory's life: where a run goes, what a resume may continue, what a failed start leaves.
Its files are named in ``worldmodels.run_files``; ``run.lock`` holds the process writing the run (pid
and host), locked with flock while it lives.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import time
from pathlib import Path

import yaml

from worldmodels import run_files
from worldmodels.errors import ConfigError

RUNS = Path("runs")

# What a resume must keep, in the order the first difference is reported: the agent, its environment,
# the hyperparameters that shape learning, and the data it learns from. Everything else (the step
# budget, evaluation, logging, checkpoint and health settings, the trainer) may change on a resume.
CHECKED = ("model.class_path", "data.env", "model.init_args", "data.num_envs", "data.replay_capacity",
           "data.warmup_steps", "data.dataset", "seed_everything")


def resolve_run(name: str, run_dir: str | None, ckpt_path: str | None) -> tuple[Path, Path | None]:
    """The run directory and the checkpoint to resume from (``last``: the newest run named ``name``)."""
    if ckpt_path == "last":
        if run_dir is None:
            candidates = sorted(RUNS.glob(f"{name}-*/{run_files.CHECKPOINTS}/{run_files.LAST_CHECKPOINT}"), key=lambda p: p.stat().st_mtime)
            if not candidates:
                raise ConfigError(f"--ckpt_path last found no checkpoint under {RUNS}/{name}-*; "
                                  "pass --run_dir or the checkpoint's path.")
            return candidates[-1].parent.parent, candidates[-1]
        return Path(run_dir), run_files.last_checkpoint(run_dir)
    if ckpt_path is not None:
        ckpt = Path(ckpt_path)
        return (Path(run_dir) if run_dir else ckpt.resolve().parent.parent), ckpt
    if run_dir is None:
        return RUNS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}", None
    run = Path(run_dir)
    if run_files.last_checkpoint(run).exists():
        raise ConfigError(f"{run} already holds a run; pass --ckpt_path last to resume it or another --run_dir.")
    return run, None


def no_checkpoint_yet(run: Path, checkpoint: Path) -> None:
    """A resume of a run stopped before its first checkpoint: one sentence, with how far it got (the
    furthest env step its metrics name) when that is known. Raised before anything is written."""
    if Path(checkpoint).name != run_files.LAST_CHECKPOINT or not (run / run_files.CONFIG).is_file():
        return  # not a run directory of fit's: the checkpoint loader names the missing file
    reached = max((_steps_of(line, column) for csv in run.glob(run_files.ALL_METRICS)
                   for header, *lines in [csv.read_text().splitlines() or [""]]
                   if "env_steps" in header.split(",") for column in [header.split(",").index("env_steps")]
                   for line in lines), default=float("-inf"))
    where = (f"it was stopped at env step {int(reached)} or later, before its first checkpoint" if reached >= 0
             else "it was stopped before its first checkpoint; how far it got is not recorded")
    raise ConfigError(f"this run has no checkpoint yet ({where}); start it again without --ckpt_path "
                      f"(--run_dir {run}).")


def make_run_directory(run: Path) -> bool:
    """Create ``run`` (one sentence when it cannot be written); True when this call created it."""
    created = not run.exists()
    try:
        run.mkdir(parents=True, exist_ok=True)
        probe = run / ".writable"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise ConfigError(f"the run directory {run} cannot be written ({error.strerror or error}); "
                          "pass a writable --run_dir.") from None
    return created


_held: dict[Path, int] = {}  # run directory -> the descriptor whose flock this process holds


def take_lock(run: Path) -> None:
    """Become the one writer of ``run``: an exclusive ``flock`` on ``<run>/run.lock``, which then holds
    this process's pid and host. The kernel drops the lock when the process ends however it ends (kill
    -9 included), so a lock left by a dead process is taken over. Held by a living process: one
    sentence naming it."""
    path = run / run_files.RUN_LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by the processes a run starts
    for attempt in range(20):  # a reader (lock_holder) holds it for an instant
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            time.sleep(0.05)
    else:
        holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise ConfigError(f"the run directory {run} is being written by another worldmodels.fit ({describe_holder(holder)}); "
                          "wait for it to end or stop it, then resume with --ckpt_path last.")
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
    _held[Path(run)] = fd


def holds_lock(run: Path) -> bool:
    """Whether this process holds ``run``'s lock."""
    return Path(run) in _held


def describe_holder(content: str) -> str:
    """``"<pid> <host>"`` as words."""
    pid, _, host = content.partition(" ")
    return f"pid {pid} on host {host}" if host else content


def lock_holder(run: Path) -> str | None:
    """Who holds ``run``'s lock ("pid N on host H"), or None when no living process does."""
    path = Path(run) / run_files.RUN_LOCK
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return describe_holder(os.read(fd, 200).decode(errors="replace").strip() or "unknown")
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def ensure_run_id(run: Path) -> str:
    """The run's id, made at its start and kept in ``<run>/run_id.txt``: its replay files carry it, so a
    file of another run is refused."""
    path = Path(run) / run_files.RUN_ID
    if not path.is_file():
        import uuid

        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(uuid.uuid4().hex + "\n")
        tmp.replace(path)
    return path.read_text().strip()


def run_id_of(run: Path) -> str | None:
    path = Path(run) / run_files.RUN_ID
    return path.read_text().strip() if path.is_file() else None


def remove_stale_files(run: Path) -> None:
    """Half-written checkpoint files of a run that was killed while writing one."""
    for tmp in run_files.checkpoints_dir(run).glob("*.tmp"):
        tmp.unlink(missing_ok=True)


def remove_failed_start(run: Path) -> None:
    """A run that failed before its first checkpoint leaves nothing behind (its offline W&B run included)."""
    if not run_files.last_checkpoint(run).exists():
        shutil.rmtree(run, ignore_errors=True)


def latest_config(run: Path) -> Path:
    """The config the run last trained under: its newest ``config-resumed-<n>.yaml``, else ``config.yaml``."""
    resumed = sorted(run.glob(run_files.RESUMED_CONFIGS), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    return resumed[-1] if resumed else run / run_files.CONFIG


def _at(config: dict, dotted: str):
    for key in dotted.split("."):
        config = config.get(key) if isinstance(config, dict) else None
    return config


def _first_difference(saved, new, prefix: str) -> tuple[str, object, object] | None:
    """The first key whose value differs. Keys only one side has are not compared: a later version
    may add an option (at a default that keeps the old behaviour) to a run started before it."""
    if isinstance(saved, dict) and isinstance(new, dict):
        for key in [k for k in saved if k in new]:
            found = _first_difference(saved[key], new[key], f"{prefix}.{key}")
            if found:
                return found
        return None
    return None if saved == new else (prefix, saved, new)


def check_resume(run: Path, config_text: str) -> None:
    """Stop a resume whose config differs from the run's in what shapes learning (see ``CHECKED``)."""
    path = latest_config(run)
    if not path.is_file():
        return  # nothing to compare with (a checkpoint copied out of its run): the resume is not checked
    saved, new = yaml.safe_load(path.read_text()) or {}, yaml.safe_load(config_text) or {}
    for key in CHECKED:
        found = _first_difference(_at(saved, key), _at(new, key), key)
        if found:
            name, before, after = found
            raise ConfigError(f"the run in {run} was trained with {name} = {before!r} ({path.name}), this resume "
                              f"asks for {after!r}; resume with the run's own config, or pass --force_resume true "
                              "to continue it under the new one.")


def write_config(run: Path, config_text: str, resumed: bool) -> Path:
    """``config.yaml`` for a new run; ``config-resumed-<n>.yaml`` for its n-th resume."""
    if not resumed:
        path = run / run_files.CONFIG
    else:
        path = run / run_files.resumed_config(len(list(run.glob(run_files.RESUMED_CONFIGS))) + 1)
    path.write_text(config_text)
    return path


def trim_logs_after(run: Path, progress: int, key: str = "env_steps") -> None:
    """Drop the CSV rows an earlier attempt logged after the checkpoint a resume starts from (column
    ``key`` past ``progress``): the resumed run logs those steps again, and each step must appear once."""
    for csv in run.glob(run_files.ALL_METRICS):
        lines = csv.read_text().splitlines(keepends=True)
        header = lines[0].rstrip("\n").split(",") if lines else []
        if key not in header:
            continue
        column = header.index(key)
        kept = [lines[0]] + [line for line in lines[1:] if _steps_of(line, column) <= progress]
        if len(kept) < len(lines):
            tmp = csv.with_name(csv.name + ".tmp")
            tmp.write_text("".join(kept))
            tmp.replace(csv)


def _steps_of(line: str, column: int) -> float:
    try:
        return float(line.split(",")[column])
    except (IndexError, ValueError):
        return float("-inf")  # a row without a step is kept
