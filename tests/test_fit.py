"""The CLI end to end: a smoke run leaves everything a researcher needs, resuming continues it, and
bad input stops with one clear sentence."""

import json
from pathlib import Path

import pytest
import torch

from worldmodels.errors import ConfigError
from worldmodels.training import AtomicCheckpointIO

pytestmark = pytest.mark.integration


def load(path: Path) -> dict:
    return AtomicCheckpointIO().load_checkpoint(path)  # weights_only=True, as fit loads it


def replay_rows(run: Path) -> dict:
    """Every row of a run's on-disk replay (<run>/replay/rows-*.pt, oldest first), joined."""
    chunks = [torch.load(p, weights_only=True) for p in sorted((run / "replay").glob("rows-*.pt"))]
    return {"frames": torch.cat([c["frames"] for c in chunks]),
            **{k: torch.cat([c["steps"][k] for c in chunks]) for k in chunks[0]["steps"]}}


def test_nddqn_smoke_run_logs_checkpoints_and_resumes_with_the_same_counters_and_replay(fit, tmp_path):
    done = fit("--config", "configs/nddqn_atari.yaml", "--config", "configs/smoke.yaml")
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = (tmp_path / "runs").glob("nddqn_atari-*")
    assert (run / "config.yaml").read_text().count("class_path: model_free.Rainbow") == 1
    header = (run / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "env_steps" in header and not [k for k in MODEL_FREE_HEALTH if k not in header]
    (offline,) = (run / "wandb").glob("offline-run-*")
    assert list(offline.glob("files/media/videos/eval/*.mp4")), "no evaluation video in the W&B run"
    assert list(offline.glob("*.wandb")), "no W&B metrics file"
    first = load(run / "checkpoints" / "last.ckpt")
    data1 = first["Experience"]
    # The smoke run stops after 6 updates; one update per env step after 200 warm-up steps.
    assert data1["counters"]["updates"] == 6
    assert data1["counters"]["env_steps"] == 206 and data1["counters"]["frames"] == 4 * 206
    assert "frames" not in data1["replay"] and "combined_loader" not in first["loops"]["fit_loop"]["state_dict"]
    rows1 = replay_rows(run)
    assert len(rows1["frames"]) == data1["replay"]["time"] == 207  # the first frame, then one per env step

    resumed = fit("--config", "configs/nddqn_atari.yaml", "--config", "configs/smoke.yaml",
                  "--data.max_updates", "12", "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert str(run.name) in resumed.stdout  # the same run directory
    data2 = load(run / "checkpoints" / "last.ckpt")["Experience"]
    assert data2["counters"]["updates"] == 12
    assert data2["counters"]["env_steps"] == 206 + 6  # one update per env step, as before
    assert data2["counters"]["episodes"] >= data1["counters"]["episodes"]
    rows2, rows = replay_rows(run), 207
    assert len(rows2["frames"]) == data2["replay"]["time"]
    assert torch.equal(rows2["frames"][:rows], rows1["frames"])
    assert torch.equal(rows2["reward"][:rows], rows1["reward"])
    assert bool(rows2["first"][rows].all())  # the resumed run started new episodes
    assert list((run).glob("csv-resumed-*/metrics.csv"))
    assert (run / "config-resumed-1.yaml").is_file()  # config.yaml stays the original

    # The run is a dataset: CQL trains from it offline (its smoke path), on the update clock.
    cql = fit("--config", "configs/cql_atari.yaml", "--config", "configs/smoke.yaml", "--data.dataset", str(run))
    assert cql.returncode == 0, cql.stderr[-3000:]
    (cql_run,) = (tmp_path / "runs").glob("cql_atari-*")
    counters = load(cql_run / "checkpoints" / "last.ckpt")["Experience"]["counters"]
    assert counters["updates"] == 6 and counters["env_steps"] == 0
    assert "train/cql_penalty" in (cql_run / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert (cql_run / "workflow.txt").read_text().startswith("update 5: ")  # smoke's one health check

    other = fit("--config", "configs/nddqn_atari.yaml", "--config", "configs/smoke.yaml",
                "--model.init_args.hidden", "256", "--ckpt_path", "last")
    assert other.returncode == 2 and "Traceback" not in other.stderr
    (line,) = [l for l in other.stderr.splitlines() if l.startswith("error:")]
    assert "model.init_args.hidden = 512" in line and "--force_resume" in line
    forced = fit("--config", "configs/nddqn_atari.yaml", "--config", "configs/smoke.yaml",
                 "--model.init_args.hidden", "256", "--ckpt_path", "last", "--force_resume", "true")
    assert forced.returncode == 2 and "shape" in forced.stderr and "Traceback" not in forced.stderr


def test_a_mistyped_key_fails_with_a_message_naming_it(fit):
    done = fit("--config", "configs/nddqn_atari.yaml", "--model.init_args.learning_rate", "0.1")
    assert done.returncode != 0
    assert "learning_rate" in done.stderr and "Traceback" not in done.stderr


def test_an_unknown_game_fails_with_one_sentence(fit):
    done = fit("--config", "configs/nddqn_atari.yaml", "--data.env.task", "pongg")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    (line,) = [l for l in done.stderr.splitlines() if l.startswith("error:")]
    assert "pongg" in line


@pytest.mark.parametrize("config, flags, expected", [
    ("configs/der_atari.yaml", ["--model.init_args.encoder", "resnet"], "model.encoder is 'resnet'"),
    ("configs/der_atari.yaml", ["--model.init_args.v_min", "20"], "model.v_min (20.0) must be below"),
    ("configs/dreamer_atari.yaml", ["--model.init_args.size", "Q"], "size is 'Q'"),
])
def test_an_agents_own_config_error_reaches_the_user_as_one_sentence(fit, config, flags, expected):
    # The agent's constructor raises it inside jsonargparse, which wraps it in a ValueError of its own.
    done = fit("--config", config, *flags)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    (line,) = [l for l in done.stderr.splitlines() if l.startswith("error:")]
    assert expected in line


def test_a_corrupt_checkpoint_fails_with_one_sentence_naming_the_file(fit, tmp_path):
    ckpt = tmp_path / "runs" / "broken" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"not a checkpoint at all")
    done = fit("--config", "configs/nddqn_atari.yaml", "--config", "configs/smoke.yaml", "--ckpt_path", str(ckpt))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    (line,) = [l for l in done.stderr.splitlines() if l.startswith("error:")]
    assert str(ckpt) in line and "corrupt" in line


def test_an_interrupted_checkpoint_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1, "weights": torch.ones(3)}, path)

    def dies_halfway(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"step": 2, "weights": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert io.load_checkpoint(path)["step"] == 1
    (tmp_path / "bad.ckpt").write_bytes(b"half a checkpoint")
    with pytest.raises(ConfigError, match="corrupt"):
        io.load_checkpoint(tmp_path / "bad.ckpt")


def assert_metrics_sane(run: Path) -> None:
    """Every training and evaluation value in the CSV is finite, frames = env steps x action repeat on
    every row, and the counters never go back."""
    import csv
    import math

    repeat = json.loads((run / "eval-final.json").read_text())["env"]["action_repeat"]
    with (run / "csv" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert rows
    last = {"env_steps": -1.0, "updates": -1.0}
    for row in rows:
        for key, value in row.items():
            if value and key.startswith(("train/", "eval/")):
                assert math.isfinite(float(value)), (key, value)
        assert float(row["frames"]) == float(row["env_steps"]) * repeat
        for counter in ("env_steps", "updates"):
            if row.get(counter):
                assert float(row[counter]) >= last[counter], (counter, row)
                last[counter] = float(row[counter])
    assert last["updates"] >= 1


DREAMER_SCALARS = ["wm/image_loss", "wm/reward_loss", "wm/continue_loss", "wm/kl_dyn", "wm/kl_rep",
                   "wm/posterior_entropy", "wm/prior_entropy", "actor/loss", "critic/loss", "actor/return_scale",
                   "imagined/return", "actor/entropy", "wm/grad_norm", "actor/grad_norm", "critic/grad_norm",
                   "critic/td_loss", "critic/feature_dot", "eval/return_mean", "env_steps", "frames"]
# DreamerV3.health's figures, logged by the Health callback (checked at the second update below).
DREAMER_SCALARS += [f"health/open_loop_{name}_step{k}" for name in ("image_mse", "reward_error", "kl")
                    for k in (1, 5, 10, 15)]
DREAMER_SCALARS += [f"health/{name}" for name in ("value_mean", "mc_return_mean", "value_overestimation",
                                                  "critic_srank", "encoder_srank", "critic_feature_dot", "td_loss")]


DREAMER_XS = ["--model.init_args.size", "XS", "--model.init_args.batch_size", "4", "--model.init_args.seq_len", "24",
              "--data.max_updates", "3", "--health.every_updates", "2"]


@pytest.mark.parametrize("config", ["configs/dreamer_atari.yaml", "configs/dreamer_dmc.yaml"])
def test_dreamer_smoke_run_logs_its_scalars_an_open_loop_video_and_an_evaluation_video(fit, tmp_path, config):
    # The whole path at size XS on 4 sequences of 24 steps (5 observed + 15 open-loop steps for the
    # health figures, with room to spare), 3 updates instead of smoke.yaml's 6 (a health check at the
    # second): size-S updates on 16 x 64 steps cost 10-20 s each on one core, more than the suite's
    # budget can give; the shipped smoke runs at size S are timed by tools/smoke_times.py.
    done = fit("--config", config, "--config", "configs/smoke.yaml", *DREAMER_XS)
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = (tmp_path / "runs").glob("dreamer_*")
    header = (run / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert not [k for k in DREAMER_SCALARS if k not in header]
    (offline,) = (run / "wandb").glob("offline-run-*")
    assert list(offline.glob("files/media/videos/wm/open_loop*.mp4")), "no open-loop video in the W&B run"
    assert list(offline.glob("files/media/videos/eval/*.mp4")), "no evaluation video in the W&B run"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert_metrics_sane(run)
    final = json.loads((run / "eval-final.json").read_text())  # also when the last periodic evaluation fell on it
    assert final["episodes"] == 1 and final["name"] == Path(config).stem


# Every model-free agent's health figures (model_free/critic_health.py), checked every 5 updates in smoke.yaml.
MODEL_FREE_HEALTH = [f"health/{name}" for name in (
    "q_mean", "mc_return_mean", "mc_return_ms", "q_overestimation", "mc_coverage", "critic_srank", "encoder_srank",
    "critic_feature_dot", "td_loss", "nd_score", "augmentation_gap")]
MODEL_FREE_SCALARS = {
    "configs/drq_atari.yaml": ["train/td_loss", "train/q_mean", "train/epsilon"],
    "configs/dqn_atari.yaml": ["train/td_loss", "train/q_mean", "train/epsilon"],
    "configs/der_atari.yaml": ["train/td_loss", "train/q_mean", "train/is_weight_mean"],
    "configs/alix_atari.yaml": ["train/td_loss", "train/q_mean", "train/alix_s", "train/nd_score", "train/grad_norm",
                                "train/is_weight_mean"],
    "configs/drqv2_dmc.yaml": ["train/critic_loss", "train/actor_loss", "train/q1_mean", "train/stddev"],
    "configs/sacae_dmc.yaml": ["train/critic_loss", "train/actor_loss", "train/reconstruction_loss",
                               "train/latent_penalty"],
    "configs/alix_dmc.yaml": ["train/critic_loss", "train/actor_loss", "train/alix_s", "train/nd_score"],
    "configs/drq_dmc.yaml": ["train/critic_loss", "train/actor_loss", "train/alpha", "train/entropy"],
}
# The DMC agents run here with batch 16 instead of their published 128-512, for 300 env steps instead of
# 400 and evaluation games cut at 25 steps instead of 100: their published-size updates and MuJoCo's
# rendering (every step is a picture, about 30 ms of a core without a GPU) would push the suite past its
# time budget on 2 cores; everything else is the shipped config.
DMC_SUITE_OVERRIDES = ["--model.init_args.batch_size", "16", "--data.total_env_steps", "300",
                       "--evaluation.max_steps", "25"]
SUITE_OVERRIDES = {config: DMC_SUITE_OVERRIDES for config in
                   ("configs/drqv2_dmc.yaml", "configs/sacae_dmc.yaml", "configs/alix_dmc.yaml", "configs/drq_dmc.yaml")}


@pytest.mark.parametrize("config", sorted(MODEL_FREE_SCALARS))
def test_model_free_smoke_run_logs_its_metrics_and_an_evaluation_video(fit, tmp_path, config):
    done = fit("--config", config, "--config", "configs/smoke.yaml", *SUITE_OVERRIDES.get(config, []))
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = (tmp_path / "runs").glob("*-*")
    header = (run / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert not [k for k in MODEL_FREE_SCALARS[config] + MODEL_FREE_HEALTH + ["eval/return_mean", "env_steps"]
                if k not in header]
    (offline,) = (run / "wandb").glob("offline-run-*")
    assert list(offline.glob("files/media/videos/eval/*.mp4")), "no evaluation video in the W&B run"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    if "sacae" in config:  # truth beside reconstruction, logged at the first update
        assert list(offline.glob("files/media/images/train/reconstruction_*.png"))
    assert_metrics_sane(run)
    final = json.loads((run / "eval-final.json").read_text())  # the evaluation at the end, as evaluate writes it
    # SAC+AE (warmup_burst) owes the warm-up's 200 updates when it ends: smoke.yaml's 6 are spent there,
    # and the run stops at env step 200; the others make their 6 after it.
    assert final["episodes"] == 1 and final["env_steps"] >= (200 if "sacae" in config else 201)
    assert final["name"] == Path(config).stem
