"""Fault injection on small real runs: kill -9 at several points (during checkpoint and replay writes
too), Ctrl-C, mismatched resumes and bad input. After each fault a resume must continue exactly: its
counters and replay rows equal those of an uninterrupted run. Every bad input gets one sentence.

The runs are tests/configs/faults_catch.yaml (NDDQN on catch, 500 env steps, a checkpoint every 100);
the faults are injected by tests/fault_injection.py. NaN injection is tests/test_guard.py's run."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import FORK_SERVER, ROOT, differences, made_once
from worldmodels.errors import ConfigError
from worldmodels.replay import Replay
from worldmodels.replay.dataset import open_dataset
from worldmodels.training import AtomicCheckpointIO

pytestmark = pytest.mark.integration

CONFIG = ["--config", str(ROOT / "tests/configs/faults_catch.yaml")]
CONTINUOUS = ["--config", str(ROOT / "tests/configs/faults_reach.yaml")]  # DrQ-v2, half an update per step
DICT_OBS = [*CONFIG, "--data.env.observation", "both"]  # catch as a dict: a 44 px image and a 24-value state


def run(tmp_path, *args, fault=None, env=None):
    """worldmodels.fit (through the fault driver when ``fault`` is (name, n)) in ``tmp_path``. W&B is
    disabled unless ``env`` says otherwise: starting its offline service costs each run seconds, and
    what W&B records is checked by the smoke runs of tests/test_fit.py."""
    driver = [str(ROOT / "tests/fault_injection.py"), fault[0], str(fault[1]), "--"] if fault else ["-m", "worldmodels.fit"]
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled", **(env or {})}
    return FORK_SERVER.run([*driver, *args], cwd=tmp_path, env=environ, timeout=600)


def one_sentence(done) -> str:
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    (line,) = [l for l in done.stderr.splitlines() if l.startswith("error:")]
    return line


def state(run_dir) -> dict:
    return AtomicCheckpointIO().load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["Experience"]


def replay_rows(run_dir) -> dict:
    """Every stored row, in order: ``frames`` (one tensor, or one per key of a dict observation) and the
    step fields."""
    chunks = [torch.load(p, weights_only=True) for p in sorted((run_dir / "replay").glob("rows-*.pt"))]
    frames = ({k: torch.cat([c["frames"][k] for c in chunks]) for k in chunks[0]["frames"]}
              if isinstance(chunks[0]["frames"], dict) else torch.cat([c["frames"] for c in chunks]))
    return {"frames": frames, **{k: torch.cat([c["steps"][k] for c in chunks]) for k in chunks[0]["steps"]}}


def frames_equal(ours, reference, rows: int) -> bool:
    """The first ``rows`` frames equal, for every key of a dict observation."""
    if isinstance(ours, dict):
        return set(ours) == set(reference) and all(torch.equal(ours[k][:rows], reference[k][:rows]) for k in ours)
    return torch.equal(ours[:rows], reference[:rows])


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """The reference runs, never interrupted, one per config (made when first asked for, once for all
    workers)."""

    def make(config: list[str], tmp: Path) -> None:
        done = run(tmp, *config, "--run_dir", str(tmp / "run"))
        assert done.returncode == 0, done.stderr[-3000:]

    def reference(config: list[str]) -> Path:
        name = "uninterrupted-" + "-".join(Path(a).stem if a.endswith(".yaml") else a.strip("-.") for a in config[1:])
        return made_once(tmp_path_factory, name, lambda tmp: make(config, tmp)) / "run"

    return reference


@pytest.fixture
def uninterrupted(references):
    return references(CONFIG)


@pytest.mark.parametrize("config, fault, resumes_from", [
    (CONFIG, ("kill_at_env_step", 450), 400),  # mid-training, between two checkpoints
    (CONFIG, ("kill_at_env_step", 150), 100),  # in the warm-up, which checkpoints too
    (CONFIG, ("kill_in_checkpoint", 4), 300),  # while writing the checkpoint at 400: last.ckpt stays the one at 300
    (CONFIG, ("kill_in_replay_write", 4), 300),  # while appending the rows for the checkpoint at 400
    (CONTINUOUS, ("kill_at_env_step", 255), 200),  # another agent, its own generators, half an update per step
    (DICT_OBS, ("kill_at_env_step", 450), 400),  # dict observations: every key's rows
], ids=["mid-training", "warm-up", "checkpoint-write", "replay-write", "drqv2-half-ratio", "dict-observations"])
def test_a_run_killed_anywhere_resumes_to_the_counters_and_replay_of_an_uninterrupted_run(
        tmp_path, references, config, fault, resumes_from):
    uninterrupted = references(config)
    run_dir = tmp_path / "run"
    killed = run(tmp_path, *config, "--run_dir", str(run_dir), fault=fault)
    assert killed.returncode == -9
    at_kill = state(run_dir)
    assert at_kill["counters"]["env_steps"] == resumes_from  # the previous checkpoint is intact
    cursor = at_kill["replay"]["time"]  # rows: each env step's frame and each episode's first frame
    resumed = run(tmp_path, *config, "--run_dir", str(run_dir), "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    ours, reference = state(run_dir), state(uninterrupted)
    for counter in ("env_steps", "frames", "updates"):  # no update lost or repeated across the resume
        assert ours["counters"][counter] == reference["counters"][counter], counter
    # The rows written before the checkpoint are the uninterrupted run's rows; then the resumed run
    # starts new episodes (environments cannot be checkpointed).
    rows, ref = replay_rows(run_dir), replay_rows(uninterrupted)
    assert len(rows["action"]) == ours["replay"]["time"]
    assert frames_equal(rows["frames"], ref["frames"], cursor)
    for field in ("action", "reward", "first", "terminal", "episode"):
        assert torch.equal(rows[field][:cursor], ref[field][:cursor]), field
    assert rows["first"][cursor].all()
    replay = open_dataset(run_dir).replay  # as a second resume reads it
    replay.load_state_dict(ours["replay"], run_dir / "replay")
    assert replay.steps(torch.tensor([cursor - 1]), torch.tensor([0]))["last"].all()  # the interrupted episode
    assert not list(run_dir.rglob("*.tmp"))  # half-written files of the killed run are gone
    # Each env step's metrics appear once: the killed run's rows past its checkpoint were dropped.
    first_csv = run_dir / "csv" / "metrics.csv"  # none when the run was killed before its first metric
    lines = first_csv.read_text().splitlines() if first_csv.exists() else []
    if lines:
        column = lines[0].split(",").index("env_steps")
        assert max(float(line.split(",")[column]) for line in lines[1:]) <= resumes_from


@pytest.mark.parametrize("fault, code", [("sigint_at_env_step", 130), ("sigterm_at_env_step", 143)],
                         ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_saves_a_checkpoint_exits_128_plus_the_signal_and_the_run_resumes(tmp_path, uninterrupted,
                                                                                             fault, code):
    run_dir = tmp_path / "run"
    stopped = run(tmp_path, *CONFIG, "--run_dir", str(run_dir), fault=(fault, 333))
    assert stopped.returncode == code, stopped.stderr[-2000:]
    assert "Interrupted: saved" in stopped.stdout
    assert state(run_dir)["counters"]["env_steps"] == 333
    resumed = run(tmp_path, *CONFIG, "--run_dir", str(run_dir), "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert state(run_dir)["counters"]["updates"] == state(uninterrupted)["counters"]["updates"]


def test_ctrl_c_during_start_up_exits_130_with_one_line_and_leaves_nothing(tmp_path):
    stopped = run(tmp_path, *CONFIG, "--run_dir", str(tmp_path / "run"), fault=("sigint_in_startup", 0))
    assert stopped.returncode == 130, stopped.stderr[-2000:]
    assert "Traceback" not in stopped.stderr
    assert "interrupted (Ctrl-C) during start-up, before training began; nothing was written." in stopped.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flags, first_difference", [
    (["--data.env.task", "reach"], "data.env.task = 'catch'"),  # another game
    (["--model", "model_free.SAC"], "model.class_path = 'model_free.Rainbow'"),  # another agent
    (["--model.init_args.gamma", "0.9"], "model.init_args.gamma = 0.99"),
])
def test_a_resume_under_another_agent_game_or_hyperparameter_stops_naming_the_key(tmp_path, uninterrupted, flags,
                                                                                   first_difference):
    run_dir = tmp_path / "run"
    shutil.copytree(uninterrupted, run_dir)  # a copy: the other workers read the reference meanwhile
    done = run(tmp_path, *CONFIG, "--run_dir", str(run_dir), "--ckpt_path", "last", *flags)
    line = one_sentence(done)
    assert first_difference in line and "--force_resume" in line
    assert not list(run_dir.glob("config-resumed-*.yaml"))  # nothing written for a refused resume


@pytest.mark.parametrize("flags, expected", [
    (["--data.warmup_steps", "600"], "data.warmup_steps (600) is not below data.total_env_steps (500)"),
    (["--data.replay_capacity", "8"], "data.replay_capacity (8) keeps 8 steps per environment"),
    (["--data.max_updates", "0"], "data.max_updates is 0"),
    (["--model.init_args.batch_size", "0"], "model.batch_size"),
    (["--model.init_args.lr", "-0.001"], "model.lr positive"),
    (["--run_dir", "/proc/not-writable/run"], "cannot be written"),
    (["--trainer.precision", "16-mixed"], "trainer.precision 16-mixed (fp16) is not supported"),
    (["--trainer.accelerator", "gpu", "--trainer.devices", "99"], "asks for 99 GPUs but this machine has"),
    (["--model.init_args.alix", "true", "--model.init_args.noisy", "true", "--compile", "true"],
     "compile is not supported for Rainbow as configured"),
    (["--compile", "full"], "compile full is not supported for Rainbow, which declares no update regions"),
    (["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp_spawn"],
     "several processes train with ddp"),
    (["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--workflow.online", "true"],
     "workflow.online) runs in one process"),
    (["--data.env.suite", "gym", "--data.env.task", "CartPoel-v1"], "CartPole-v1"),  # the close id is offered
    (["--data.env.suite", "gym", "--data.env.task", "null", "--data.env.entry_point", "no_such_module:Env"],
     "no_such_module"),
    (["--data.env.task", "reach"], "takes discrete actions, and this environment's are continuous"),
    (["--data.env.observation", "both", "--data.env.cnn_keys", "image"], "cnn_keys"),
])
def test_bad_input_stops_with_one_sentence_and_leaves_no_run_directory(tmp_path, flags, expected):
    line = one_sentence(run(tmp_path, *CONFIG, *flags))
    assert expected in line
    assert not (tmp_path / "runs").exists()


def test_a_run_uses_one_device_unless_told_otherwise(uninterrupted):
    # Lightning's default, "auto", would take every GPU of the host and start DDP unasked.
    import yaml

    assert yaml.safe_load((uninterrupted / "config.yaml").read_text())["trainer"]["devices"] == 1


@pytest.mark.parametrize("flags, expected", [
    (["--config", "nothing.yaml"], "config file nothing.yaml does not exist"),
    (["--model.init_args.lrr", "1e-3"], "model.init_args.lrr is not an option of a flag or a config file "
                                         "(did you mean model.init_args.lr?)"),
    (["--dataa.total_env_steps", "300"], "dataa.total_env_steps is not an option of a flag or a config file "
                                          "(did you mean data.total_env_steps?)"),
    (["--config", "typo.yaml"], "data.total_env_step is not an option of a flag or a config file "
                                "(did you mean data.total_env_steps?)"),
    (["--model.init_args.lr", "-1e-4"], "model.lr positive"),  # read as a value, then refused as one
], ids=["missing-config", "mistyped-flag", "mistyped-group", "mistyped-yaml-key", "negative-exponent"])
def test_a_missing_config_or_a_mistyped_flag_or_key_is_one_sentence_with_the_closest_key(tmp_path, flags, expected):
    (tmp_path / "typo.yaml").write_text("data:\n  total_env_step: 300\n")
    done = run(tmp_path, *CONFIG, *flags)
    line = one_sentence(done)
    assert expected in line
    if "not an option" in line or "does not exist" in line:
        assert "--help" in line
    assert len(done.stderr.strip().splitlines()) <= 3, done.stderr  # not jsonargparse's usage


def test_a_failed_start_removes_the_run_directory_it_created(tmp_path):
    line = one_sentence(run(tmp_path, *CONFIG, "--data.env.task", "pongg", "--run_dir", str(tmp_path / "run")))
    assert "pongg" in line and not (tmp_path / "run").exists()


def test_an_empty_config_file_is_named(tmp_path):
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    line = one_sentence(run(tmp_path, *CONFIG, "--config", str(tmp_path / "empty.yaml")))
    assert "empty.yaml is empty" in line


def test_a_mujoco_gl_that_cannot_load_does_not_stop_a_run_without_mujoco(tmp_path):
    done = run(tmp_path, *CONFIG, "--data.total_env_steps", "210", env={"MUJOCO_GL": "no-such-backend"})
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("env, reason", [
    ({"WANDB_API_KEY": ""}, "no W&B API key is set"),
    # A key, but a server that refuses connections (nothing listens on port 443 of this host).
    ({"WANDB_API_KEY": "x" * 40, "WANDB_BASE_URL": "https://127.0.0.1"}, "127.0.0.1 cannot be reached"),
])
def test_wandb_online_without_a_key_or_a_server_logs_offline_with_one_warning(tmp_path, env, reason):
    env = {"WANDB_MODE": "online", "HOME": str(tmp_path), **env}  # HOME: no ~/.netrc
    done = run(tmp_path, *CONFIG, "--data.total_env_steps", "210", env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count(f"W&B logs offline: {reason}") == 1
    assert list(tmp_path.glob("runs/*/wandb/offline-run-*"))


def test_a_start_prints_no_dependency_noise(tmp_path):
    done = run(tmp_path, *CONFIG, "--data.total_env_steps", "210")
    out = done.stdout + done.stderr
    for noise in ("litlogger", "LeafSpec", "weights_only"):
        assert noise not in out, noise


@pytest.fixture
def small_disk(tmp_path):
    """A real 1 MiB filesystem (tmpfs), mounted for the test; skipped where mounting is not permitted."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(disk)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"a tmpfs cannot be mounted here ({mounted.stderr.strip() or 'mount failed'})")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_a_full_disk_is_one_sentence_and_leaves_no_partial_file(small_disk):
    (small_disk / "last.ckpt").write_bytes(b"the previous checkpoint")
    # torch's own error on a disk that fills mid-write: "[enforce fail at inline_container.cc] unexpected pos"
    with pytest.raises(ConfigError, match="could not be written \\(the disk is full\\).*previous checkpoint is intact"):
        AtomicCheckpointIO().save_checkpoint({"weights": torch.ones(1 << 20)}, small_disk / "last.ckpt")
    assert [p.name for p in small_disk.iterdir()] == ["last.ckpt"]
    assert (small_disk / "last.ckpt").read_bytes() == b"the previous checkpoint"


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    import argparse

    torch.save({"state_dict": {}, "payload": argparse.Namespace(anything=1)}, tmp_path / "other.ckpt")
    with pytest.raises(ConfigError, match=r"argparse.Namespace\); it was not written by worldmodels.fit"):
        AtomicCheckpointIO().load_checkpoint(tmp_path / "other.ckpt")


# Each agent family with what it keeps beyond its weights: DrQ-v2 its optimizers and the global generators
# of its augmentation and acting noise; DER its own epsilon-greedy generator, noisy layers and priorities;
# A-LIX the strength S and its own optimizer; DreamerV3 the return-scale statistics and three optimizers.
SHORT = ["--data.total_env_steps", "240", "--data.warmup_steps", "120", "--checkpoint.every_env_steps", "100",
         "--evaluation.episodes", "1"]
ROUND_TRIPS = {
    "DrQ-v2": [*CONTINUOUS, "--data.total_env_steps", "240"],
    "DER": [*CONFIG, "--config", str(ROOT / "tests/configs/der_catch.yaml"), *SHORT],
    "A-LIX": [*CONTINUOUS, "--model", "model_free.ALIX", "--model.init_args.alix_max_shift", "0.5", *SHORT],
    "DreamerV3": ["--config", str(ROOT / "tests/configs/dreamer_catch.yaml"), *SHORT,
                  "--model.init_args.train_ratio", "16"],
}


@pytest.mark.parametrize("agent", ROUND_TRIPS)
def test_a_resumed_run_holds_every_weight_optimizer_state_generator_and_counter_it_was_saved_with(
        tmp_path, references, agent):
    """A run stopped by Ctrl-C past its warm-up is resumed and saves its whole state again the moment
    it is restored, before anything draws a random number: the two checkpoints must be equal in every
    tensor and value. Anything saved but not restored (a generator reseeded at start, statistics
    rebuilt, an optimizer recreated) comes back changed; the environments, which cannot be saved,
    restart after this point."""
    run_dir = tmp_path / "run"
    stopped = run(tmp_path, *ROUND_TRIPS[agent], "--run_dir", str(run_dir), fault=("sigint_at_env_step", 200))
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    resumed = run(tmp_path, *ROUND_TRIPS[agent], "--run_dir", str(run_dir), "--ckpt_path", "last",
                  fault=("save_on_resume", 0))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    io = AtomicCheckpointIO()
    saved, restored = (io.load_checkpoint(run_dir / "checkpoints" / name) for name in ("last.ckpt", "restored.ckpt"))
    assert saved["Experience"]["counters"]["updates"] > 0 and saved["Experience"]["rng"]
    changed = differences(saved, restored)
    if agent == "DER":  # the one deliberate change: the newest row, re-marked an episode's end at
        # resume, is admitted again so that its priority becomes 0 (PrioritizedTransitionView.load_state_dict)
        priorities, again = saved["Experience"]["view"], restored["Experience"]["view"]
        assert priorities["priority"] is not None and again["admitted"] == priorities["admitted"] - 1
        changed.remove("/Experience/view/admitted")
    assert changed == []


def paused(process, timeout=300) -> bool:
    """Wait until ``process`` has stopped itself (SIGSTOP: state T in /proc); False if it ended instead."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        with open(f"/proc/{process.pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "T":
                return True
        time.sleep(0.1)
    return False


def test_a_run_of_dict_observations_is_a_dataset_that_names_its_keys_and_trains_an_offline_agent(tmp_path, references):
    """``dataset info`` on the uninterrupted dict-observation run names each key with its kind, shape and
    type; an offline run (CQL on the same learner) trains on it; a run of another layout is refused."""
    from worldmodels.dataset import info

    dataset = references(DICT_OBS)
    report = info(dataset)
    assert "pixels: image 1x44x44 uint8, observation: vector 24 float32" in report, report
    offline = ["--data.dataset", str(dataset), "--data.max_updates", "20", "--model.init_args.cql_alpha", "1.0"]
    done = run(tmp_path, *DICT_OBS, *offline, "--run_dir", str(tmp_path / "offline"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert state(tmp_path / "offline")["counters"]["updates"] == 20
    line = one_sentence(run(tmp_path, *CONFIG, *offline, "--run_dir", str(tmp_path / "images")))
    assert "holds observations pixels: image 1x44x44 uint8" in line


def test_reading_a_run_as_a_dataset_while_it_writes_a_checkpoint_removes_nothing(tmp_path, uninterrupted):
    """The writer is paused as it writes its checkpoint at env step 400: the replay file of rows up to 400
    is on disk, last.ckpt still holds the cursor of 300. A reader (dataset info) opens the run then; the
    writer continues and finishes, and its replay is the uninterrupted run's, row for row."""
    import signal

    run_dir = tmp_path / "run"
    driver = [sys.executable, str(ROOT / "tests/fault_injection.py"), "stop_in_checkpoint", "4", "--"]
    writer = subprocess.Popen([*driver, *CONFIG, "--run_dir", str(run_dir)], cwd=tmp_path,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert paused(writer), writer.communicate()[1][-2000:]
        newest = sorted((run_dir / "replay").glob("rows-*.pt"))[-1]
        assert state(run_dir)["replay"]["time"] <= int(newest.name.split("-")[1])  # written past the cursor
        reader = FORK_SERVER.run(["-m", "worldmodels.dataset", "info", str(run_dir)], cwd=tmp_path,
                                 env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=300)
        assert reader.returncode == 0, reader.stderr[-2000:]
        assert newest.exists()
    finally:
        writer.send_signal(signal.SIGCONT)
    assert writer.wait(timeout=600) == 0, writer.stderr.read()[-3000:]
    rows, reference = replay_rows(run_dir), replay_rows(uninterrupted)
    assert rows.keys() == reference.keys()
    for field in rows:
        assert torch.equal(rows[field], reference[field]), field
    assert state(run_dir)["counters"] == state(uninterrupted)["counters"]
    resumed = run(tmp_path, *CONFIG, "--run_dir", str(run_dir), "--ckpt_path", "last", "--data.total_env_steps", "520")
    assert resumed.returncode == 0, resumed.stderr[-3000:]


def test_two_writers_started_together_on_one_run_directory_one_stops_naming_the_other(tmp_path):
    run_dir = tmp_path / "run"
    args = [sys.executable, "-m", "worldmodels.fit", *CONFIG, "--data.total_env_steps", "210", "--run_dir", str(run_dir)]
    writers = [subprocess.Popen(args, cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    done = [(w.pid, w.returncode, err) for w in writers for _, err in [w.communicate(timeout=600)]]
    assert sorted(code for _, code, _ in done) == [0, 2], [err[-2000:] for _, _, err in done]
    (winner,), (loser,) = [d for d in done if d[1] == 0], [d for d in done if d[1] == 2]
    assert "Traceback" not in loser[2]
    (line,) = [l for l in loser[2].splitlines() if l.startswith("error:")]
    assert f"is being written by another worldmodels.fit (pid {winner[0]} on host " in line
    assert state(run_dir)["counters"]["env_steps"] == 210


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    from worldmodels.run_directory import lock_holder, take_lock

    (tmp_path / "run.lock").write_text("999999999 elsewhere\n")  # its process is gone: the flock went with it
    assert lock_holder(tmp_path) is None
    take_lock(tmp_path)
    assert (tmp_path / "run.lock").read_text().split()[0] == str(os.getpid())
    held = subprocess.run([sys.executable, "-c", "from worldmodels.run_directory import lock_holder; import sys; "
                           f"print(lock_holder(sys.argv[1]))", str(tmp_path)], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                          capture_output=True, text=True)
    assert held.stdout.strip().startswith(f"pid {os.getpid()} on host ")


def contents(directory) -> dict:
    """Every path under ``directory`` with the bytes of each file, but the lock's (it names the latest writer)."""
    return {str(p.relative_to(directory)): p.read_bytes() if p.is_file() else None for p in directory.rglob("*")
            if p.name != "run.lock"}


def test_a_failed_forced_resume_leaves_the_run_as_it_was_and_a_correct_resume_follows(tmp_path, uninterrupted):
    run_dir = tmp_path / "run"
    shutil.copytree(uninterrupted, run_dir)
    before = contents(run_dir)
    # Another image size under --force_resume: the networks' shapes differ, the checkpoint cannot load.
    failed = run(tmp_path, *CONFIG, "--run_dir", str(run_dir), "--ckpt_path", "last", "--force_resume", "true",
                 "--data.env.image_size", "36", "--data.total_env_steps", "520")
    assert "has shape" in one_sentence(failed)
    assert contents(run_dir) == before  # no config-resumed-*.yaml, CSV folder or W&B run of the failed attempt
    resumed = run(tmp_path, *CONFIG, "--run_dir", str(run_dir), "--ckpt_path", "last", "--data.total_env_steps", "520")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [p.name for p in run_dir.glob("config-resumed-*.yaml")] == ["config-resumed-1.yaml"]
    assert len(list(run_dir.glob("csv-resumed-*/metrics.csv"))) == 1
    assert state(run_dir)["counters"]["env_steps"] == 520


def test_resuming_a_run_stopped_before_its_first_checkpoint_says_so_and_writes_nothing(tmp_path):
    run_dir = tmp_path / "run"
    killed = run(tmp_path, *CONFIG, "--run_dir", str(run_dir), fault=("kill_at_env_step", 50))
    assert killed.returncode == -9 and not (run_dir / "checkpoints" / "last.ckpt").exists()
    before = contents(run_dir)
    line = one_sentence(run(tmp_path, *CONFIG, "--run_dir", str(run_dir), "--ckpt_path", "last"))
    assert "this run has no checkpoint yet (it was stopped before its first checkpoint" in line
    assert "start it again without --ckpt_path" in line
    assert contents(run_dir) == before


def test_a_replay_file_of_another_shape_is_one_sentence_naming_it(tmp_path, uninterrupted):
    """A DMC replay file (3 channels of 64 x 64) under the name of one of this catch run's files (1 channel)."""
    from worldmodels import dataset

    run_dir = tmp_path / "run"
    shutil.copytree(uninterrupted, run_dir)
    target = sorted((run_dir / "replay").glob("rows-*.pt"))[1]
    rows = torch.load(target, weights_only=True)
    rows["frames"] = torch.zeros(len(rows["frames"]), 1, 3, 64, 64, dtype=torch.uint8)
    torch.save(rows, target)
    replay = Replay(2000, frame_stack=1, frame_channels=1)
    with pytest.raises(ConfigError, match=f"replay file {target} holds frames of shape \\(1, 3, 64, 64\\)"):
        replay.load_state_dict(state(run_dir)["replay"], run_dir / "replay")
    with pytest.raises(ConfigError, match="belongs to another run"):
        dataset.info(run_dir)


@pytest.mark.parametrize("damage, expected", [
    ("remove", "is not a run directory: it has no config.yaml"),
    ("broken", "config.yaml is not valid YAML"),
    ("no-data", "config.yaml has no data: section"),
])
def test_dataset_info_on_a_folder_that_is_not_a_run_is_one_sentence(tmp_path, uninterrupted, capsys, damage, expected):
    from worldmodels import dataset

    run_dir = tmp_path / "run"
    shutil.copytree(uninterrupted, run_dir)
    config = run_dir / "config.yaml"
    if damage == "remove":
        config.unlink()
    else:
        config.write_text("model: [unclosed\n" if damage == "broken" else "model: {class_path: x}\n")
    with pytest.raises(SystemExit) as stopped:
        dataset.main(["info", str(run_dir)])
    assert stopped.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and expected in line


def test_the_report_of_a_folder_that_does_not_exist_says_so(tmp_path, capsys):
    from worldmodels import benchmark

    with pytest.raises(SystemExit) as stopped:
        benchmark.main(["--out", str(tmp_path / "nothing"), "--report"])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'nothing'} does not exist; pass the --out folder of a grid."


@pytest.mark.parametrize("damage", ["zeroed-64k-block", "flipped-byte"])
def test_a_checkpoint_whose_bytes_changed_is_refused_naming_it_and_the_previous_good_one(tmp_path, uninterrupted, damage):
    checkpoints = tmp_path / "checkpoints"
    shutil.copytree(uninterrupted / "checkpoints", checkpoints)
    last = checkpoints / "last.ckpt"
    data = bytearray(last.read_bytes())
    assert len(data) > 3 * 65536
    if damage == "zeroed-64k-block":
        data[65536:2 * 65536] = bytes(65536)
    else:
        data[len(data) // 2] ^= 0x01
    last.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=f"checkpoint {last} does not match the checksum written with it.*no other "
                                          "checkpoint of this run is kept"):
        AtomicCheckpointIO().load_checkpoint(last)
    shutil.copy(uninterrupted / "checkpoints" / "last.ckpt", checkpoints / "earlier.ckpt")
    with pytest.raises(ConfigError, match=f"resume from {checkpoints / 'earlier.ckpt'}"):
        AtomicCheckpointIO().load_checkpoint(last)


def test_a_replay_file_of_another_run_under_a_matching_name_is_refused(tmp_path, uninterrupted):
    from worldmodels.atomic import save_atomically

    run_dir = tmp_path / "run"
    shutil.copytree(uninterrupted, run_dir)
    target = sorted((run_dir / "replay").glob("rows-*.pt"))[2]
    rows = torch.load(target, weights_only=True)
    assert rows["run"] == (run_dir / "run_id.txt").read_text().strip()
    save_atomically({**rows, "run": "0123456789abcdef"}, target)  # the same rows, written by another run
    replay = Replay(2000, frame_stack=1, frame_channels=1)
    with pytest.raises(ConfigError, match=f"replay file {target} was written by another run \\(id 0123456789abcdef"):
        replay.load_state_dict(state(run_dir)["replay"], run_dir / "replay")
    target.write_bytes(target.read_bytes()[:1000] + b"\0" + target.read_bytes()[1001:])
    with pytest.raises(ConfigError, match=f"replay file {target} does not match the checksum"):
        replay.load_state_dict(state(run_dir)["replay"], run_dir / "replay")
