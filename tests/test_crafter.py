"""Crafter's protocol (Hafner 2021, "Benchmarking the Spectrum of Agent Capabilities", arXiv 2109.06780):
its score is the geometric mean of the 22 achievements' success rates, in percent, offset by 1:

    S = exp(mean_i ln(1 + s_i)) - 1

checked here by hand on evaluation records, and end to end on a smoke run of the shipped config."""

import json
import math

import pytest

from worldmodels.analysis.compare import read_eval_json
from worldmodels.envs import EnvConfig
from worldmodels.envs.crafter_suite import ACHIEVEMENTS
from worldmodels.training.evaluation import evaluation_record


def games(*unlocked: set[str]) -> list[dict[str, float]]:
    """What each game reports at its end: 1.0 for the achievements it unlocked, 0.0 for the others."""
    return [{f"achievement_{name}": float(name in game) for name in ACHIEVEMENTS} for game in unlocked]


def test_the_crafter_score_of_an_evaluation_is_the_geometric_mean_of_its_success_rates(tmp_path):
    # Four games: wood in all four (100 %), a table in two (50 %), waking up in one (25 %), nothing else.
    extras = games({"collect_wood", "place_table", "wake_up"}, {"collect_wood", "place_table"}, {"collect_wood"},
                   {"collect_wood"})
    record = evaluation_record(type("Agent", (), {})(), EnvConfig("crafter"), {"model": {"class_path": "x.Agent"}},
                               None, [1.0, 2.0, 0.0, 1.0], 0, None, None, None, extras=extras)
    by_hand = math.exp((math.log(101) + math.log(51) + math.log(26) + 19 * math.log(1)) / 22) - 1  # 0.8467 %
    assert record["crafter_score"] == pytest.approx(by_hand, rel=1e-12)
    assert record["extras_mean"]["achievement_place_table"] == 0.5
    assert record["extras_mean"]["achievement_collect_diamond"] == 0.0
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(record))
    assert read_eval_json(path, "name").crafter_score == pytest.approx(by_hand)  # as compare reads it


def test_a_game_of_no_achievement_scores_zero_and_every_achievement_in_every_game_scores_100():
    config = EnvConfig("crafter")
    nothing = evaluation_record(object(), config, {"model": {"class_path": "x.A"}}, None, [0.0], 0, None, None, None,
                                extras=games(set()))
    everything = evaluation_record(object(), config, {"model": {"class_path": "x.A"}}, None, [22.0], 0, None, None,
                                   None, extras=games(set(ACHIEVEMENTS)))
    assert nothing["crafter_score"] == 0.0 and everything["crafter_score"] == pytest.approx(100.0)


@pytest.mark.integration
def test_the_shipped_crafter_config_runs_logs_each_achievement_and_scores_its_evaluation(fit, tmp_path):
    """configs/dreamer_crafter.yaml with configs/smoke.yaml at size XS on 4 sequences of 24 steps (size
    XL's updates on 16 x 64 steps cost minutes on one core) in a 24x24 world instead of 64x64 (Crafter
    1.8.3 draws its terrain with pure-Python noise: about 10 s per new 64x64 world here)."""
    # Games of at most 100 steps (a time limit, not smoke.yaml's cut of evaluation games, which leaves a
    # game unfinished): every game ends and reports its achievements, in training and in evaluation.
    done = fit("--config", "configs/dreamer_crafter.yaml", "--config", "configs/smoke.yaml",
               "--model.init_args.size", "XS", "--model.init_args.batch_size", "4",
               "--model.init_args.seq_len", "24", "--data.max_updates", "3", "--data.env.kwargs", '{"area": [24, 24]}',
               "--data.env.max_episode_steps", "100", "--evaluation.max_steps", "null",
               "--data.replay_storage", "memory", "--run_dir", str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr[-3000:]
    header = (tmp_path / "run" / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {f"train/achievement_{name}" for name in ACHIEVEMENTS} <= set(header)
    assert {f"eval/achievement_{name}" for name in ACHIEVEMENTS} | {"eval/crafter_score"} <= set(header)
    record = json.loads((tmp_path / "run" / "eval-final.json").read_text())
    rates = [100.0 * record["extras_mean"][f"achievement_{name}"] for name in ACHIEVEMENTS]
    by_hand = math.exp(sum(math.log(1.0 + s) for s in rates) / 22) - 1
    assert record["crafter_score"] == pytest.approx(by_hand)
