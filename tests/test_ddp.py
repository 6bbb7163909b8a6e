"""Training on several processes: Lightning's DDP with two CPU processes over gloo, as a run on two
GPUs would start (``--trainer.devices 2``), checked from what the run leaves on disk."""

from pathlib import Path

import json

import pytest
import torch

from conftest import ROOT, made_once
from test_faults import one_sentence, run
from test_fit import DMC_SUITE_OVERRIDES
from worldmodels.training import AtomicCheckpointIO

pytestmark = pytest.mark.integration

TWO_PROCESSES = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]
CATCH = ["--config", str(ROOT / "tests/configs/faults_catch.yaml")]  # NDDQN: 500 env steps, 200 of warm-up


def checkpoint(run_dir: Path) -> dict:
    return AtomicCheckpointIO().load_checkpoint(run_dir / "checkpoints" / "last.ckpt")


def rows(replay_dir: Path) -> dict:
    chunks = [torch.load(p, weights_only=True) for p in sorted(replay_dir.glob("rows-*.pt"))]
    return {"frames": torch.cat([c["frames"] for c in chunks]),
            **{k: torch.cat([c["steps"][k] for c in chunks]) for k in chunks[0]["steps"]}}


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory) -> Path:
    """The shipped NDDQN config's smoke run (Atari Pong) on two processes: 200 env steps of warm-up,
    then 6 updates; every process's calls of torch.distributed's collectives counted into
    ``<run>/../collectives`` (tests/collective_counter). Made once for all workers."""
    return made_once(tmp_path_factory, "ddp", make_two_process_run) / "run"


def make_two_process_run(tmp: Path) -> None:
    (tmp / "collectives").mkdir()
    counting = {"PYTHONPATH": f"{ROOT / 'tests/collective_counter'}:{ROOT}", "COUNT_COLLECTIVES_TO": str(tmp / "collectives"),
                "WANDB_MODE": "offline"}  # its W&B folder is one of the run files only the first process writes
    done = run(tmp, "--config", str(ROOT / "configs/nddqn_atari.yaml"), "--config", str(ROOT / "configs/smoke.yaml"),
               *TWO_PROCESSES, "--run_dir", str(tmp / "run"), env=counting)
    assert done.returncode == 0, done.stderr[-3000:]


def test_two_processes_count_the_runs_env_steps_together_and_make_equal_shares_of_its_updates(two_process_run):
    rank0, rank1 = checkpoint(two_process_run)["Experience"]["ranks"]
    # The env steps are the run's, counted by both processes together, exchanged every 16 vector steps
    # (2 x 16 = 32 env steps; Pong's games outlast the run, so no reset step falls in it): the warm-up
    # of 200 ends at the exchange at 224, which owes (224 - 200) x 1 update per env step, shared by the
    # two (each takes half, of its own batch): 12 each, more than the smoke run's 6, where it stops.
    assert rank0["counters"]["env_steps"] == rank1["counters"]["env_steps"] == 224
    assert rank0["counters"]["updates"] == rank1["counters"]["updates"] == 6
    # Each process stepped half of them (reset frames are stored but are not env steps), and had none
    # left to exchange.
    for rank in (rank0, rank1):
        assert 112 <= rank["replay"]["time"] <= 112 + 2 and rank["uncounted_env_steps"] == 0


def test_the_processes_make_no_collective_per_env_step(two_process_run):
    # Counting every env step over the ranks would take one all-reduce per vector step (112 per
    # process); exchanged every 16 vector steps it takes 7, beside the collectives of set-up, the
    # 6 updates, the checkpoint and the final evaluation.
    counts = [json.loads(p.read_text()) for p in (two_process_run.parent / "collectives").glob("*.json")]
    per_process = [sum(c.values()) for c in counts if c]
    assert len(per_process) == 2, counts
    assert all(0 < calls < 112 // 2 for calls in per_process), counts


def test_the_processes_collect_different_data(two_process_run):
    first, second = rows(two_process_run / "replay"), rows(two_process_run / "replay-rank1")
    n = min(len(first["action"]), len(second["action"]))
    assert not torch.equal(first["action"][:n], second["action"][:n])  # their own random warm-up actions
    assert not torch.equal(first["frames"][:n], second["frames"][:n])  # their own games
    generators = checkpoint(two_process_run)["agent_generators"]["ranks"]
    assert not torch.equal(generators[0]["explore_generator"], generators[1]["explore_generator"])


def test_the_processes_hold_identical_weights_after_their_updates(two_process_run):
    saved = checkpoint(two_process_run)
    rank0, rank1 = saved["Experience"]["ranks"]
    assert rank0["weights"] == rank1["weights"]  # bit for bit, after updates on different data
    # The fingerprint is of the weights saved: its first number per tensor is the tensor's sum.
    assert rank0["weights"][0::2] == [float(t.double().sum()) for t in saved["state_dict"].values()]


def test_only_the_first_process_writes_the_run_files(two_process_run):
    names = sorted(p.name for p in two_process_run.iterdir())
    assert names == ["checkpoints", "config.yaml", "csv", "eval-final.json", "replay", "replay-rank1", "run.lock",
                     "run_id.txt", "wandb", "wandb_id.txt"], names


def test_a_killed_two_process_run_resumes_each_process_from_the_last_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    killed = run(tmp_path, *CATCH, *TWO_PROCESSES, "--run_dir", str(run_dir), fault=("kill_at_env_step", 300))
    assert killed.returncode != 0
    before = checkpoint(run_dir)["Experience"]["ranks"]
    # Saved every 100 env steps, at the first exchange of the ranks' counts (every 2 x 16 vector steps,
    # reset steps not counted) that reaches 200.
    saved_at = before[0]["counters"]["env_steps"]
    assert before[1]["counters"]["env_steps"] == saved_at and 200 <= saved_at < 200 + 32

    # On one process instead of two, the resume stops at once with one sentence.
    line = one_sentence(run(tmp_path, *CATCH, "--run_dir", str(run_dir), "--ckpt_path", "last"))
    assert "written by a run of 2 process(es)" in line

    resumed = run(tmp_path, *CATCH, *TWO_PROCESSES, "--run_dir", str(run_dir), "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = checkpoint(run_dir)["Experience"]["ranks"]
    ended_at = after[0]["counters"]["env_steps"]
    assert after[1]["counters"]["env_steps"] == ended_at and 500 <= ended_at < 500 + 32
    # One update per env step after the 200 of warm-up, half of them on each process.
    assert [r["counters"]["updates"] for r in after] == [(ended_at - 200) // 2] * 2
    assert after[0]["weights"] == after[1]["weights"]
    for rank, replay_dir in enumerate([run_dir / "replay", run_dir / "replay-rank1"]):
        # Each process continued its own replay after the rows it had saved.
        assert after[rank]["replay"]["time"] > before[rank]["replay"]["time"]
        assert len(rows(replay_dir)["action"]) == after[rank]["replay"]["time"]


@pytest.mark.parametrize("config, flags", [  # nddqn_atari's is the module's two_process_run
    ("configs/drqv2_dmc.yaml", DMC_SUITE_OVERRIDES),  # as the one-process smoke runs
    ("configs/sac_gym_pendulum.yaml", ["--model.init_args.batch_size", "32"]),  # a state vector (Gymnasium)
    # size XS on 4 sequences of 16 steps: with the config's 16 x 64 this was the quick subset's slowest
    # test (62 s; 22 s now);
    # a health check at update 2, on the first process alone (its return scale must not wait for the other)
    ("configs/dreamer_dmc.yaml", ["--model.init_args.size", "XS", "--model.init_args.batch_size", "4",
                                  "--model.init_args.seq_len", "16", "--data.max_updates", "3",
                                  "--health.every_updates", "2"]),
])
def test_shipped_configs_train_on_two_processes(tmp_path, config, flags):
    done = run(tmp_path, "--config", str(ROOT / config), "--config", str(ROOT / "configs/smoke.yaml"), *flags,
               *TWO_PROCESSES, "--run_dir", str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = checkpoint(tmp_path / "run")["Experience"]["ranks"]
    assert rank0["counters"] == rank1["counters"] and rank0["counters"]["updates"] > 0
    assert rank0["weights"] == rank1["weights"]
    assert (tmp_path / "run" / "eval-final.json").is_file()
    header = (tmp_path / "run" / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "health/" in header  # the first process's health check ran while the other trained on
