"""Compare agents across runs: a markdown table and PNG plots, offline, from what runs leave on disk.

    python -m worldmodels.analysis.compare runs/nddqn_atari-* runs/drq_atari-* --out comparison
    python -m worldmodels.analysis.compare runs/ runs/dreamer_atari-*/eval-last.json --group-by name

Each path is one run: a run directory (its ``config.yaml`` says agent, task and seed; ``csv/metrics.csv``
and ``csv-resumed-*/metrics.csv`` give ``eval/return_mean`` against ``env_steps``, the last one being
the run's final return), a JSON file written by ``worldmodels.evaluate`` (which replaces the final
return of its run when that is given too), or a folder of run directories. Runs are grouped by agent
(the config's ``name``, or the class name with ``--group-by agent``) and task.

``<out>/comparison.md`` holds the per-task table and the aggregates (mean, median and IQM with 95%
stratified bootstrap intervals, as rliable defines them) of human-normalised scores over the Atari 100k
games, or of raw returns task by task elsewhere; ``learning_curves.png`` and ``aggregates.png`` plot them.
Runs with A-LIX get ``alix_strength.png``: its strength S and the ND score over the run.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from worldmodels import run_files
from worldmodels.errors import ConfigError
from worldmodels.analysis.alix_curves import S_KEY, plot_alix_curves
from worldmodels.analysis.logged_metrics import logged_curve
from worldmodels.analysis.published import (BANDS, PUBLISHED_AGENTS, SOURCES, agent_reference, band_percentiles,
                                   percentile_band, published_hns, published_scores)
from worldmodels.analysis.scores import ATARI_100K_SCORES, atari_100k_game, human_normalized
from worldmodels.analysis.stats import AGGREGATES, Interval, stratified_bootstrap_interval
from worldmodels.run_files import FINAL_EVALUATION


@dataclass
class RunResult:
    run_dir: Path  # resolved: the run this result belongs to
    agent: str  # the group label
    suite: str
    task: str
    seed: int | None
    final_return: float | None  # None: not evaluated yet (only its training curve is shown)
    final_env_steps: int | None
    curve: list[tuple[int, float]] = field(default_factory=list)  # (env_steps, eval/return_mean)
    train_curve: list[tuple[int, float]] = field(default_factory=list)  # (env_steps, train/episode_return)
    games_cut_at: int | None = None  # evaluation games stopped after this many agent steps (smoke runs)
    crafter_score: float | None = None  # Crafter runs: the score of the final evaluation's games, in percent

    @property
    def atari_game(self) -> str | None:
        """The Atari 100k game this run played (reference scores known), else None."""
        return atari_100k_game(self.task) if self.suite == "atari" else None


# ----------------------------------------------------------------------------- reading runs
def agent_label(class_path: str, name: str | None, group_by: str) -> str:
    """The config's ``name`` (``group_by="name"``; one learner class serves several published agents,
    e.g. nddqn_atari and der_atari), or the agent's class name."""
    class_name = class_path.rsplit(".", 1)[-1]
    return (name or class_name) if group_by == "name" else class_name


def eval_curve(run_dir: Path) -> list[tuple[int, float]]:
    """(env_steps, eval/return_mean) of every evaluation."""
    return logged_curve(run_dir, "eval/return_mean")


def read_run_dir(run_dir: Path, group_by: str) -> RunResult | None:
    """The run's evaluations, or None (with a warning) when it has not been evaluated yet."""
    try:
        config = yaml.safe_load((run_dir / run_files.CONFIG).read_text())
        class_path, env = config["model"]["class_path"], config["data"]["env"]
        suite, task = env["suite"], env["task"]
    except (yaml.YAMLError, KeyError, TypeError):
        raise ConfigError(f"{run_dir}/config.yaml has no model.class_path, data.env.suite or data.env.task; "
                          "it is not a config written by worldmodels.fit.") from None
    curve = eval_curve(run_dir)
    games_cut_at = (config.get("evaluation") or {}).get("max_steps")
    final_file, crafter_score = run_dir / FINAL_EVALUATION, None
    if final_file.is_file():  # the run's evaluation at the end (the Atari 100k protocol: 100 games)
        record = read_eval_json(final_file, group_by)
        curve = sorted({**dict(curve), record.final_env_steps: record.final_return}.items())
        games_cut_at, crafter_score = record.games_cut_at, record.crafter_score
    train_curve = logged_curve(run_dir, "train/episode_return")
    if not curve:
        shown = "only its training returns are plotted" if train_curve else "left out"
        print(f"warning: {run_dir} has no eval/return_mean in its metrics.csv and no {FINAL_EVALUATION} yet; {shown}.",
              file=sys.stderr)
        if not train_curve:
            return None
    steps, final = curve[-1] if curve else (train_curve[-1][0], None)
    return RunResult(run_dir.resolve(), agent_label(class_path, config.get("name"), group_by), suite, task,
                     config.get("seed_everything"), final, steps, curve, train_curve, games_cut_at, crafter_score)


def read_eval_json(path: Path, group_by: str) -> RunResult:
    try:
        record = json.loads(path.read_text())
        steps = record["env_steps"]
        steps = int(steps) if steps is not None else None
        run_dir = Path(record["run_dir"]) if record.get("run_dir") else path.resolve()
        return RunResult(run_dir, agent_label(record["class_path"], record.get("name"), group_by), record["suite"],
                         record["task"], record.get("seed"), float(record["mean"]), steps,
                         [(steps, float(record["mean"]))] if steps is not None else [], [], record.get("max_steps"),
                         record.get("crafter_score"))
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"{path} is not an evaluation written by worldmodels.evaluate "
                          f"({type(error).__name__}: {error}).") from None


def read_results(paths: list[Path], group_by: str = "name") -> list[RunResult]:
    """One result per run. An evaluation JSON of a run directory that is also given replaces that run's
    final return (it is usually the longer evaluation); the run keeps its learning curve."""
    results: list[RunResult | None] = []
    evaluations: list[RunResult] = []
    for path in paths:
        if not path.exists():
            raise ConfigError(f"{path} does not exist; pass run directories or evaluation JSON files.")
        if path.is_file() and path.suffix == ".json":
            evaluations.append(read_eval_json(path, group_by))
        elif (path / run_files.CONFIG).is_file():
            results.append(read_run_dir(path, group_by))
        elif path.is_dir() and (runs := sorted(p.parent for p in path.glob("*/config.yaml"))):
            results.extend(read_run_dir(run, group_by) for run in runs)
        else:
            raise ConfigError(f"{path} is neither a run directory (with config.yaml), a folder of runs, nor an "
                              "evaluation JSON file.")
    kept = {r.run_dir: r for r in results if r is not None}
    for evaluation in evaluations:
        if evaluation.run_dir in kept:
            run = kept[evaluation.run_dir]
            run.final_return, run.final_env_steps = evaluation.final_return, evaluation.final_env_steps
            run.games_cut_at = evaluation.games_cut_at
        else:
            kept[evaluation.run_dir] = evaluation
    if not kept:
        raise ConfigError("none of the given runs has an evaluation or a training episode yet; nothing to compare.")
    return list(kept.values())


# ----------------------------------------------------------------------------- tables
def fmt(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' * (count != 1)}"


def by_task_and_agent(results: list[RunResult]) -> dict[tuple[str, str], dict[str, list[RunResult]]]:
    grouped: dict[tuple[str, str], dict[str, list[RunResult]]] = defaultdict(lambda: defaultdict(list))
    for result in results:
        grouped[(result.suite, result.task)][result.agent].append(result)
    return {task: dict(sorted(agents.items())) for task, agents in sorted(grouped.items())}


def per_task_table(results: list[RunResult]) -> str:
    with_hns = any(r.atari_game for r in results)
    with_crafter = any(r.crafter_score is not None for r in results)
    header = "| task | agent | seeds | env steps | final return (mean ± std over seeds) |" + (
        " human-normalised |" if with_hns else "") + (" Crafter score (%) |" if with_crafter else "")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for (suite, task), agents in by_task_and_agent(results).items():
        for agent, runs in agents.items():
            finals = np.array([r.final_return for r in runs])
            seeds = ", ".join(str(s) for s in sorted(r.seed for r in runs if r.seed is not None)) or "?"
            steps = sorted({r.final_env_steps for r in runs if r.final_env_steps is not None})
            steps_text = "?" if not steps else str(steps[0]) if len(steps) == 1 else f"{steps[0]}-{steps[-1]}"
            score = fmt(finals.mean()) + (f" ± {fmt(finals.std())}" if len(runs) > 1 else "")
            score += " †" if any(r.games_cut_at for r in runs) else ""
            row = f"| {task} | {agent} | {seeds} | {steps_text} | {score} |"
            if with_hns:
                row += f" {fmt(human_normalized(task, finals.mean()), 3)} |" if runs[0].atari_game else " |"
            if with_crafter:
                crafter = [r.crafter_score for r in runs if r.crafter_score is not None]
                row += f" {fmt(float(np.mean(crafter)))} |" if crafter else " |"
            lines.append(row)
    if with_crafter:
        from worldmodels.envs.crafter_suite import RANDOM_AGENT

        lines += ["", f"Crafter's random policy (Hafner 2021, arXiv 2109.06780): score {RANDOM_AGENT['score_percent']} %, "
                      f"reward {RANDOM_AGENT['reward']} (the mean return over all its published episodes: "
                      f"{RANDOM_AGENT['mean_episode_return']})."]
    if any(r.games_cut_at for r in results):
        lines += ["", "† evaluation games cut after `evaluation.max_steps` agent steps (smoke runs): partial "
                      "returns, not game scores."]
    return "\n".join(lines)


HNS = "human-normalised score"


@dataclass
class AggregateGroup:
    """Scores to aggregate together: all Atari 100k games (human-normalised), or one other task (raw)."""
    title: str
    unit: str  # what the scores are (HNS or a task's return), for the plot's axis
    per_agent: dict[str, dict[str, np.ndarray]]  # agent -> task -> scores of its runs
    intervals: dict[str, dict[str, Interval]] = field(default_factory=dict)  # agent -> statistic -> interval


def aggregate_groups(results: list[RunResult]) -> list[AggregateGroup]:
    atari: dict[str, dict[str, np.ndarray]] = defaultdict(dict)
    raw_groups = []
    for (suite, task), agents in by_task_and_agent(results).items():
        finals = {agent: np.array([r.final_return for r in runs]) for agent, runs in agents.items()}
        if suite == "atari" and atari_100k_game(task):
            for agent, scores in finals.items():
                atari[agent][task] = human_normalized(task, scores)
        else:
            raw_groups.append(AggregateGroup(f"raw returns on {task}", f"return on {task}",
                                             {a: {task: s} for a, s in finals.items()}))
    hns = AggregateGroup("human-normalised scores over the Atari 100k games", HNS, dict(sorted(atari.items())))
    return ([hns] if atari else []) + raw_groups


def compute_intervals(groups: list[AggregateGroup], reps: int, seed: int) -> None:
    for group in groups:
        for agent, scores in group.per_agent.items():
            group.intervals[agent] = {name: stratified_bootstrap_interval(list(scores.values()), statistic,
                                                                          reps=reps, seed=seed)
                                      for name, statistic in AGGREGATES.items()}


def aggregate_table(group: AggregateGroup, digits: int) -> str:
    lines = ["| agent | tasks | runs | " + " | ".join(AGGREGATES) + " |", "|---|---|---|" + "---|" * len(AGGREGATES)]
    for agent, scores in group.per_agent.items():
        cells = [f"{fmt(i.estimate, digits)} [{fmt(i.low, digits)}, {fmt(i.high, digits)}]"
                 for i in group.intervals[agent].values()]
        runs = sum(len(s) for s in scores.values())
        lines.append(f"| {agent} | {len(scores)} | {runs} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(results: list[RunResult], groups: list[AggregateGroup], reps: int, seed: int) -> str:
    parts = ["# Comparison", "",
             f"{len(results)} runs. A run's final return is its last `eval/return_mean` (or an evaluation "
             "file's mean return).", "", "## Per task", "", per_task_table(results), "", "## Aggregates", "",
             f"Mean and median over tasks of the per-task mean over runs, and the interquartile mean (IQM) of "
             f"all runs pooled, as rliable defines them, each with a 95% stratified bootstrap interval "
             f"(runs resampled within each task, {reps} resamples, seed {seed}): `estimate [low, high]`."]
    cut_short = any(r.games_cut_at for r in results)
    for group in groups:
        atari = group.unit == HNS
        notes = []
        if atari:
            notes.append("HNS = (score - random) / (human - random), with the published per-game reference scores.")
            if len({tuple(sorted(scores)) for scores in group.per_agent.values()}) > 1:
                notes.append("The agents were run on different games: their aggregates are not comparable.")
            if cut_short:
                notes.append("Some evaluation games were cut short (†): their scores do not measure play.")
        else:
            notes.append("Not an Atari 100k game, so not human-normalised; one task, so the mean and the median are "
                         "the mean over runs.")
        if any(len(s) < 2 for scores in group.per_agent.values() for s in scores.values()):
            notes.append("With a single run on a task, the bootstrap has nothing to resample there: an interval "
                         "of zero width says one seed, not certainty.")
        parts += ["", f"### {group.title[0].upper()}{group.title[1:]}"]
        for note in notes:
            parts += ["", note]
        parts += ["", aggregate_table(group, 3 if atari else 2)]
    if any(r.atari_game for r in results):
        parts += ["", published_section(results)]
    parts += ["", "![learning curves](learning_curves.png)", "", "![aggregates](aggregates.png)", ""]
    if any(r.atari_game for r in results):
        parts += ["![each run among the 100 published runs its row names](published.png)", ""]
    return "\n".join(parts)


def published_section(results: list[RunResult]) -> str:
    """Our Atari 100k runs beside the published figures of their own agent (``published.AGENT_REFERENCES``:
    which published agent each preset is, and the source of each figure), each run's band among 100
    published runs (its own agent's where they exist; where not, the table says whose they are instead),
    every published column per game, and human-normalised aggregates beside the published agents' on the
    same games."""
    atari = [r for r in results if r.atari_game]
    table = published_scores()
    agents = sorted({r.agent for r in atari})
    references = {agent: agent_reference(agent) for agent in agents}
    lines = ["## Beside the published Atari 100k results", "",
             "Published scores per game (worldmodels/data/atari100k_published.csv; sources in its README and below). "
             "Each of our agents is set beside the published figures of its own agent only; the band says where each "
             "of its runs falls among 100 published runs (each the mean of 100 evaluation games): below p10 or above "
             "p90 is unusual for the agent of those runs. Where no such runs of its own agent are published, the "
             "band is drawn from another agent's runs, and the table says whose.", "",
             "| agent (ours) | the published agent it is | published figures of that agent | band among | note |",
             "|---|---|---|---|---|"]
    for agent, ref in references.items():
        figures = "; ".join(f"{PUBLISHED_AGENTS[c]} ({SOURCES[c]})" for c in ref.figures) or "none published"
        lines.append(f"| {agent} | {ref.agent} | {figures} | {ref.band_words()} | {ref.note} |")
    header = ("| game | agent | runs | our mean | band of each run | among the 100 published runs of | p10 / p50 / p90 "
              "| published figures of its own agent |")
    lines += ["", header, "|" + "---|" * (header.count("|") - 1)]
    by_game: dict[tuple[str, str], list[RunResult]] = defaultdict(list)
    for r in atari:
        by_game[(r.atari_game, r.agent)].append(r)
    for (game, agent), runs in sorted(by_game.items()):
        ref = references[agent]
        finals = [r.final_return for r in runs]
        bands = ", ".join(percentile_band(ref.band, game, r.final_return) + (" †" if r.games_cut_at else "")
                          for r in runs)
        p10, _, p50, _, p90 = band_percentiles(ref.band, game)
        own = "; ".join(f"{PUBLISHED_AGENTS[c]}: {fmt(table[game][c], 1)}" for c in ref.figures if c in table[game])
        lines.append(f"| {game} | {agent} | {len(runs)} | {fmt(float(np.mean(finals)), 1)} | {bands} | "
                     f"{ref.band_words()} | {fmt(p10, 1)} / {fmt(p50, 1)} / {fmt(p90, 1)} | {own or 'none published'} |")
    games = sorted({r.atari_game for r in atari})
    columns = list(PUBLISHED_AGENTS)
    header = "| game | " + " | ".join(PUBLISHED_AGENTS.values()) + " |"
    lines += ["", "Every published column on these games; each is the agent its header names, whatever agent of ours "
                  "shares its name:", "", header, "|" + "---|" * (header.count("|") - 1)]
    for game in games:
        lines.append(f"| {game} | " + " | ".join(fmt(table[game][c], 1) if c in table[game] else "" for c in columns)
                     + " |")
    lines += ["", "Sources (a band's percentiles come from the same runs as the mean of the same label):", ""]
    lines += [f"- {label}: {SOURCES[column]}" for column, label in PUBLISHED_AGENTS.items()]
    lines += ["", f"Human-normalised mean and median over games; ours over the games each agent ran, the published "
                  f"agents over our games ({', '.join(games)}) and over all {len(ATARI_100K_SCORES)}.", "",
              f"| agent | mean ({plural(len(games), 'game')}) | median ({plural(len(games), 'game')}) | mean (26) | median (26) |",
              "|---|---|---|---|---|"]
    for agent in sorted({r.agent for r in atari}):
        per_game = defaultdict(list)
        for r in atari:
            if r.agent == agent:
                per_game[r.atari_game].append(r.final_return)
        hns = np.array([human_normalized(g, float(np.mean(v))) for g, v in per_game.items()])
        note = "" if len(per_game) == len(games) else f" ({len(per_game)} of them)"
        lines.append(f"| {agent} (ours){note} | {fmt(hns.mean(), 3)} | {fmt(float(np.median(hns)), 3)} | | |")
    for column, label in PUBLISHED_AGENTS.items():
        ours, everywhere = published_hns(column, games), published_hns(column, list(ATARI_100K_SCORES))
        if len(ours):
            lines.append(f"| {label} | {fmt(ours.mean(), 3)} | {fmt(float(np.median(ours)), 3)} | "
                         f"{fmt(everywhere.mean(), 3)} | {fmt(float(np.median(everywhere)), 3)} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- plots
def agent_colors(results: list[RunResult]) -> dict[str, tuple]:
    """One colour per agent label."""
    import matplotlib.pyplot as plt

    agents = sorted({r.agent for r in results})
    cmap = plt.get_cmap("tab10")
    return {agent: cmap(i % 10) for i, agent in enumerate(agents)}


def mean_curve(curves: list[list[tuple[int, float]]]) -> tuple[np.ndarray, np.ndarray]:
    """The mean over seeds, interpolated on the steps of all seeds, where every seed has been evaluated."""
    start, end = max(c[0][0] for c in curves), min(c[-1][0] for c in curves)
    steps = np.array(sorted({s for c in curves for s, _ in c if start <= s <= end}))
    values = [np.interp(steps, [s for s, _ in c], [v for _, v in c]) for c in curves]
    return steps, np.mean(values, axis=0)


def plot_per_task(grouped: dict, draw, ylabel: str, path: Path) -> None:
    """One panel per task (three to a row): ``draw(ax, agents)`` draws a task's agents; then the legend."""
    import matplotlib.pyplot as plt

    cols = min(len(grouped), 3)
    rows = -(-len(grouped) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.4 * rows), squeeze=False)
    for ax, ((suite, task), agents) in zip(axes.flat, grouped.items()):
        draw(ax, agents)
        ax.set(title=f"{task} ({suite})", xlabel="env steps", ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes.flat[len(grouped):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_learning_curves(results: list[RunResult], path: Path) -> None:
    """The evaluation curves, and the data drawn beside them as ``<path>.csv`` (task, agent, seed or
    ``mean``, env steps, return) for anyone who wants to re-plot them."""
    colors = agent_colors(results)
    drawn: list[tuple] = []

    def draw(ax, agents):
        for agent, runs in agents.items():
            seeded = [(r.seed, r.curve) for r in runs if r.curve]
            curves = [curve for _, curve in seeded]
            task = runs[0].task
            drawn.extend((task, agent, seed, s, v) for seed, curve in seeded for s, v in curve)
            if len(curves) == 1:
                ax.plot(*zip(*curves[0]), color=colors[agent], lw=2, marker="o", ms=3)
            else:  # each seed a thin line, their mean a thick one
                for curve in curves:
                    ax.plot(*zip(*curve), color=colors[agent], alpha=0.35, lw=1, marker="o", ms=2.5)
                steps, mean = mean_curve(curves)
                ax.plot(steps, mean, color=colors[agent], lw=2)
                drawn.extend((task, agent, "mean", int(s), float(v)) for s, v in zip(steps, mean))
            ax.plot([], [], color=colors[agent], lw=2, label=f"{agent} ({len(curves)} seed{'s' * (len(curves) > 1)})")

    plot_per_task(by_task_and_agent(results), draw, "evaluation return", path)
    with path.with_suffix(".csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["task", "agent", "seed", "env_steps", "return"])
        writer.writerows(drawn)


def plot_training_returns(results: list[RunResult], colors: dict[str, tuple], path: Path, window: int = 10) -> None:
    """Training episode returns (true game scores, summed over lives) against env steps, one panel per
    task: each episode a faint dot, the mean of the last ``window`` episodes a line, one per run."""

    def draw(ax, agents):
        for agent, runs in agents.items():
            for run in runs:
                steps, returns = (np.array(v) for v in zip(*run.train_curve))
                ax.plot(steps, returns, ".", color=colors[agent], alpha=0.25, ms=3)
                kernel = np.ones(min(window, len(returns))) / min(window, len(returns))
                ax.plot(steps[len(kernel) - 1:], np.convolve(returns, kernel, "valid"), color=colors[agent], lw=1.5)
            ax.plot([], [], color=colors[agent], lw=2, label=f"{agent} ({len(runs)} run{'s' * (len(runs) > 1)})")

    plot_per_task(by_task_and_agent([r for r in results if r.train_curve]), draw,
                  f"training episode return (mean of {window})", path)


def plot_published_bands(results: list[RunResult], colors: dict[str, tuple], path: Path) -> None:
    """Per game and per set of 100 published runs our agents are placed among (each agent's own where
    published, ``published.agent_reference``): those runs as a box (p25-p75, median) with whiskers at p10
    and p90, and each of our runs as a dot on the row of its band, in human-normalised score."""
    import matplotlib.pyplot as plt

    atari = [r for r in results if r.atari_game]
    rows = sorted({(r.atari_game, agent_reference(r.agent).band) for r in atari})
    fig, ax = plt.subplots(figsize=(7.5, 1.4 + 0.5 * len(rows)))
    for y, (game, band) in enumerate(rows):
        p10, p25, p50, p75, p90 = (human_normalized(game, v) for v in band_percentiles(band, game))
        ax.plot([p10, p90], [y, y], color="0.6", lw=1)
        ax.add_patch(plt.Rectangle((p25, y - 0.2), p75 - p25, 0.4, color="0.85", zorder=1))
        ax.plot([p50, p50], [y - 0.2, y + 0.2], color="0.3", lw=1.5)
    for r in atari:
        y = rows.index((r.atari_game, agent_reference(r.agent).band))
        ax.plot(human_normalized(r.atari_game, r.final_return), y, "o", color=colors[r.agent], zorder=3)
    for agent in sorted({r.agent for r in atari}):
        ref = agent_reference(agent)
        whose = "" if ref.own_band else "; among another agent's runs"
        ax.plot([], [], "o", color=colors[agent], label=f"{agent} (ours{whose})")
    ax.plot([], [], color="0.6", lw=6, alpha=0.5, label="100 published runs: p10-p90, box p25-p75")
    ax.set_yticks(range(len(rows)), [f"{game}: {BANDS[band]}" for game, band in rows], fontsize=8)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlabel(HNS)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")  # the legend sits above the axes
    plt.close(fig)


def plot_aggregates(groups: list[AggregateGroup], colors: dict[str, tuple], path: Path) -> None:
    """One row per aggregate group, one panel per statistic: each agent's estimate with its 95% interval."""
    import matplotlib.pyplot as plt

    height = sum(1.1 + 0.45 * len(g.per_agent) for g in groups)
    fig, axes = plt.subplots(len(groups), len(AGGREGATES), figsize=(11, 0.6 + height), squeeze=False,
                             gridspec_kw={"height_ratios": [len(g.per_agent) + 1 for g in groups]})
    for row, group in zip(axes, groups):
        agents = list(group.per_agent)
        for ax, name in zip(row, AGGREGATES):
            for y, agent in enumerate(agents):
                interval = group.intervals[agent][name]
                errors = [[interval.estimate - interval.low], [interval.high - interval.estimate]]
                ax.errorbar(interval.estimate, y, xerr=errors, fmt="o", color=colors[agent], capsize=4, lw=2)
            ax.set_yticks(range(len(agents)), agents if ax is row[0] else [""] * len(agents))
            ax.set_ylim(len(agents) - 0.3, -0.7)  # the first agent on top
            ax.set_title(name, fontsize=10)
            ax.set_xlabel(group.unit, fontsize=8)
            ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Aggregates with 95% stratified bootstrap intervals", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- command line
def compare(paths: list[Path], out: Path, group_by: str = "name", reps: int = 50_000, seed: int = 0) -> Path:
    """Writes ``comparison.md`` and its plots under ``out``. Runs not evaluated yet appear only in the
    plot of training returns and in a list of unfinished runs."""
    import matplotlib

    matplotlib.use("Agg")
    everything = read_results(paths, group_by)
    results = [r for r in everything if r.final_return is not None]  # evaluated: the tables and aggregates
    unfinished = [r for r in everything if r.final_return is None]
    colors = agent_colors(everything)
    out.mkdir(parents=True, exist_ok=True)
    text = "# Comparison\n\nNo run has been evaluated yet.\n"
    if results:
        groups = aggregate_groups(results)
        compute_intervals(groups, reps, seed)
        plot_learning_curves(results, out / "learning_curves.png")
        plot_aggregates(groups, colors, out / "aggregates.png")
        if any(r.atari_game for r in results):
            plot_published_bands(results, colors, out / "published.png")
        text = markdown(results, groups, reps, seed)
    if any(r.train_curve for r in everything):
        plot_training_returns(everything, colors, out / "training_returns.png")
        text += "\n![training episode returns](training_returns.png)\n"
    alix_runs = [(r.agent, r.run_dir) for r in everything if r.run_dir.is_dir() and logged_curve(r.run_dir, S_KEY)]
    if alix_runs:
        plot_alix_curves(alix_runs, colors, out / "alix_strength.png")
        text += "\n![A-LIX's strength S and ND score](alix_strength.png)\n"
    if unfinished:
        text += "\nNot evaluated yet (training returns only): " + ", ".join(
            f"{r.run_dir.name} ({r.final_env_steps} env steps)" for r in unfinished) + ".\n"
    (out / "comparison.md").write_text(text)
    return out / "comparison.md"


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m worldmodels.analysis.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", type=Path, nargs="+", help="run directories, folders of runs, evaluation JSON files")
    parser.add_argument("--out", type=Path, default=Path("comparison"), help="output directory (default comparison/)")
    parser.add_argument("--group-by", choices=["name", "agent"], default="name",
                        help="name: the config's name field (default); agent: the agent's class name")
    parser.add_argument("--reps", type=int, default=50_000, help="bootstrap resamples (rliable's default 50000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    args = parser.parse_args(argv)
    try:
        written = compare(args.paths, args.out, args.group_by, args.reps, args.seed)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    plots = re.findall(r"\]\(([\w.-]+\.png)\)", written.read_text())  # the plots the report shows
    print(f"wrote {written}" + (f" and {', '.join(plots)} beside it" if plots else ""))
    return written


if __name__ == "__main__":
    main()
