"""The numerical guard: NaN or inf in a training metric stops the run with one sentence, before any
checkpoint holds it; the flags stay on the device between checks."""

import json

import pytest
import torch

from worldmodels.training import AtomicCheckpointIO
from worldmodels.training.guard import FiniteWatch


def test_the_watch_names_the_earliest_metric_to_go_non_finite_and_its_update():
    watch = FiniteWatch()
    watch.observe({"a": torch.tensor(1.0), "b": torch.tensor(2.0), "eps": 0.5}, update=1)
    assert watch.report() is None
    watch.observe({"a": torch.tensor(1.0), "b": torch.tensor(float("inf"))}, update=2)
    watch.observe({"a": torch.tensor(float("nan")), "b": torch.tensor(float("nan"))}, update=3)
    assert watch.report() == ("b", 2)  # b went first; its first bad update is kept, not overwritten
    assert "eps" not in watch.first_bad  # plain numbers are not watched


@pytest.mark.integration
def test_a_run_whose_loss_turns_nan_stops_with_one_sentence_and_keeps_its_last_good_checkpoint(fit, tmp_path):
    # lr 1e6: the first update is finite, the weights it leaves make the second loss NaN. Checkpoints
    # every 100 env steps: the last good one is the warm-up's at 200; the one due at 300 may not follow.
    run = tmp_path / "run"
    done = fit("--config", "tests/configs/nddqn_catch.yaml", "--model.init_args.lr", "1e6", "--data.total_env_steps",
               "400", "--data.warmup_steps", "200", "--checkpoint.every_env_steps", "100", "--run_dir", str(run))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    (line,) = [l for l in done.stderr.splitlines() if l.startswith("error:")]
    assert "train/td_loss became NaN or inf at update 2" in line and "env step" in line
    saved = AtomicCheckpointIO().load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert saved["Experience"]["counters"]["env_steps"] == 200
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values())
    assert not (run / "eval-final.json").exists()
    # Turned off, the same run trains on to the end.
    off = fit("--config", "tests/configs/nddqn_catch.yaml", "--model.init_args.lr", "1e6", "--data.total_env_steps",
              "300", "--data.warmup_steps", "200", "--evaluation.final_episodes", "1", "--guard.enabled", "false",
              "--run_dir", str(tmp_path / "off"))
    assert off.returncode == 0, off.stderr[-2000:]
    assert json.loads((tmp_path / "off" / "eval-final.json").read_text())["env_steps"] == 300


@pytest.mark.integration
@pytest.mark.parametrize("config, lr", [
    ("tests/configs/nddqn_catch.yaml", ["--model.init_args.lr", "1e6"]),
    ("tests/configs/dreamer_catch.yaml", ["--model.init_args.model_lr", "1e6", "--model.init_args.ac_lr", "1e6"]),
], ids=["nddqn", "dreamerv3"])
def test_nan_weights_stop_with_the_guards_sentence_before_a_health_check_meets_them(fit, tmp_path, config, lr):
    # The smoke periods: a health check every 5 updates, the guard every 10; no evaluation in between.
    done = fit("--config", config, "--config", "configs/smoke.yaml", *lr, "--evaluation.every_env_steps", "0",
               "--run_dir", str(tmp_path / "run"))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    (line,) = [l for l in done.stderr.splitlines() if l.startswith("error:")]
    assert "became NaN or inf at update" in line and "(checked at update 5," in line
