"""Published Atari 100k scores per game (``worldmodels/data/atari100k_published.csv``; its README
names every column's source), and where one of our runs falls among the 100 published DrQ(eps) runs.

    from worldmodels.published import published_scores, drq_eps_band
    published_scores()["Boxing"]["drq_eps_mean"]    # 9.0
    drq_eps_band("boxing", 7.5)                     # 'p25-p50'
"""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

import numpy as np

from worldmodels.scores import atari_100k_game, human_normalized

CSV_PATH = Path(__file__).parent / "data" / "atari100k_published.csv"

# The published agents shown beside ours: column -> label (sources in data/README.md).
PUBLISHED_AGENTS = {
    "drq_eps_mean": "DrQ(ε), 100 runs",
    "drq_paper": "DrQ paper",
    "der": "DER",
    "alix": "A-LIX",
    "spr_paper": "SPR",
    "dreamerv3": "DreamerV3",
    "nddqn_seed001_quoted": "NDDQN (quoted by the report)",
    "drq_seed001_quoted": "DrQ (quoted by the report)",
    "nddqn_seed001_reproduction": "NDDQN (the report's reproduction)",
    "drq_seed001_reproduction": "DrQ (the report's reproduction)",
}
PERCENTILES = (10, 25, 50, 75, 90)


@lru_cache(maxsize=1)
def published_scores() -> dict[str, dict[str, float]]:
    """Game (as the papers print it) -> column -> score."""
    with CSV_PATH.open(newline="") as f:
        return {row["game"]: {k: float(v) for k, v in row.items() if k != "game" and v not in ("", None)}
                for row in csv.DictReader(f)}


def drq_eps_percentiles(game: str) -> list[float]:
    """DrQ(eps)'s p10, p25, p50, p75, p90 over its 100 published runs on ``game``."""
    row = published_scores()[atari_100k_game(game)]
    return [row[f"drq_eps_p{p}"] for p in PERCENTILES]


def drq_eps_band(game: str, score: float) -> str:
    """Where ``score`` falls among DrQ(eps)'s 100 published runs on ``game``: ``below p10``,
    ``p10-p25``, ``p25-p50``, ``p50-p75``, ``p75-p90`` or ``above p90`` (a score on a boundary
    belongs to the band above it, except p90, which closes the p75-p90 band)."""
    cuts = drq_eps_percentiles(game)
    if score < cuts[0]:
        return "below p10"
    if score > cuts[-1]:
        return "above p90"
    for (low_p, high_p), high in zip(zip(PERCENTILES, PERCENTILES[1:]), cuts[1:]):
        if score < high or high_p == 90:
            return f"p{low_p}-p{high_p}"
    raise AssertionError("unreachable")


def published_hns(column: str, games: list[str]) -> np.ndarray:
    """Human-normalised scores of the published ``column`` on ``games`` (games it lacks are left out)."""
    table = published_scores()
    return np.array([human_normalized(g, table[atari_100k_game(g)][column]) for g in games
                     if column in table[atari_100k_game(g)]])
