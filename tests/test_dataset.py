"""A run directory's replay as a dataset: rebuilt as a resume rebuilds it, its episodes counted by hand,
and one sentence for what is not a dataset."""

import pytest
import torch
import yaml

from test_replay import fill
from worldmodels.dataset import info, main
from worldmodels.replay.dataset import episodes, open_dataset
from worldmodels.errors import ConfigError
from worldmodels.replay import Replay
from worldmodels.training import AtomicCheckpointIO

ENV = {"suite": "test", "task": "catch", "image_size": 16, "grayscale": True, "frame_stack": 1}


def written_run(tmp_path, replay: Replay):
    """A run directory as fit leaves it: config.yaml, the checkpoint's replay cursor, replay/ chunks."""
    run = tmp_path / "run"
    replay.persist(run / "replay")
    AtomicCheckpointIO().save_checkpoint({"Experience": {"replay": replay.state_dict()}}, run / "checkpoints" / "last.ckpt")
    config = {"model": {"class_path": "model_free.Rainbow"}, "data": {"env": ENV, "replay_capacity": 40, "num_envs": 2}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    return run


def test_a_run_directory_opens_as_its_replay_with_its_episodes_and_returns(tmp_path):
    replay = Replay(40, num_envs=2, frame_stack=1, frame_channels=1)
    # Column 0: episode 0 is rows 0..5 (ends terminal at 5), episode 2 starts at row 6, cut at row 11.
    # Column 1: episode 1 is rows 0..11, cut. Rewards: t + 10 e on each row after a first one.
    fill(replay, 12, 2, first={(6, 0)}, terminal={(5, 0)}, reward=lambda t, e: t + 10 * e)
    data = open_dataset(written_run(tmp_path, replay))
    t = torch.arange(12)[:, None].expand(12, 2)
    assert torch.equal(data.replay.frames(t, torch.arange(2).expand(12, 2)), replay.frames(t, torch.arange(2).expand(12, 2)))
    # Episode 0: rewards of rows 1..5 = 15, 5 steps; episode 1 (column 1): rows 1..11 = 66 + 110 = 176,
    # 11 steps, ended where the run stopped; episode 2: rows 7..11 = 45, 5 steps.
    assert episodes(data.replay) == [(15.0, 5, True), (176.0, 11, True), (45.0, 5, True)]
    text = info(tmp_path / "run" / "replay")
    assert "episodes: 3 with rows stored, 3 whole" in text and "mean 78.67" in text


def test_what_is_not_a_dataset_gets_one_sentence(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["info", str(tmp_path / "nowhere")])
    assert stopped.value.code == 2 and "does not exist" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="is not a dataset"):
        open_dataset(tmp_path)
