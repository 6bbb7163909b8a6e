"""``worldmodels.benchmark``: a grid of tiny runs on catch through submitit's local executor, skipped
when finished, resumed when killed, reported; its one-sentence errors; the SLURM job it would submit."""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT
from worldmodels.benchmark import grid_runs, slurm_parameters

CONFIGS = [str(ROOT / "tests/configs/nddqn_catch.yaml"), str(ROOT / "tests/configs/drq_catch.yaml")]
TINY = ["--", "--data.total_env_steps", "300", "--data.warmup_steps", "200", "--evaluation.final_episodes", "3"]


def benchmark(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), WANDB_MODE="disabled")
    return subprocess.run([sys.executable, "-m", "worldmodels.benchmark", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_a_grid_is_every_config_on_every_task_with_every_seed_each_in_its_own_folder(tmp_path):
    runs = grid_runs([Path("a.yaml"), Path("b.yaml")], ["pong", "boxing"], [0, 1, 2], tmp_path)
    assert len(runs) == 12 and len({r.directory for r in runs}) == 12
    assert {(r.config.name, r.task, r.seed) for r in runs} == {
        (c, t, s) for c in ("a.yaml", "b.yaml") for t in ("pong", "boxing") for s in (0, 1, 2)}
    assert all(r.directory == tmp_path / f"{r.config.stem}-{r.task}-s{r.seed}" for r in runs)


@pytest.mark.integration
def test_a_grid_of_two_configs_runs_two_at_a_time_then_skips_finished_runs_and_reports(tmp_path):
    """Two configs on seed 1 (not the configs' seed 0): one round of two runs side by side. The grid's
    product of configs, tasks and seeds is the test above, without fits."""
    out = tmp_path / "grid"
    grid = ["--configs", *CONFIGS, "--tasks", "catch", "--seeds", "1", "--out", str(out), "--jobs", "2",
            "--poll", "0.5", *TINY]
    done = benchmark(*grid, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    starts = [i for i, line in enumerate(lines) if " starting " in line]
    assert len(starts) == 2 and max(starts) < min(i for i, line in enumerate(lines) if " finished " in line)
    for agent in ("nddqn_catch", "drq_catch"):
        record = json.loads((out / f"{agent}-catch-s1" / "eval-final.json").read_text())
        assert record["env_steps"] == 300 and record["episodes"] == 3 and record["seed"] == 1
    report = (out / "comparison.md").read_text()
    assert "| catch | nddqn_catch | 1 |" in report and "| catch | drq_catch | 1 |" in report
    # The same command again: every run is finished, nothing is run again.
    again = benchmark(*grid, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count(" finished ") == 2 and "starting" not in again.stdout
    assert not list(out.glob("*/csv-resumed-*"))


@pytest.mark.integration
def test_a_run_killed_mid_way_resumes_from_its_last_checkpoint(tmp_path):
    out = tmp_path / "grid"
    grid = ["--configs", CONFIGS[0], "--tasks", "catch", "--seeds", "0", "--out", str(out), "--poll", "0.5", "--",
            "--data.total_env_steps", "400", "--data.warmup_steps", "200", "--checkpoint.every_env_steps", "200",
            "--evaluation.final_episodes", "3"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), WANDB_MODE="disabled")
    runner = subprocess.Popen([sys.executable, "-m", "worldmodels.benchmark", *grid], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run = out / "nddqn_catch-catch-s0"
    deadline = time.time() + 300
    while not (run / "checkpoints" / "last.ckpt").exists():
        assert time.time() < deadline and runner.poll() is None, "no checkpoint appeared"
        time.sleep(0.2)
    subprocess.run(["pkill", "-9", "-f", f"run_dir {run}"], check=True)  # the fit process, mid-run
    output, _ = runner.communicate(timeout=120)
    assert "failed (-9)" in output and not (run / "eval-final.json").exists()
    resumed = benchmark(*grid, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stdout
    assert list(run.glob("csv-resumed-*/metrics.csv"))  # a resumed run writes its metrics beside the first
    assert json.loads((run / "eval-final.json").read_text())["env_steps"] == 400


@pytest.mark.integration
def test_a_killed_runner_run_again_never_starts_a_second_fit_on_a_run_still_being_written(tmp_path):
    """kill -9 of the runner leaves its fit running (an orphan); the runner run again finds it through
    the run's lock, does not start it a second time, and reports it once it has finished."""
    out = tmp_path / "grid"
    grid = ["--configs", CONFIGS[0], "--tasks", "catch", "--seeds", "0", "--out", str(out), "--poll", "0.5", "--",
            "--data.total_env_steps", "400", "--data.warmup_steps", "200", "--evaluation.final_episodes", "3"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), WANDB_MODE="disabled")
    runner = subprocess.Popen([sys.executable, "-m", "worldmodels.benchmark", *grid], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = out / "nddqn_catch-catch-s0"
    deadline = time.time() + 300
    while not (run / "config.yaml").exists():  # the fit has started (and taken its lock)
        assert time.time() < deadline and runner.poll() is None, "the run did not start"
        time.sleep(0.2)
    runner.kill()  # kill -9 of the runner alone: its fit goes on
    runner.wait()
    again = benchmark(*grid, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "not started again" in again.stdout and "resuming" not in again.stdout
    assert not list(run.glob("config-resumed-*.yaml")) and not list(run.glob("csv-resumed-*"))  # one fit wrote it
    assert json.loads((run / "eval-final.json").read_text())["env_steps"] == 400
    starts = sorted((int(p.name.split("-")[1]), int(p.name.split("-")[2][:-3])) for p in run.glob("replay/rows-*.pt"))
    assert all(a[1] == b[0] for a, b in zip(starts, starts[1:])), starts  # no overlapping replay files


def test_the_runner_starts_without_importing_torch():
    """The runner and its job processes only start fits: on a machine whose launcher names no rank or
    visible GPUs, importing them leaves torch (seconds of a core) unimported."""
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "SLURM_LOCALID", "CUDA_VISIBLE_DEVICES")}
    done = subprocess.run([sys.executable, "-c", "import sys, worldmodels.benchmark; print('torch' in sys.modules)"],
                          cwd=ROOT, env=dict(env, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr[-2000:]


@pytest.mark.parametrize("args, expected", [
    (["--configs", "configs/nothing.yaml", "--tasks", "catch"], "nothing.yaml does not exist"),
    (["--configs", "configs/drq_atari.yaml", "--tasks", "boxingg"], "'boxingg' is not an Atari game"),
    (["--configs", "tests/configs/nddqn_catch.yaml", "--tasks", "pong"], "env.task 'pong'"),
    (["--configs", "configs/drq_atari.yaml", "--tasks", "boxing", "--seeds", "-1"], "seeds must not be negative"),
    (["--configs", "configs/drq_atari.yaml", "--tasks", "boxing", "--jobs", "0"], "--jobs is 0"),
])
def test_bad_grids_stop_with_one_sentence(tmp_path, args, expected):
    args = [str(ROOT / a) if a.startswith(("configs/", "tests/")) else a for a in args]
    done = benchmark(*args, "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    (line,) = [l for l in done.stderr.splitlines() if l.startswith("error:")]
    assert expected in line


def test_an_out_folder_holding_another_grid_is_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "grid.json").write_text(json.dumps({"configs": [CONFIGS[1]], "fit_args": []}))
    done = benchmark("--configs", CONFIGS[0], "--tasks", "catch", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 2 and "holds runs of another grid" in done.stderr and "Traceback" not in done.stderr


def test_the_slurm_job_asks_for_the_partition_gpus_and_time_of_one_run():
    from submitit.slurm.slurm import SlurmExecutor, _make_sbatch_string

    args = argparse.Namespace(partition="gpu", time=720, gpus_per_run=1, cpus_per_run=8)
    params = slurm_parameters(args)
    assert set(params) <= set(SlurmExecutor._valid_parameters())  # what update_parameters accepts
    script = _make_sbatch_string(command="python -m worldmodels.fit", folder="/tmp/jobs", **params)
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1", "#SBATCH --time=720",
                 "#SBATCH --cpus-per-task=8", "#SBATCH --job-name=worldmodels"):
        assert line in script
