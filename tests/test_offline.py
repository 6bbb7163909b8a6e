"""Offline training (``--data.dataset``): a run's replay as the only data, the update count as the
run's clock, an exact resume, and one sentence for a dataset that cannot be used."""

from pathlib import Path

import pytest

from conftest import ROOT, differences, made_once
from test_faults import one_sentence, run
from worldmodels.training import AtomicCheckpointIO

pytestmark = pytest.mark.integration

CATCH = ["--config", str(ROOT / "tests/configs/nddqn_catch.yaml")]
# 50 updates on the dataset, a checkpoint every 20 and an evaluation (5 games) every 25 updates.
OFFLINE = [*CATCH, "--data.max_updates", "50", "--checkpoint.every_env_steps", "20",
           "--evaluation.every_env_steps", "25", "--evaluation.episodes", "5"]


def files(directory):
    return {p.relative_to(directory): p.stat().st_mtime_ns for p in directory.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """An online NDDQN run on catch: 600 env steps (500 of them random), its replay the dataset (made
    once for all workers, as the offline run below)."""

    def make(tmp: Path) -> None:
        done = run(tmp, *CATCH, "--data.total_env_steps", "600", "--data.warmup_steps", "500",
                   "--run_dir", str(tmp / "run"))
        assert done.returncode == 0, done.stderr[-3000:]

    return made_once(tmp_path_factory, "dataset", make) / "run"


@pytest.fixture(scope="module")
def offline_run(dataset, tmp_path_factory):
    def make(tmp: Path) -> None:
        before = files(dataset)
        done = run(tmp, *OFFLINE, "--data.dataset", str(dataset), "--run_dir", str(tmp / "run"))
        assert done.returncode == 0, done.stderr[-3000:]
        assert files(dataset) == before  # the dataset is read, never written

    return made_once(tmp_path_factory, "offline", make) / "run"


def test_an_offline_run_makes_its_updates_from_the_dataset_without_an_env_step_and_evaluates_on_updates(offline_run):
    state = AtomicCheckpointIO().load_checkpoint(offline_run / "checkpoints" / "last.ckpt")
    assert state["Experience"]["counters"] == {"env_steps": 0, "frames": 0, "episodes": 0, "updates": 50}
    # The dataset's rows: 600 steps and the first frame of each of the 86 games begun (catch's last 7 steps).
    assert state["Experience"]["replay"]["time"] == 600 + 86
    assert not (offline_run / "replay").exists()  # no rows of its own
    header, *rows = (offline_run / "csv" / "metrics.csv").read_text().splitlines()
    column, value = header.split(","), [r.split(",") for r in rows]
    evaluated = [int(float(r[column.index("updates")])) for r in value if r[column.index("eval/return_mean")]]
    assert evaluated == [25, 50]


def test_an_offline_run_killed_anywhere_resumes_to_the_state_of_an_uninterrupted_one(dataset, offline_run, tmp_path):
    """Killed after update 45, it resumes from its checkpoint at 40 and must end where the
    uninterrupted run ended: every weight, optimizer state, generator and counter equal. Each batch is
    drawn from a generator seeded by its index, so the batch Lightning had prefetched is drawn again."""
    run_dir = tmp_path / "run"
    args = [*OFFLINE, "--data.dataset", str(dataset), "--run_dir", str(run_dir)]
    killed = run(tmp_path, *args, fault=("kill_at_update", 45))
    assert killed.returncode == -9
    io = AtomicCheckpointIO()
    assert io.load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["Experience"]["counters"]["updates"] == 40
    resumed = run(tmp_path, *args, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    ours, reference = (io.load_checkpoint(d / "checkpoints" / "last.ckpt") for d in (run_dir, offline_run))
    assert differences(ours["state_dict"], reference["state_dict"]) == []
    assert differences(ours["optimizer_states"], reference["optimizer_states"]) == []
    assert differences(ours["Experience"], reference["Experience"]) == []


@pytest.mark.parametrize("flags, expected", [
    (["--data.dataset", "/nowhere/run"], "dataset /nowhere/run does not exist"),
    (["--data.dataset", str(ROOT / "configs")], "is not a dataset"),
    (["--data.env.image_size", "32"], "holds observations obs: image 1x44x44 uint8 but this run's data.env gives obs: image 1x32x32 uint8"),
    (["--data.env.task", "reach", "--data.env.image_size", "44"], "holds actions discrete, the action set of test/catch"),
    (["--data.max_updates", "null"], "an offline run (data.dataset) needs it as its budget"),
    # 686 rows (600 steps and 86 first frames) against 1 + 700 for a 700-step return
    (["--model.init_args.n_step", "700"], "holds 686 steps per environment, but Rainbow draws spans of 701"),
])
def test_a_dataset_that_cannot_be_used_stops_with_one_sentence(dataset, tmp_path, flags, expected):
    args = [*CATCH, "--data.max_updates", "10", "--data.dataset", str(dataset), *flags]
    line = one_sentence(run(tmp_path, *args))
    assert expected in line
    assert not (tmp_path / "runs").exists()


def test_cql_without_a_dataset_stops_with_one_sentence(tmp_path):
    line = one_sentence(run(tmp_path, *CATCH, "--model.init_args.cql_alpha", "1.0"))
    assert "CQL (model.init_args.cql_alpha) trains from a dataset: pass --data.dataset" in line


def test_collect_plays_a_checkpoints_policy_into_a_dataset_an_offline_run_can_train_from(dataset, tmp_path):
    import json

    from worldmodels.dataset import collect
    from worldmodels.replay.dataset import episodes, open_dataset

    out = collect(dataset, steps=70, out=tmp_path / "played", epsilon=1.0, seed=3)
    record = json.loads((out / "collected.json").read_text())
    assert (record["steps"], record["epsilon"], record["games"]) == (70, 1.0, 10)  # catch games last 7 steps
    data = open_dataset(out)
    assert data.replay.time == 70 + 10  # each step's frame and the first frame of each of the 10 games
    assert [length for _, length, _ in episodes(data.replay)] == [7] * 10
    assert sorted(ret for ret, _, _ in episodes(data.replay)) == sorted(record["scores"])
    trained = run(tmp_path, *CATCH, "--data.max_updates", "5", "--data.dataset", str(out), "--run_dir", str(tmp_path / "r"))
    assert trained.returncode == 0, trained.stderr[-3000:]
    with pytest.raises(Exception, match="is not empty"):
        collect(dataset, steps=7, out=out)


# ------------------------------------------------------------------------------ the shipped CQL config
def test_the_shipped_cql_atari_config_builds_qr_dqn_with_200_quantiles_on_pong_with_sticky_actions():
    import torch
    import yaml

    from model_free import Rainbow
    from worldmodels.envs import EnvConfig, make_env
    from worldmodels.training import EnvSpec

    config = yaml.safe_load((ROOT / "configs/cql_atari.yaml").read_text())
    env_config = EnvConfig(**config["data"]["env"])
    resolved = env_config.resolved()
    assert (resolved.sticky_actions, resolved.terminal_on_life_loss, resolved.noop_max) == (0.25, False, 0)
    for training in (True, False):  # sticky actions in training and in evaluation games, as Dopamine plays both
        env = make_env(env_config, seed=0, training=training)
        assert env.unwrapped.ale.getFloat("repeat_action_probability") == pytest.approx(0.25)
    agent = Rainbow(**config["model"]["init_args"])
    agent.build(EnvSpec.from_spaces(env.observation_space, env.action_space, resolved.frame_stack,
                                    resolved.action_repeat))
    assert agent.head == "quantile" and agent.hparams.cql_alpha == 1.0 and config["data"]["max_updates"] > 0
    obs, _ = env.reset(seed=0)
    with torch.no_grad():
        quantiles = agent.q(torch.as_tensor(obs)[None])
    assert quantiles.shape == (1, 6, 200)  # Pong's six actions, 200 quantiles each
    torch.testing.assert_close(agent.q_values(quantiles), quantiles.mean(-1))


def test_sticky_actions_reach_the_ale_and_a_probability_outside_0_to_1_stops_with_one_sentence():
    from worldmodels.envs import EnvConfig, make_env
    from worldmodels.errors import ConfigError

    for p in (0.0, 0.1):
        env = make_env(EnvConfig("atari", "breakout", preset="dqn", sticky_actions=p), seed=0)
        assert env.unwrapped.ale.getFloat("repeat_action_probability") == pytest.approx(p)
    assert EnvConfig("atari", "pong", preset="dqn").resolved().sticky_actions == 0.0  # the Atari 100k protocol
    for bad in (EnvConfig("atari", "pong", sticky_actions=1.0), EnvConfig("atari", "pong", sticky_actions=-0.1),
                EnvConfig("dmc", "walker-walk", sticky_actions=0.25)):
        with pytest.raises(ConfigError, match=r"env.sticky_actions is .*; use a probability in \[0, 1\)"):
            bad.resolved()
