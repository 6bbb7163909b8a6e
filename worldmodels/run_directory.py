"""The run directory's life: where a run goes, what a resume may continue, what a failed start leaves.

    <run>/config.yaml              the config the run was started with (never overwritten)
    <run>/config-resumed-<n>.yaml  the config of its n-th resume
    <run>/checkpoints/last.ckpt    weights, optimizers, counters and RNG states (no replay)
    <run>/replay/rows-*.pt         the replay, appended at each checkpoint (worldmodels/replay/chunks.py)
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import yaml

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
            candidates = sorted(RUNS.glob(f"{name}-*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
            if not candidates:
                raise ConfigError(f"--ckpt_path last found no checkpoint under {RUNS}/{name}-*; "
                                  "pass --run_dir or the checkpoint's path.")
            return candidates[-1].parent.parent, candidates[-1]
        return Path(run_dir), Path(run_dir) / "checkpoints" / "last.ckpt"
    if ckpt_path is not None:
        ckpt = Path(ckpt_path)
        return (Path(run_dir) if run_dir else ckpt.resolve().parent.parent), ckpt
    if run_dir is None:
        return RUNS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}", None
    run = Path(run_dir)
    if (run / "checkpoints" / "last.ckpt").exists():
        raise ConfigError(f"{run} already holds a run; pass --ckpt_path last to resume it or another --run_dir.")
    return run, None


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


def remove_stale_files(run: Path) -> None:
    """Half-written checkpoint files of a run that was killed while writing one."""
    for tmp in (run / "checkpoints").glob("*.tmp"):
        tmp.unlink(missing_ok=True)


def remove_failed_start(run: Path) -> None:
    """A run that failed before its first checkpoint leaves nothing behind (its offline W&B run included)."""
    if not (run / "checkpoints" / "last.ckpt").exists():
        shutil.rmtree(run, ignore_errors=True)


def latest_config(run: Path) -> Path:
    """The config the run last trained under: its newest ``config-resumed-<n>.yaml``, else ``config.yaml``."""
    resumed = sorted(run.glob("config-resumed-*.yaml"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    return resumed[-1] if resumed else run / "config.yaml"


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
        path = run / "config.yaml"
    else:
        n = len(list(run.glob("config-resumed-*.yaml"))) + 1
        path = run / f"config-resumed-{n}.yaml"
    path.write_text(config_text)
    return path


def trim_logs_after(run: Path, progress: int, key: str = "env_steps") -> None:
    """Drop the CSV rows an earlier attempt logged after the checkpoint a resume starts from (column
    ``key`` past ``progress``): the resumed run logs those steps again, and each step must appear once."""
    for csv in run.glob("csv*/metrics.csv"):
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
