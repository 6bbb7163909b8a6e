"""``worldmodels.evaluate`` and ``worldmodels.analysis.compare`` on what real runs leave on disk: two tiny runs
of different agents on the catch test task, and hand-written Atari runs whose aggregates are worked
out by hand."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, made_once, run_fit
from worldmodels.analysis.alix_curves import nd_target, running_mean
from worldmodels.analysis.compare import compare, mean_curve
from worldmodels.analysis.logged_metrics import logged_curve
from worldmodels.analysis.compare import main as compare_main
from worldmodels.evaluate import evaluate, load_agent
from worldmodels.evaluate import main as evaluate_main

TINY = ["--config", "tests/configs/nddqn_catch.yaml", "--data.total_env_steps", "300", "--data.warmup_steps", "200",
        "--evaluation.episodes", "3", "--evaluation.every_env_steps", "100"]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> dict[str, Path]:
    """NDDQN (seed 0) and DrQ(eps) (seed 1) on catch, 300 env steps each, evaluated at about 200 and at
    300; both are the Rainbow learner, told apart by their config names."""
    drq = ["--name", "drq_catch", "--model.init_args.augment", "true", "--model.init_args.epsilon_train", "0.01",
           "--model.init_args.epsilon_eval", "0.001", "--seed_everything", "1"]

    def make(root: Path) -> None:  # once for all workers: the tests read the runs, or write beside them
        for extra, run in [([], root / "nddqn"), (drq, root / "drq")]:
            done = run_fit(*TINY, *extra, "--run_dir", str(run), cwd=root)
            assert done.returncode == 0, done.stderr[-3000:]

    root = made_once(tmp_path_factory, "two_runs", make)
    return {"nddqn_catch": root / "nddqn", "drq_catch": root / "drq"}


def eval_rows(run: Path) -> list[tuple[int, float]]:
    with (run / "csv" / "metrics.csv").open() as f:
        return [(int(float(r["env_steps"])), float(r["eval/return_mean"])) for r in csv.DictReader(f)
                if r["eval/return_mean"]]


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    (line,) = [l for l in stderr.splitlines() if l.startswith("error:")]
    return line


# ----------------------------------------------------------------------------- evaluate
def test_evaluate_writes_the_returns_of_the_trained_policy_as_json_next_to_the_run(two_runs):
    run = two_runs["nddqn_catch"]
    written = evaluate_main(["--ckpt", str(run / "checkpoints" / "last.ckpt"), "--episodes", "4", "--seed", "3"])
    assert written == run / "eval-last.json"
    result = json.loads(written.read_text())
    assert (result["agent"], result["suite"], result["task"], result["seed"]) == ("Rainbow", "test", "catch", 0)
    assert result["name"] == "nddqn_catch"
    assert result["env_steps"] == 300 and result["episodes"] == 4 and result["eval_seed"] == 3
    assert len(result["returns"]) == 4 and set(result["returns"]) <= {-1.0, 1.0}  # a catch game scores +1 or -1
    assert result["mean"] == pytest.approx(np.mean(result["returns"]))
    assert result["std"] == pytest.approx(np.std(result["returns"]))
    assert result["human_normalized"] is None  # not an Atari game
    assert result["games_cut_short"] == 0
    # The same checkpoint and seed play the same games.
    again = evaluate(run / "checkpoints" / "last.ckpt", episodes=4, seed=3)
    assert again["returns"] == result["returns"]


def test_the_logged_evaluation_is_the_final_games_mean_and_spread_over_games(two_runs):
    """eval/return_mean and eval/return_std of the final evaluation are those of the games in
    eval-final.json. Catch games score +1 or -1, so the spread follows from the mean by hand: the
    standard deviation over the games played (ddof 0, numpy's default) is sqrt(1 - mean^2)."""
    run = two_runs["nddqn_catch"]
    final = json.loads((run / "eval-final.json").read_text())
    with (run / "csv" / "metrics.csv").open() as f:
        last = [r for r in csv.DictReader(f) if r["eval/return_mean"]][-1]
    mean = (final["returns"].count(1.0) - final["returns"].count(-1.0)) / len(final["returns"])
    assert float(last["eval/return_mean"]) == pytest.approx(mean)
    assert float(last["eval/return_std"]) == pytest.approx((1 - mean ** 2) ** 0.5)
    assert final["std"] == pytest.approx((1 - mean ** 2) ** 0.5)


def test_evaluate_says_when_max_steps_cut_the_games_short(two_runs, tmp_path, capsys):
    run = two_runs["nddqn_catch"]
    out = evaluate_main(["--ckpt", str(run), "--episodes", "2", "--max-steps", "2", "--out", str(tmp_path / "e.json")])
    assert json.loads(out.read_text())["games_cut_short"] == 2  # a catch game lasts more than 2 steps
    assert "2 games (2 cut short at --max-steps 2: partial scores" in capsys.readouterr().out


def test_the_evaluated_agent_carries_the_checkpoints_weights_and_counters(two_runs):
    ckpt = two_runs["drq_catch"] / "checkpoints" / "last.ckpt"
    trained = load_agent(ckpt)
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert trained.agent.hparams.augment and trained.agent.hparams.epsilon_eval == 0.001
    assert trained.agent.state_dict().keys() == saved.keys()
    assert all(torch.equal(value, saved[key]) for key, value in trained.agent.state_dict().items())
    assert trained.counters.env_steps == 300


def evaluate_error(ckpt: Path, capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        evaluate_main(["--ckpt", str(ckpt)])
    assert stop.value.code == 2
    return one_error_line(capsys.readouterr().err)


def test_evaluate_stops_with_one_sentence_for_a_missing_checkpoint_config_or_corrupt_file(tmp_path, capsys):
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert "does not exist" in evaluate_error(ckpt, capsys)
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"not a checkpoint")
    assert "config.yaml does not exist" in evaluate_error(ckpt, capsys)
    (tmp_path / "run" / "config.yaml").write_text((ROOT / "tests/configs/nddqn_catch.yaml").read_text())
    assert "corrupt" in evaluate_error(ckpt, capsys)


# ----------------------------------------------------------------------------- compare on real runs
def test_compare_turns_two_runs_of_different_agents_into_a_table_and_plots(two_runs, tmp_path):
    report = compare(list(two_runs.values()), tmp_path / "cmp", reps=2000)
    text = report.read_text()
    for agent, run in two_runs.items():
        steps, final = eval_rows(run)[-1]
        seed = "0" if agent == "nddqn_catch" else "1"
        assert f"| catch | {agent} | {seed} | {steps} | {final:.2f} |" in text
        # One run on one task: every aggregate is that run's final return, with a zero-width interval.
        assert f"| {agent} | 1 | 1 | " + " | ".join([f"{final:.2f} [{final:.2f}, {final:.2f}]"] * 3) + " |" in text
    assert "### Raw returns on catch" in text and "not human-normalised" in text
    for png in ("learning_curves.png", "aggregates.png"):
        data = (tmp_path / "cmp" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, png
    # What the learning-curve plot drew: each run's evaluations, as its CSV logged them.
    with (tmp_path / "cmp" / "learning_curves.csv").open() as f:
        drawn = list(csv.DictReader(f))
    for agent, run in two_runs.items():
        points = [(int(r["env_steps"]), float(r["return"])) for r in drawn if r["agent"] == agent]
        assert points == [(steps, pytest.approx(value)) for steps, value in eval_rows(run)]


def test_the_mean_curve_of_seeds_is_interpolated_on_their_common_steps_by_hand():
    # Seed a: evaluated at 0 and 10 (0 -> 10); seed b at 5 and 10 (1 -> 3). Common range 5..10.
    steps, mean = mean_curve([[(0, 0.0), (10, 10.0)], [(5, 1.0), (10, 3.0)]])
    assert steps.tolist() == [5, 10]
    assert mean.tolist() == pytest.approx([(5.0 + 1.0) / 2, (10.0 + 3.0) / 2])


def test_compare_stops_with_one_sentence_for_a_path_that_is_not_a_run(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    for path, expected in [(tmp_path / "nothing", "does not exist"), (tmp_path / "notes.txt", "neither a run")]:
        with pytest.raises(SystemExit) as stop:
            compare_main([str(path), "--out", str(tmp_path / "out")])
        assert stop.value.code == 2
        assert expected in one_error_line(capsys.readouterr().err)


# ----------------------------------------------------------------------------- compare on Atari runs, by hand
def write_run(run: Path, name: str, game: str, seed: int, evaluations: list[tuple[int, float]],
              resumed: list[tuple[int, float]] = (), games_cut_at: int | None = None,
              class_path: str = "model_free.Rainbow") -> Path:
    """A run directory as worldmodels.fit leaves it, as far as compare reads it."""
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"seed_everything: {seed}\nname: {name}\nmodel:\n  class_path: {class_path}\n"
                                     f"data:\n  env:\n    suite: atari\n    task: {game}\n"
                                     f"evaluation:\n  max_steps: {games_cut_at or 'null'}\n")
    for folder, rows in [("csv", evaluations), ("csv-resumed-20260101-000000", resumed)]:
        if rows:
            (run / folder).mkdir()
            lines = ["env_steps,eval/return_mean,train/td_loss", "50,,0.3"]
            lines += [f"{s},{r},\n{s + 1},,0.1" for s, r in rows]  # an evaluation row, then a training row
            (run / folder / "metrics.csv").write_text("\n".join(lines) + "\n")
    return run


def test_compare_aggregates_human_normalised_atari_scores_as_worked_out_by_hand(tmp_path):
    runs = [
        # Pong (random -20.7, human 14.6): final returns -20.7 and 14.6, HNS 0 and 1; the second run was resumed.
        write_run(tmp_path / "a0", "NDDQN", "pong", 0, [(100, -21.0), (200, -20.7)]),
        write_run(tmp_path / "a1", "NDDQN", "pong", 1, [(100, -21.0)], resumed=[(200, 14.6)]),
        # Breakout (random 1.7, human 30.5): 16.1 in both runs, HNS 0.5.
        write_run(tmp_path / "b0", "NDDQN", "breakout", 0, [(200, 16.1)]),
        write_run(tmp_path / "b1", "NDDQN", "breakout", 1, [(200, 3.0)]),
        write_run(tmp_path / "c0", "DrQAtari", "pong", 0, [(200, -20.7)]),
    ]
    # An evaluation file of run b1 replaces its final return (16.1, not 3.0) instead of counting as a third run.
    evaluation = {"class_path": "model_free.Rainbow", "name": "NDDQN", "suite": "atari", "task": "breakout", "seed": 1, "env_steps": 200,
                  "mean": 16.1, "run_dir": str(runs[3].resolve())}
    (tmp_path / "b1.json").write_text(json.dumps(evaluation))
    text = compare([*runs, tmp_path / "b1.json"], tmp_path / "cmp", reps=5000).read_text()

    assert "| pong | NDDQN | 0, 1 | 200 | -3.05 ± 17.65 | 0.500 |" in text
    assert "| breakout | NDDQN | 0, 1 | 200 | 16.10 ± 0.00 | 0.500 |" in text
    assert "| pong | DrQAtari | 0 | 200 | -20.70 | 0.000 |" in text
    # Per-task HNS means 0.5 and 0.5. Resampled pong means are 0, 0.5 or 1 (breakout stays 0.5), so the mean
    # over games is 0.25, 0.5 or 0.75; the pooled IQM of {x, y, 0.5, 0.5} with x, y in {0, 1} too.
    assert "| NDDQN | 2 | 4 | " + " | ".join(["0.500 [0.250, 0.750]"] * 3) + " |" in text
    assert "| DrQAtari | 1 | 1 | " + " | ".join(["0.000 [0.000, 0.000]"] * 3) + " |" in text
    assert "different games" in text  # DrQ only played pong


def test_compare_can_group_runs_by_their_agent_class(tmp_path):
    runs = [write_run(tmp_path / "a", "nddqn_atari", "pong", 0, [(200, 0.0)]),
            write_run(tmp_path / "b", "dreamer_atari", "pong", 0, [(200, 1.0)], class_path="worldmodels.dreamer.DreamerV3")]
    text = compare(runs, tmp_path / "cmp", group_by="agent", reps=100).read_text()
    assert "| pong | DreamerV3 | 0 | 200 | 1.00 |" in text and "| pong | Rainbow | 0 | 200 | 0.00 |" in text


def test_compare_flags_returns_of_evaluation_games_cut_short(tmp_path):
    run = write_run(tmp_path / "smoke", "NDDQN", "pong", 0, [(205, -2.0)], games_cut_at=100)
    text = compare([run], tmp_path / "cmp", reps=100).read_text()
    assert "| pong | NDDQN | 0 | 205 | -2.00 † |" in text and "† evaluation games cut after" in text


def published_csv_row(game: str) -> dict[str, str]:
    """The shipped table's row of ``game``, read as text (not through worldmodels.analysis.published)."""
    with (ROOT / "worldmodels" / "data" / "atari100k_published.csv").open(newline="") as f:
        return next(row for row in csv.DictReader(f) if row["game"] == game)


def mapping_row(text: str, agent: str) -> str:
    """``agent``'s row in the report's table of which published agent each of ours is."""
    lines = text.splitlines()
    start = lines.index("| agent (ours) | the published agent it is | published figures of that agent | band among | note |")
    return next(line for line in lines[start:] if line.startswith(f"| {agent} | "))


def test_atari_runs_are_placed_beside_the_published_scores_and_among_the_drq_eps_runs(tmp_path):
    # Boxing (data/atari100k_published.csv): DrQ(eps) mean 9.0, p10 5.7, p25 7.0, p50 8.5, p90 13.9; DrQ paper 6.
    runs = [write_run(tmp_path / "a", "drq_atari", "boxing", 0, [(100_000, 7.5)]),
            write_run(tmp_path / "b", "drq_atari", "boxing", 1, [(100_000, 15.0)])]
    text = compare(runs, tmp_path / "cmp", reps=100).read_text()
    # drq_atari is DrQ(eps): beside DrQ(eps)'s own figure only; the DrQ paper's 6.0 (epsilon 0.1 / 0.05, another
    # agent) is in the table of every published column, not in drq_atari's row.
    assert ("| Boxing | drq_atari | 2 | 11.2 | p25-p50, above p90 | DrQ(ε), 100 runs (its own agent) | "
            "5.7 / 8.5 / 13.9 | DrQ(ε), 100 runs: 9.0 |") in text
    # HNS of the mean 11.25 on Boxing (random 0.1, human 12.1): 11.15 / 12 = 0.929; DrQ(eps)'s 9.0: 0.742.
    assert "| drq_atari (ours) | 0.929 | 0.929 | | |" in text
    assert "| DrQ(ε), 100 runs | 0.742 | 0.742 | 0.465 |" in text
    assert (tmp_path / "cmp" / "published.png").read_bytes()[:4] == b"\x89PNG"


def test_a_der_atari_run_is_placed_among_dopamines_100_der_runs_not_van_hasselts_der(tmp_path):
    # Boxing, Dopamine's DER (DER.gin), 100 runs: mean -0.3, p10 -3.3, p25 -1.6, p50 0.1, p75 1.2, p90 2.1;
    # van Hasselt et al.'s DER (the `der` column, 5 seeds) 0.2; DrQ(eps)'s p10 5.7.
    row = published_csv_row("Boxing")
    assert [row[f"der_100runs_{k}"] for k in ("mean", "p10", "p25", "p50", "p75", "p90")] == [
        "-0.3", "-3.3", "-1.6", "0.1", "1.2", "2.1"]
    assert row["der"] == "0.2" and row["drq_eps_p10"] == "5.7"
    runs = [write_run(tmp_path / "a", "der_atari", "boxing", 0, [(100_000, 1.0)]),
            write_run(tmp_path / "b", "der_atari", "boxing", 1, [(100_000, 3.0)])]
    text = compare(runs, tmp_path / "cmp", reps=100).read_text()
    # 1.0 lies in p50-p75 (0.1 .. 1.2) and 3.0 above p90 (2.1) of Dopamine's DER; among DrQ(eps)'s runs both would
    # be below p10. The mean of the two is 2.0.
    assert ("| Boxing | der_atari | 2 | 2.0 | p50-p75, above p90 | DER (Dopamine DER.gin), 100 runs (its own agent) | "
            "-3.3 / 0.1 / 2.1 | DER (Dopamine DER.gin), 100 runs: -0.3 |") in text
    # The source is named: the paper of the 100 runs, Dopamine's config, and the per-run file with its commit.
    mapping = mapping_row(text, "der_atari")
    for source in ("arXiv 2108.13264", "google/dopamine dopamine/labs/atari_100k (DER.gin",
                   "RLE-Foundation/rllte hsuanwu/evaluation/atari_100k/DER.json at commit ddd76d5"):
        assert source in mapping
    assert "van Hasselt" in mapping and "not used for der_atari" in mapping
    # van Hasselt et al.'s DER keeps its column, under its own name.
    assert "| DER of van Hasselt et al. 2019 (n=20), 5 seeds |" in text
    # HNS (Boxing: random 0.1, human 12.1): ours (2.0 - 0.1) / 12 = 0.158; Dopamine DER's -0.3: -0.033.
    assert "| der_atari (ours) | 0.158 | 0.158 | | |" in text
    assert "| DER (Dopamine DER.gin), 100 runs | -0.033 | -0.033 |" in text


def test_an_nddqn_atari_run_is_said_to_be_placed_among_another_agents_runs(tmp_path):
    # Boxing, DrQ's 100 runs (epsilon 0.1 / 0.05, as NDDQN's): p10 4.2, p25 5.3, p50 6.6, p90 9.0; DrQ(eps)'s p10
    # 5.7; NDDQN as quoted by the reproducibility report -1.8, its reproduction 4.0.
    row = published_csv_row("Boxing")
    assert [row[f"drq_100runs_{k}"] for k in ("p10", "p25", "p50", "p90")] == ["4.2", "5.3", "6.6", "9.0"]
    assert (row["nddqn_seed001_quoted"], row["nddqn_seed001_reproduction"]) == ("-1.8", "4.0")
    runs = [write_run(tmp_path / "a", "nddqn_atari", "boxing", 0, [(100_000, 5.0)]),
            write_run(tmp_path / "b", "dqn_atari", "boxing", 0, [(100_000, 0.0)])]
    text = compare(runs, tmp_path / "cmp", reps=100).read_text()
    # 5.0 lies in DrQ's p10-p25 (4.2 .. 5.3); the row says those runs are not NDDQN's.
    assert ("| Boxing | nddqn_atari | 1 | 5.0 | p10-p25 | DrQ (ε 0.1 / 0.05), 100 runs: another agent's runs, not "
            "its own | 4.2 / 6.6 / 9.0 | NDDQN (quoted by the report): -1.8; NDDQN (the report's reproduction): 4.0 |"
            ) in text
    mapping = mapping_row(text, "nddqn_atari")
    assert "no per-run figures of NDDQN are published" in mapping
    # DQN has no published figure at all: said in words, and placed among DrQ(eps)'s runs (0.0 below its p10 5.7).
    assert ("| Boxing | dqn_atari | 1 | 0.0 | below p10 | DrQ(ε), 100 runs: another agent's runs, not its own | "
            "5.7 / 8.5 / 13.9 | none published |") in text


def unevaluated_run(run: Path, name: str, metrics_csv: str, init_args: str = "") -> Path:
    """A Boxing run directory with training metrics only (no evaluation yet); ``init_args``: YAML lines
    of the model's arguments."""
    run.mkdir()
    (run / "config.yaml").write_text(f"seed_everything: 0\nname: {name}\nmodel:\n  class_path: model_free.Rainbow\n"
                                     f"{init_args}data:\n  env:\n    suite: atari\n    task: boxing\n")
    (run / "csv").mkdir()
    (run / "csv" / "metrics.csv").write_text(metrics_csv)
    return run


def test_a_run_not_evaluated_yet_shows_only_its_training_returns(tmp_path):
    run = unevaluated_run(tmp_path / "running", "drq_atari", "env_steps,train/episode_return\n1786,1.0\n3572,-3.0\n")
    text = compare([run], tmp_path / "cmp", reps=100).read_text()
    assert "No run has been evaluated yet" in text and "running (3572 env steps)" in text
    assert (tmp_path / "cmp" / "training_returns.png").is_file()


def test_an_alix_run_gets_a_plot_of_its_strength_and_nd_score_with_its_target(tmp_path):
    run = unevaluated_run(tmp_path / "alix", "alix_atari",
                          "env_steps,train/alix_s,train/nd_score,train/episode_return\n"
                          "100,1.0,0.9,\n200,0.9,0.7,\n250,,,2.0\n",
                          init_args="  init_args:\n    alix_target_nd: 0.6\n")
    text = compare([run, write_run(tmp_path / "drq", "drq_atari", "boxing", 0, [(200, 1.0)])], tmp_path / "cmp",
                   reps=100).read_text()
    assert "(alix_strength.png)" in text and (tmp_path / "cmp" / "alix_strength.png").is_file()
    assert logged_curve(run, "train/alix_s") == [(100, 1.0), (200, 0.9)]
    assert nd_target(run) == 0.6


def test_the_running_mean_of_nd_scores_averages_the_last_window_points_by_hand():
    assert running_mean(np.array([1.0, 3.0, 5.0, 7.0]), 2).tolist() == [2.0, 4.0, 6.0]
    assert running_mean(np.array([1.0, 3.0]), 20).tolist() == [2.0]  # a window longer than the run: one mean


def test_evaluate_video_holds_the_first_game_frame_by_frame(two_runs, tmp_path):
    import imageio.v2 as imageio

    run = two_runs["nddqn_catch"]
    out = evaluate_main(["--ckpt", str(run), "--episodes", "2", "--video", "--out", str(tmp_path / "e.json")])
    frames = imageio.mimread(out.with_suffix(".mp4"))
    # A catch game is 7 agent steps; the video shows the frame the agent saw before each of them, in
    # RGB at the run's 44 px (the gray frame repeated on three channels).
    assert len(frames) == 7 and frames[0].shape == (44, 44, 3)
