"""Run a grid of (config x task x seed) as independent ``worldmodels.fit`` runs, and report it.

    python -m worldmodels.benchmark --configs configs/drq_atari.yaml configs/nddqn_atari.yaml \\
        --tasks boxing krull --seeds 0 1 2 --out ~/runs/atari100k --jobs 2
    python -m worldmodels.benchmark --out ~/runs/atari100k --report          # the report alone
    python -m worldmodels.benchmark ... --cluster slurm --partition gpu --gpus-per-run 1 --time 720

Each run is one ``fit`` process in ``<out>/<config>-<task>-s<seed>``, submitted through submitit: its
local executor on this machine (``--jobs`` at a time, one torch thread each), its SLURM executor on a
cluster, through the same code. Re-running the same command skips finished runs (those with
``eval-final.json``, their evaluation at the end) and resumes interrupted ones from their last
checkpoint. A run whose directory is locked by a living ``fit`` (``<run>/run.lock``: one started by an
earlier runner that was killed, or by hand) is not started again: its line says who holds it, and it
is watched until that process ends, then finished or resumed. While it works it prints one line per run (state, env steps, last score); at the end, or
with ``--report`` alone, it writes ``worldmodels.analysis.compare``'s table and plots into ``--out``, with the
published Atari 100k columns.

Fit flags after ``--`` go to every run (``-- --config configs/smoke.yaml``); they are part of the grid's
identity, kept in ``<out>/grid.json``: an ``--out`` that holds runs of other configs or flags is refused.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from worldmodels import run_files
from worldmodels.errors import ConfigError
from worldmodels.run_directory import lock_holder
from worldmodels.run_files import FINAL_EVALUATION

GRID_FILE = "grid.json"


@dataclass(frozen=True)
class Run:
    config: Path
    task: str
    seed: int
    directory: Path

    @property
    def name(self) -> str:
        return self.directory.name

    @property
    def checkpoint(self) -> Path:
        return run_files.last_checkpoint(self.directory)

    def state(self) -> str:
        """``finished`` (evaluated at the end), ``interrupted`` (a checkpoint to resume) or ``new``."""
        if (self.directory / FINAL_EVALUATION).is_file():
            return "finished"
        return "interrupted" if self.checkpoint.is_file() else "new"

    def fit_command(self, fit_args: list[str]) -> list[str]:
        """The ``fit`` command line of this run: a fresh start, or a resume from its last checkpoint."""
        resume = ["--ckpt_path", "last"] if self.checkpoint.is_file() else []
        return [sys.executable, "-m", "worldmodels.fit", "--config", str(self.config), "--data.env.task", self.task,
                "--seed_everything", str(self.seed), "--data.progress_bar", "false", *fit_args,
                "--run_dir", str(self.directory), *resume]

    def progress(self) -> tuple[int | None, float | None]:
        """(env steps, last score) as far as the run's metrics say: the final evaluation's mean once
        there is one, else the last training episode's return."""
        final = self.directory / FINAL_EVALUATION
        if final.is_file():
            record = json.loads(final.read_text())
            return record.get("env_steps"), record.get("mean")
        steps = score = None
        for path in sorted(self.directory.glob(run_files.ALL_METRICS), key=lambda p: p.stat().st_mtime):
            with path.open(newline="") as f:
                for row in csv.DictReader(f):
                    if row.get("env_steps"):
                        steps = int(float(row["env_steps"]))
                    if row.get("train/episode_return"):
                        score = float(row["train/episode_return"])
        return steps, score


def grid_runs(configs: list[Path], tasks: list[str], seeds: list[int], out: Path) -> list[Run]:
    return [Run(config.resolve(), task, seed, out / f"{config.stem}-{task}-s{seed}")
            for config in configs for task in tasks for seed in seeds]


class FitJob:
    """One run as a submitit job: runs ``fit`` to the end in a child process, its output in the run's
    ``fit.log``. Checkpointable: when SLURM preempts or times the job out, submitit requeues it, and
    the requeued job resumes from the run's last checkpoint (its command is made when it starts)."""

    def __init__(self, run: Run, fit_args: list[str]):
        self.run, self.fit_args = run, fit_args

    def __call__(self) -> int:
        self.run.directory.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        with open(self.run.directory.parent / f"{self.run.name}.log", "a") as log:
            return subprocess.run(self.run.fit_command(self.fit_args), stdout=log, stderr=subprocess.STDOUT,
                                  env=env).returncode

    def checkpoint(self):
        import submitit

        return submitit.helpers.DelayedSubmission(FitJob(self.run, self.fit_args))


class HeldElsewhere:
    """A run another living ``fit`` is writing (its lock is held): watched, never started a second time."""

    def __init__(self, run: Run):
        self.run = run

    def done(self) -> bool:
        return lock_holder(self.run.directory) is None


# ----------------------------------------------------------------------------- executors
def slurm_parameters(args: argparse.Namespace) -> dict:
    """submitit SlurmExecutor parameters of one run (one task, ``--gpus-per-run`` GPUs, ``--time`` minutes)."""
    params = {"partition": args.partition, "time": args.time, "gpus_per_node": args.gpus_per_run,
              "cpus_per_task": args.cpus_per_run, "job_name": "worldmodels"}
    return {k: v for k, v in params.items() if v is not None}


def make_executor(args: argparse.Namespace, folder: Path):
    import submitit

    if args.cluster == "slurm":
        executor = submitit.SlurmExecutor(folder=folder)
        executor.update_parameters(**slurm_parameters(args))
    else:
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=args.time or 60 * 24 * 30)
    return executor


# ----------------------------------------------------------------------------- checks
def check_grid(args: argparse.Namespace, fit_args: list[str]) -> list[Path]:
    configs = [Path(c) for c in args.configs]
    for config in configs:
        if not config.is_file():
            raise ConfigError(f"config {config} does not exist; pass files such as configs/drq_atari.yaml.")
    if not args.tasks:
        raise ConfigError("--tasks is empty; name at least one task, e.g. --tasks boxing.")
    if any(seed < 0 for seed in args.seeds):
        raise ConfigError(f"--seeds {' '.join(map(str, args.seeds))}: seeds must not be negative.")
    if args.jobs < 1:
        raise ConfigError(f"--jobs is {args.jobs}; run at least one at a time.")
    if len({c.stem for c in configs}) < len(configs):
        raise ConfigError("two --configs share a file name; runs are named by it, so rename one.")
    for config in configs:  # an unknown task gets fit's own sentence now, not hours later in a log
        for task in args.tasks:
            check_task(config, task)
    return configs


def check_task(config: Path, task: str) -> None:
    """Build the task's environment once, as ``fit`` would: an unknown task fails here with fit's sentence."""
    import yaml

    from worldmodels.envs import EnvConfig, make_env

    env = ((yaml.safe_load(config.read_text()) or {}).get("data") or {}).get("env") or {}
    try:
        make_env(EnvConfig(**{**env, "task": task})).close()
    except TypeError as error:
        raise ConfigError(f"{config}'s data.env cannot be read ({error}).") from None


def claim_out(out: Path, configs: list[Path], fit_args: list[str]) -> None:
    """Record the grid (its configs and fit flags) in ``<out>/grid.json``, or refuse an ``--out`` that
    holds another grid. Tasks and seeds may be added to a grid."""
    grid = {"configs": sorted(str(c.resolve()) for c in configs), "fit_args": fit_args}
    path = out / GRID_FILE
    if path.is_file():
        held = json.loads(path.read_text())
        if held != grid:
            raise ConfigError(f"{out} holds runs of another grid (configs {', '.join(held['configs'])}; fit flags "
                              f"{' '.join(held['fit_args']) or 'none'}); pass another --out.")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(grid, indent=2) + "\n")


# ----------------------------------------------------------------------------- the loop
def status_line(run: Run, state: str) -> str:
    steps, score = run.progress()
    steps_text = "-" if steps is None else str(steps)
    score_text = "-" if score is None else f"{score:.1f}"
    return f"{run.name:40s} {state:11s} env steps {steps_text:>7s}  last score {score_text}"


def run_grid(runs: list[Run], fit_args: list[str], executor, jobs: int, poll_s: float = 30.0) -> dict[str, str]:
    """Keep ``jobs`` runs going until all are finished; returns each run's final state."""
    pending = [r for r in runs if r.state() != "finished"]
    for run in runs:
        if run.state() == "finished":
            print(status_line(run, "finished"), flush=True)
    outcome = {r.name: "finished" for r in runs if r.state() == "finished"}
    active: dict[str, tuple[Run, object]] = {}
    last_report = 0.0
    while pending or active:
        while pending and len(active) < jobs:
            run = pending.pop(0)
            holder = lock_holder(run.directory)
            if holder is not None:  # a fit this runner did not start is writing it: watch, never start a second
                print(status_line(run, "locked") + f"; written by {holder}, not started again", flush=True)
                active[run.name] = (run, HeldElsewhere(run))
                continue
            print(status_line(run, "resuming" if run.state() == "interrupted" else "starting"), flush=True)
            active[run.name] = (run, executor.submit(FitJob(run, fit_args)))
        time.sleep(poll_s)
        for name, (run, job) in list(active.items()):
            if job.done():
                del active[name]
                if isinstance(job, HeldElsewhere):  # its writer ended: done, or to be resumed by this runner
                    if run.state() == "finished":
                        outcome[name] = "finished"
                        print(status_line(run, "finished"), flush=True)
                    else:
                        pending.append(run)
                    continue
                code = job.result()
                outcome[name] = run.state() if code == 0 else f"failed ({code})"
                print(status_line(run, outcome[name]) + ("" if code == 0 else f"; see {run.name}.log"), flush=True)
        if active and time.monotonic() - last_report > max(poll_s, 60):
            last_report = time.monotonic()
            for run, _ in active.values():
                print(status_line(run, "running"), flush=True)
    return outcome


def report(out: Path) -> Path | None:
    from worldmodels.analysis.compare import compare

    if not out.is_dir():
        raise ConfigError(f"{out} does not exist; pass the --out folder of a grid.")
    runs = sorted(p.parent for p in out.glob(f"*/{FINAL_EVALUATION}"))
    if not runs:
        print(f"no run under {out} has finished yet; no report.")
        return None
    written = compare(runs, out)
    print(f"wrote {written}")
    return written


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    argv = list(sys.argv[1:] if argv is None else argv)
    fit_args = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(prog="python -m worldmodels.benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=[], help="config files, one agent each")
    parser.add_argument("--tasks", nargs="+", default=[], help="tasks (data.env.task), e.g. boxing krull")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--out", type=Path, required=True, help="folder of the grid's run directories")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time on this machine (local executor)")
    parser.add_argument("--report", action="store_true", help="only write the report of the runs in --out")
    parser.add_argument("--cluster", choices=["local", "slurm"], default="local")
    parser.add_argument("--partition", default=None, help="SLURM partition")
    parser.add_argument("--gpus-per-run", type=int, default=None, help="SLURM GPUs per run")
    parser.add_argument("--cpus-per-run", type=int, default=None, help="SLURM CPUs per run")
    parser.add_argument("--time", type=int, default=None, help="SLURM time limit per job, minutes")
    parser.add_argument("--poll", type=float, default=30.0, help="seconds between checks on the runs")
    return parser.parse_args(argv), fit_args


def main(argv: list[str] | None = None) -> dict[str, str] | None:
    args, fit_args = parse_args(argv)
    try:
        out = args.out.expanduser()
        if args.report:
            report(out)
            return None
        if not args.configs:
            raise ConfigError("--configs is empty; pass config files, or --report alone for the report.")
        configs = check_grid(args, fit_args)
        claim_out(out, configs, fit_args)
        runs = grid_runs(configs, args.tasks, args.seeds, out)
        outcome = run_grid(runs, fit_args, make_executor(args, out / ".submitit"), args.jobs, args.poll)
        report(out)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    return outcome


if __name__ == "__main__":
    main()
