"""The offline workflow of runs side by side, as Kumar et al. 2021 ("A Workflow for Offline Model-Free Robotic
Reinforcement Learning", arXiv 2109.10813) reads it:

    python -m worldmodels.analysis.offline_plot <run> [<run> ...] --out workflow.png

Three panels against updates: the Q-value on held dataset states with the Monte-Carlo return of the
behaviour that produced them (``health/q_mean``, ``health/mc_return_mean``), the TD error
(``health/td_loss``), and the evaluation return; each run's verdict changes (``workflow.txt``) are
marked on the first panel.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from worldmodels import run_files
from worldmodels.errors import ConfigError

SERIES = ("health/q_mean", "health/mc_return_mean", "health/td_loss", "eval/return_mean")


def workflow_series(run: Path) -> dict[str, list[tuple[int, float]]]:
    """(updates, value) of each of ``SERIES`` from every metrics.csv of a run, resumes included."""
    found: dict[str, list[tuple[int, float]]] = {name: [] for name in SERIES}
    files = sorted(Path(run).glob(run_files.ALL_METRICS))
    if not files:
        raise ConfigError(f"{run} has no csv*/metrics.csv: pass run directories written by worldmodels.fit.")
    for path in files:
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                for name in SERIES:
                    if row.get(name) and row.get("updates"):
                        found[name].append((int(float(row["updates"])), float(row[name])))
    return {name: sorted(set(points)) for name, points in found.items()}


def verdicts(run: Path) -> list[tuple[int, str]]:
    """(update, verdict) of each line of a run's workflow.txt."""
    path = Path(run) / run_files.WORKFLOW_LOG
    lines = path.read_text().splitlines() if path.is_file() else []
    return [(int(line.split(":")[0].removeprefix("update ")), line.split(":")[1].strip()) for line in lines]


def plot(runs: dict[str, Path], out: Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """Draw the panels for ``runs`` (label -> run directory) into ``out``; returns the data drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = {label: workflow_series(run) for label, run in runs.items()}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for (label, series), color in zip(data.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        for ax, name, style in [(axes[0], "health/q_mean", "-"), (axes[0], "health/mc_return_mean", ":"),
                                (axes[1], "health/td_loss", "-"), (axes[2], "eval/return_mean", "-o")]:
            if series[name]:
                x, y = zip(*series[name])
                ax.plot(x, y, style, color=color, label=f"{label}: {name.split('/')[1]}")
        q = dict(series["health/q_mean"])
        for update, verdict in verdicts(runs[label]):
            if verdict != "fine" and update in q:
                axes[0].annotate(verdict, (update, q[update]), color=color, fontsize=8, rotation=20)
    for ax, title in zip(axes, ["dataset Q and the behaviour's Monte-Carlo return", "TD error (held dataset states)",
                                "evaluation return"]):
        ax.set_title(title)
        ax.set_xlabel("updates")
        ax.legend(fontsize=7)
    axes[1].set_yscale("log")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m worldmodels.analysis.offline_plot", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--labels", nargs="*", default=None, help="one per run (default: the directory names)")
    parser.add_argument("--out", type=Path, default=Path("workflow.png"))
    args = parser.parse_args(argv)
    labels = args.labels or [run.name for run in args.runs]
    try:
        if len(labels) != len(args.runs):
            raise ConfigError(f"--labels names {len(labels)} runs but {len(args.runs)} are given.")
        plot(dict(zip(labels, args.runs)), args.out)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
