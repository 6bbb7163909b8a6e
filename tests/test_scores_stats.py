"""Human-normalised scores and rliable's aggregates, against values worked out by hand."""

import re

import numpy as np
import pytest

from worldmodels.envs.atari import ale_id
from worldmodels.errors import ConfigError
from worldmodels.analysis.published import drq_eps_band, published_hns, published_scores
from worldmodels.analysis.scores import ATARI_100K_SCORES, atari_100k_game, human_normalized
from worldmodels.analysis.stats import (aggregate_mean, aggregate_median, interquartile_mean,
                               stratified_bootstrap_interval)


# ----------------------------------------------------------------------------- human-normalised score
def test_human_normalised_scores_of_pong_and_breakout_by_hand():
    # Pong: random -20.7, human 14.6. Breakout: random 1.7, human 30.5.
    assert human_normalized("pong", -20.7) == pytest.approx(0.0)
    assert human_normalized("pong", 14.6) == pytest.approx(1.0)
    assert human_normalized("pong", 0.0) == pytest.approx(20.7 / 35.3)
    assert human_normalized("breakout", 16.1) == pytest.approx(14.4 / 28.8)  # = 0.5
    assert human_normalized("breakout", 59.3) == pytest.approx(2.0)


def test_config_names_and_paper_names_are_the_same_game():
    assert human_normalized("ms_pacman", 3629.45) == pytest.approx(0.5)  # halfway between 307.3 and 6951.6
    assert human_normalized("MsPacman", 3629.45) == human_normalized("mspacman", 3629.45) == pytest.approx(0.5)
    assert atari_100k_game("up_n_down") == "UpNDown" and atari_100k_game("KUNG_FU_MASTER") == "KungFuMaster"


def test_the_table_has_the_26_atari_100k_games_under_the_names_ale_py_uses():
    assert len(ATARI_100K_SCORES) == 26
    for name, (random, human) in ATARI_100K_SCORES.items():
        snake = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()  # UpNDown -> up_n_down, as configs name games
        assert ale_id(snake) == f"ALE/{name}-v5"
        assert atari_100k_game(snake) == name
        assert human > random


def test_an_unknown_game_fails_with_one_sentence_naming_it():
    with pytest.raises(ConfigError, match="'pongg' is not one of the 26 Atari 100k games"):
        human_normalized("pongg", 0.0)


# ----------------------------------------------------------------------------- aggregates
# Three tasks, four runs each (rliable's matrix is runs x tasks).
SCORES = np.array([[1, 10, 0], [2, 20, 0], [3, 30, 0], [4, 100, 8]], dtype=float)


def test_mean_and_median_are_taken_over_the_per_task_means():
    # Task means 2.5, 40 and 2.
    assert aggregate_mean(SCORES) == pytest.approx(44.5 / 3)
    assert aggregate_median(SCORES) == pytest.approx(2.5)


def test_interquartile_mean_of_pooled_runs_by_hand():
    # 12 scores sorted: 0 0 0 1 2 3 4 8 10 20 30 100; drop 3 at each end; mean of 1 2 3 4 8 10.
    assert interquartile_mean(SCORES) == pytest.approx(28 / 6)
    # 10 scores: int(2.5) = 2 dropped at each end, as scipy's trim_mean does: mean of 3..8.
    assert interquartile_mean([np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 100.0])]) == pytest.approx(5.5)
    assert interquartile_mean([np.array([0, 1, 2, 3, 100.0])]) == pytest.approx(2.0)  # int(1.25) = 1 dropped
    assert interquartile_mean([np.array([7.0])]) == pytest.approx(7.0)


def test_interquartile_mean_equals_scipys_trimmed_mean_as_rliable_computes_it():
    scipy_stats = pytest.importorskip("scipy.stats")
    scores = np.random.default_rng(3).normal(size=(7, 5))
    assert interquartile_mean(scores) == pytest.approx(scipy_stats.trim_mean(scores, 0.25, axis=None))


def test_statistics_of_a_batch_of_resamples_equal_those_of_each_resample():
    rng = np.random.default_rng(0)
    batch = [rng.normal(size=(6, 3)), rng.normal(size=(6, 5))]  # two tasks, 3 and 5 runs, 6 resamples
    for statistic in (aggregate_mean, aggregate_median, interquartile_mean):
        each = [statistic([task[i] for task in batch]) for i in range(6)]
        np.testing.assert_allclose(statistic(batch), each)


# ----------------------------------------------------------------------------- stratified bootstrap
def test_two_runs_scoring_zero_and_one_give_the_interval_zero_to_one():
    # Resampled means are 0, 0.5 and 1 with probabilities 1/4, 1/2, 1/4: the 2.5th percentile is 0, the 97.5th 1.
    assert stratified_bootstrap_interval([np.array([0.0, 1.0])], aggregate_mean, seed=0) == (0.5, 0.0, 1.0)


def test_a_constant_task_adds_no_width_and_shifts_the_mean_interval_by_hand():
    # Mean over tasks of (m, 5), m in {0, 0.5, 1}: the interval is [(0 + 5) / 2, (1 + 5) / 2].
    interval = stratified_bootstrap_interval([np.array([0.0, 1.0]), np.array([5.0, 5.0])], aggregate_mean, seed=1)
    assert interval == pytest.approx((2.75, 2.5, 3.0))
    assert stratified_bootstrap_interval([np.array([3.0, 3.0, 3.0])], interquartile_mean) == (3.0, 3.0, 3.0)


def test_resampling_is_stratified_by_task():
    # Every resample keeps two runs of each task, so the pooled IQM is always the mean of 0, 0, 1, 1's middle:
    # 0.5. Resampling the four runs without strata would often draw three zeros or three ones.
    interval = stratified_bootstrap_interval([np.array([0.0, 0.0]), np.array([1.0, 1.0])], interquartile_mean)
    assert interval == (0.5, 0.5, 0.5)


def test_interval_on_fixed_data_with_a_fixed_seed_matches_a_plain_loop():
    tasks = [np.array([0.1, 0.4, 0.35, 0.8, 0.2]), np.array([1.5, 0.9, 1.1]), np.array([0.0, 0.05, 0.6, 0.3])]
    reps, seed = 2000, 42
    interval = stratified_bootstrap_interval(tasks, interquartile_mean, reps=reps, seed=seed)

    rng = np.random.default_rng(seed)  # the same draws, one resample at a time, IQM written out plainly
    draws = [rng.integers(0, len(task), size=(reps, len(task))) for task in tasks]
    iqms = []
    for rep in range(reps):
        pooled = sorted(value for task, idx in zip(tasks, draws) for value in task[idx[rep]])
        quarter = len(pooled) // 4  # 12 scores: 3 dropped at each end
        iqms.append(np.mean(pooled[quarter:len(pooled) - quarter]))
    assert interval.low == pytest.approx(np.percentile(iqms, 2.5))
    assert interval.high == pytest.approx(np.percentile(iqms, 97.5))
    assert interval.low < interval.estimate < interval.high
    assert stratified_bootstrap_interval(tasks, interquartile_mean, reps=reps, seed=seed) == interval


# ------------------------------------------------------------------------------ published Atari 100k figures


def test_the_shipped_table_gives_the_papers_aggregates_over_the_26_games():
    games = list(ATARI_100K_SCORES)
    assert len(published_scores()) == 26
    # As the papers print them (Agarwal et al. 2021, arXiv 2108.13264; Kostrikov et al. 2020, arXiv 2004.13649;
    # van Hasselt et al. 2019, arXiv 1906.05243; Cetin et al. 2022, arXiv 2207.00986; Schwarzer et al. 2021): DrQ(eps) 100 runs 0.465 / 0.313, DrQ 0.357 / 0.268, DER 0.285 /
    # 0.161, A-LIX 0.753 / 0.411, SPR 0.704 / 0.415 (mean / median human-normalised score).
    for column, mean, median in [("drq_eps_mean", 0.465, 0.313), ("drq_paper", 0.357, 0.268), ("der", 0.285, 0.161),
                                 ("alix", 0.753, 0.411), ("spr_paper", 0.704, 0.415)]:
        hns = published_hns(column, games)
        assert len(hns) == 26
        assert hns.mean() == pytest.approx(mean, abs=0.0015), column
        assert np.median(hns) == pytest.approx(median, abs=0.0015), column


def test_a_run_is_placed_in_its_band_among_the_100_published_drq_eps_runs():
    # Boxing: p10 5.7, p25 7.0, p50 8.5, p75 10.6, p90 13.9 (data/atari100k_published.csv).
    bands = {score: drq_eps_band("boxing", score) for score in (5.0, 5.7, 6.9, 7.0, 9.0, 11.0, 13.9, 14.0)}
    assert bands == {5.0: "below p10", 5.7: "p10-p25", 6.9: "p10-p25", 7.0: "p25-p50", 9.0: "p50-p75",
                     11.0: "p75-p90", 13.9: "p75-p90", 14.0: "above p90"}
