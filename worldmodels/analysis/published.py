"""Published Atari 100k scores per game (``worldmodels/data/atari100k_published.csv``; its README
names every column's source), which published agent each of our presets is (``agent_reference``), and
where one of our runs falls among the 100 published runs of an agent (``percentile_band``).

    from worldmodels.analysis.published import agent_reference, percentile_band, published_scores
    published_scores()["Boxing"]["drq_eps_mean"]    # 9.0
    agent_reference("der_atari").band               # 'der_100runs': Dopamine's DER, not van Hasselt et al.'s
    percentile_band("drq_eps", "boxing", 7.5)       # 'p25-p50'
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from worldmodels.analysis.scores import atari_100k_game, human_normalized

CSV_PATH = Path(__file__).parent.parent / "data" / "atari100k_published.csv"

# The published agents shown beside ours: column -> label (sources in SOURCES and data/README.md). Each
# column is one agent's figures; AGENT_REFERENCES says which of them are the agent of each of our presets.
PUBLISHED_AGENTS = {
    "drq_eps_mean": "DrQ(ε), 100 runs",
    "der_100runs_mean": "DER (Dopamine DER.gin), 100 runs",
    "drq_100runs_mean": "DrQ (ε 0.1 / 0.05), 100 runs",
    "drq_paper": "DrQ paper",
    "der": "DER of van Hasselt et al. 2019 (n=20), 5 seeds",
    "alix": "A-LIX",
    "spr_paper": "SPR",
    "dreamerv3": "DreamerV3",
    "nddqn_seed001_quoted": "NDDQN (quoted by the report)",
    "drq_seed001_quoted": "DrQ (quoted by the report)",
    "nddqn_seed001_reproduction": "NDDQN (the report's reproduction)",
    "drq_seed001_reproduction": "DrQ (the report's reproduction)",
}
PERCENTILES = (10, 25, 50, 75, 90)

_PRECIPICE = ('Agarwal et al. 2021, "Deep Reinforcement Learning at the Edge of the Statistical Precipice", '
              "arXiv 2108.13264")
_RLLTE = "RLE-Foundation/rllte hsuanwu/evaluation/atari_100k/{} at commit ddd76d5ac244097975f55893092027ddba21709f"
_ALIX_TABLE = ('the A-LIX paper\'s Table 5 (Cetin et al. 2022, "Stabilizing Off-Policy Deep Reinforcement '
               'Learning from Pixels", arXiv 2207.00986)')
# Where each column's figures come from, in words a reader can follow (data/README.md has the details).
SOURCES = {
    "drq_eps_mean": f"{_PRECIPICE}: 100 runs per game, each the mean of 100 evaluation games; per-run file "
                    "eloialonso/iris results/data/DrQ(eps).json at commit 24326aaaa283c527f42b89b44cfdecf2665a7a16",
    "der_100runs_mean": f"{_PRECIPICE}: DER as re-implemented in google/dopamine dopamine/labs/atari_100k "
                        f"(DER.gin, 10-step returns), 100 runs per game; per-run file {_RLLTE.format('DER.json')}",
    "drq_100runs_mean": f"{_PRECIPICE}: DrQ with its own ε (0.1 in training, 0.05 in evaluation), run with the "
                        "DrQ authors' code (the paper's appendix A.2), 100 runs per game; per-run file "
                        f"{_RLLTE.format('DrQ.json')}",
    "drq_paper": 'Kostrikov et al. 2020, "Image Augmentation Is All You Need", arXiv 2004.13649, 5 seeds, as '
                 f"reprinted in {_ALIX_TABLE}",
    "der": 'van Hasselt et al. 2019, "When to use parametric models in reinforcement learning?", arXiv 1906.05243 '
           "(20-step returns, two 5x5 stride-5 convolutions, 256 hidden units), 5 seeds, as reprinted in "
           f"{_ALIX_TABLE}",
    "alix": f"{_ALIX_TABLE}, 10 seeds",
    "spr_paper": f"SPR (Schwarzer et al. 2021), 10 seeds, as reprinted in {_ALIX_TABLE}",
    "dreamerv3": 'Hafner et al. 2023, "Mastering Diverse Domains through World Models", arXiv 2301.04104, per game '
                 "as reprinted in the DIAMOND paper's Table 1 (Alonso et al. 2024, arXiv 2405.12399)",
    "nddqn_seed001_quoted": "NDDQN as quoted (\"Theirs\") in the DrQ reproducibility report's Table 1",
    "drq_seed001_quoted": "DrQ as quoted (\"Theirs\") in the DrQ reproducibility report's Table 1",
    "nddqn_seed001_reproduction": "the DrQ reproducibility report's own NDDQN runs (5 seeds), its Table 1",
    "drq_seed001_reproduction": "the DrQ reproducibility report's own DrQ runs (5 seeds), its Table 1",
}

# Per-game percentiles over 100 published runs: column prefix (``<prefix>_p10`` ... ``_p90``) -> whose runs.
BANDS = {
    "drq_eps": "DrQ(ε), 100 runs",
    "der_100runs": "DER (Dopamine DER.gin), 100 runs",
    "drq_100runs": "DrQ (ε 0.1 / 0.05), 100 runs",
}


@dataclass(frozen=True)
class AgentReference:
    """The published figures one of our presets (a config's ``name``) is compared with."""

    agent: str  # the published agent the preset is, in words
    figures: tuple[str, ...]  # columns of PUBLISHED_AGENTS produced by that very agent (empty: none published)
    band: str  # key of BANDS: the 100 published runs each of our runs is placed among
    own_band: bool  # whether those 100 runs are of the preset's own agent
    note: str  # what stands in for what, and why, in words

    def band_words(self) -> str:
        """Whose 100 runs the band is drawn from, said outright when they are not the preset's own agent's."""
        if self.own_band:
            return f"{BANDS[self.band]} (its own agent)"
        return f"{BANDS[self.band]}: another agent's runs, not its own"


AGENT_REFERENCES = {
    "drq_atari": AgentReference(
        "DrQ(ε): DrQ with ε 0.01 / 0.001 (google/dopamine labs/atari_100k/configs/DrQ_eps.gin)",
        ("drq_eps_mean",), "drq_eps", True,
        "the DrQ paper's own setting, ε 0.1 / 0.05, is another agent: the `drq_paper` and DrQ 100-run columns"),
    "der_atari": AgentReference(
        "DER as google/dopamine labs/atari_100k/configs/DER.gin (10-step returns, Dopamine's Nature CNN, 512 "
        "hidden units)", ("der_100runs_mean",), "der_100runs", True,
        "the `der` column is van Hasselt et al. 2019's DER (20-step returns, two 5x5 stride-5 convolutions, 256 "
        "hidden units), another agent's figures, not used for der_atari. The paper of the 100 runs (first version "
        "30 August 2021) predates google/dopamine commit c67e2c3 (3 November 2021), which changed DER.gin's target "
        "update period from 8000 to 2000; the paper does not say which the runs used"),
    "nddqn_atari": AgentReference(
        "NDDQN: double + dueling DQN with 10-step returns, ε 0.1 / 0.05 (the DrQ paper's baseline)",
        ("nddqn_seed001_quoted", "nddqn_seed001_reproduction"), "drq_100runs", False,
        "no per-run figures of NDDQN are published; DrQ is NDDQN with augmentation, the same ε 0.1 / 0.05"),
    "alix_atari": AgentReference(
        "A-LIX-Atari (Cetin et al. 2022, arXiv 2207.00986, Table 7): DER with an A-LIX layer",
        ("alix",), "der_100runs", False,
        "no per-run figures of A-LIX are published; A-LIX-Atari is built on DER (the paper's Table 7), and these "
        "are runs of Dopamine's DER"),
    "dreamer_atari": AgentReference(
        "DreamerV3 (Hafner et al. 2023, arXiv 2301.04104)", ("dreamerv3",), "drq_eps", False,
        "no per-run figures of DreamerV3 are published"),
    "dqn_atari": AgentReference(
        "DQN with the Nature paper's settings (Mnih et al. 2015)", (), "drq_eps", False,
        "no Atari 100k figure of this DQN is published"),
    "cql_atari": AgentReference(
        "CQL(H), offline (Kumar et al. 2020)", (), "drq_eps", False,
        "an offline agent; no Atari 100k figure of it is published"),
}


def agent_reference(agent: str) -> AgentReference:
    """The published figures our ``agent`` (a config's ``name``, or a class name) is compared with. A name
    that is not one of the shipped presets is matched to no published agent and placed among DrQ(ε)'s runs."""
    return AGENT_REFERENCES.get(agent) or AgentReference(
        f"not matched to a published agent (`{agent}` is not a shipped preset name)", (), "drq_eps", False,
        f"no published agent is matched to `{agent}`")


@lru_cache(maxsize=1)
def published_scores() -> dict[str, dict[str, float]]:
    """Game (as the papers print it) -> column -> score."""
    with CSV_PATH.open(newline="") as f:
        return {row["game"]: {k: float(v) for k, v in row.items() if k != "game" and v not in ("", None)}
                for row in csv.DictReader(f)}


def band_percentiles(band: str, game: str) -> list[float]:
    """p10, p25, p50, p75, p90 over the 100 published runs of ``BANDS[band]`` on ``game``."""
    row = published_scores()[atari_100k_game(game)]
    return [row[f"{band}_p{p}"] for p in PERCENTILES]


def percentile_band(band: str, game: str, score: float) -> str:
    """Where ``score`` falls among the 100 published runs of ``BANDS[band]`` on ``game``: ``below p10``,
    ``p10-p25``, ``p25-p50``, ``p50-p75``, ``p75-p90`` or ``above p90`` (a score on a boundary
    belongs to the band above it, except p90, which closes the p75-p90 band)."""
    cuts = band_percentiles(band, game)
    if score < cuts[0]:
        return "below p10"
    if score > cuts[-1]:
        return "above p90"
    for (low_p, high_p), high in zip(zip(PERCENTILES, PERCENTILES[1:]), cuts[1:]):
        if score < high or high_p == 90:
            return f"p{low_p}-p{high_p}"
    raise AssertionError("unreachable")


def drq_eps_percentiles(game: str) -> list[float]:
    """DrQ(eps)'s p10, p25, p50, p75, p90 over its 100 published runs on ``game``."""
    return band_percentiles("drq_eps", game)


def drq_eps_band(game: str, score: float) -> str:
    """Where ``score`` falls among DrQ(eps)'s 100 published runs on ``game`` (see ``percentile_band``)."""
    return percentile_band("drq_eps", game, score)


def published_hns(column: str, games: list[str]) -> np.ndarray:
    """Human-normalised scores of the published ``column`` on ``games`` (games it lacks are left out)."""
    table = published_scores()
    return np.array([human_normalized(g, table[atari_100k_game(g)][column]) for g in games
                     if column in table[atari_100k_game(g)]])
