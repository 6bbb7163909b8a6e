"""The A-LIX paper's "visual deadly triad" in miniature: DrQ-v2 without augmentation beside DrQ-v2
with its random shift and beside A-LIX, on a small sparse-reward task, with the health diagnostics
(ND score, srank, augmentation gap) and the evaluation return of each plotted against env steps.

    python tools/self_overfitting.py              # the experiment: three runs one after the other
    python tools/self_overfitting.py --quick      # about a minute: checks the plumbing, measures nothing
    python tools/self_overfitting.py --plot-only  # redraw the figure and table from the runs on disk
    python tools/self_overfitting.py -- --seed_everything 1   # extra flags go to every fit run

The paper (Cetin et al. 2022, "Stabilizing Off-Policy Deep Reinforcement Learning from Pixels",
arXiv 2207.00986) finds that without augmentation the encoder
overfits its own TD targets: the encoder becomes sensitive to high-frequency detail, the critic's
gradient on the last feature map turns discontinuous (ND score up), the critic converges to a
degenerate solution (which srank would show as collapsed features) and the return collapses;
augmentation or A-LIX's local signal mixing prevents it. The setting here pushes towards that: no
augmentation, a sparse small reward (``reach_sparse``: 0.1 within one cell of the goal, else 0) and
two updates per env step.

Each run is a plain ``python -m worldmodels.fit`` in its own process (one CPU thread unless
OMP_NUM_THREADS says otherwise), logging to ``<runs>/<variant>/``; the figure goes to
docs/self_overfitting.png and the table of the runs' last values to stdout and docs/self_overfitting.md.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMES = "self_overfitting_seconds.txt"  # in each run directory: wall and CPU seconds of the run

# The three variants differ only in these flags; everything else is COMMON. A-LIX's largest mixing
# shift is scaled to the small feature maps as in tests/configs/alix_reach.yaml (0.5 px instead of the
# reference's 2.5 px, which is meant for 35 x 35 maps and spans a whole board cell here).
VARIANTS = {
    "no_augmentation": ("DrQ-v2, no augmentation", ["--model.class_path", "model_free.DrQv2",
                                                    "--model.init_args.augment", "false"]),
    "random_shift": ("DrQ-v2, random shift", ["--model.class_path", "model_free.DrQv2",
                                              "--model.init_args.augment", "true"]),
    "alix": ("A-LIX", ["--model.class_path", "model_free.ALIX", "--model.init_args.augment", "false",
                       "--model.init_args.alix_max_shift", "0.5"]),
}
COLORS = {"no_augmentation": "tab:red", "random_shift": "tab:blue", "alix": "tab:green"}

# The small DrQ-v2 of tests/configs/drqv2_reach.yaml (24 px RGB, batch 64, MLPs 256 wide, lr 3e-4,
# 1 px shift), on the sparse task, with two updates per env step instead of one (the paper's
# overfitting grows with the replay ratio) and a budget that keeps the three runs near 15 minutes.
COMMON = [
    "--data.env.suite", "test", "--data.env.task", "reach_sparse", "--data.env.image_size", "24",
    "--data.env.grayscale", "false", "--data.env.frame_stack", "1",
    "--data.replay_capacity", "10000", "--data.progress_bar", "false",
    "--model.init_args.batch_size", "64", "--model.init_args.hidden", "256", "--model.init_args.lr", "3e-4",
    "--model.init_args.pad", "1", "--model.init_args.updates_per_env_step", "2",
    "--evaluation.episodes", "50", "--evaluation.video", "false",
    "--checkpoint.every_env_steps", "1000000", "--trainer.log_every_n_steps", "50",
    "--seed_everything", "0",
]
# Budget: env steps, random warm-up steps, env steps between evaluations, updates between health checks.
EXPERIMENT = dict(total=3000, warmup=500, eval_every=250, health_every=250, stddev="linear(1.0,0.1,2000)")
QUICK = dict(total=300, warmup=200, eval_every=100, health_every=50, stddev="linear(1.0,0.1,300)")


def fit_args(variant: str, budget: dict, run_dir: Path, extra: list[str]) -> list[str]:
    return [*VARIANTS[variant][1], *COMMON,
            "--name", f"self_overfitting_{variant}", "--run_dir", str(run_dir),
            "--data.total_env_steps", str(budget["total"]), "--data.warmup_steps", str(budget["warmup"]),
            "--model.init_args.stddev_schedule", budget["stddev"],
            "--evaluation.every_env_steps", str(budget["eval_every"]),
            "--health.every_updates", str(budget["health_every"]), *extra]


def last_env_steps(run_dir: Path) -> int:
    """The newest env_steps the run's CSV holds (0 before Lightning first writes it)."""
    rows = read_rows(run_dir)
    return int(float(rows[-1]["env_steps"])) if rows and rows[-1].get("env_steps") else 0


def child_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def train(variant: str, budget: dict, run_dir: Path, extra: list[str]) -> tuple[float, float]:
    """One fit run in a child process, its output to ``<run_dir>/fit.log``; returns its wall and CPU
    seconds (CPU time is the fairer figure on a shared machine). Prints progress every 30 s; stops
    the script with the log's tail if the run fails."""
    if run_dir.exists():
        sys.exit(f"error: {run_dir} exists; remove it, or pass --runs for a fresh folder "
                 "(--plot-only redraws from it).")
    run_dir.mkdir(parents=True)
    env = {**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "offline"),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    command = [sys.executable, "-m", "worldmodels.fit", *fit_args(variant, budget, run_dir, extra)]
    start, cpu_start = time.perf_counter(), child_cpu_seconds()
    with open(run_dir / "fit.log", "w") as log:
        child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        while True:
            try:
                child.wait(timeout=30)
                break
            except subprocess.TimeoutExpired:
                print(f"    {time.perf_counter() - start:5.0f} s, env step {last_env_steps(run_dir)}/{budget['total']}",
                      flush=True)
    if child.returncode != 0:
        tail = (run_dir / "fit.log").read_text(errors="replace").splitlines()[-20:]
        sys.exit(f"error: the {VARIANTS[variant][0]} run failed (exit {child.returncode}); "
                 f"the end of {run_dir / 'fit.log'}:\n" + "\n".join(tail))
    seconds = time.perf_counter() - start, child_cpu_seconds() - cpu_start
    (run_dir / TIMES).write_text("%.1f %.1f\n" % seconds)  # for --plot-only's table
    return seconds


def read_seconds(run_dir: Path) -> tuple[float, float] | None:
    """(wall, CPU) seconds the run took, as ``train`` recorded them."""
    path = run_dir / TIMES
    return tuple(float(v) for v in path.read_text().split()) if path.is_file() else None


# ----------------------------------------------------------------------------- reading and plotting
def read_rows(run_dir: Path) -> list[dict[str, str]]:
    path = run_dir / run_files.FIRST_CSV / run_files.METRICS_CSV
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


RANDOM_RETURN = 0.12  # reach_sparse under uniform random actions (worldmodels/envs/toy.py)


def series(rows: list[dict[str, str]], metric: str) -> tuple[list[int], list[float]]:
    """(env steps, values) of every row that logged ``metric``."""
    points = [(int(float(r["env_steps"])), float(r[metric])) for r in rows if r.get(metric) and r.get("env_steps")]
    return [s for s, _ in points], [v for _, v in points]


def tail_mean(rows: list[dict[str, str]], metric: str, checks: int = 4) -> float:
    """Mean of the last ``checks`` values: a single health check is noisy (srank jumps by tens)."""
    values = series(rows, metric)[1][-checks:]
    return sum(values) / len(values) if values else math.nan


def setting(flag: str) -> str:
    """The value COMMON gives ``flag`` (for the figure's title)."""
    return COMMON[COMMON.index(flag) + 1]


# (metric, title, log scale); encoder_srank is drawn dashed in the srank panel.
PANELS = [("health/nd_score", "ND score of the critic's feature gradient", False),
          ("health/critic_srank", "srank: critic (solid), encoder (dashed)", False),
          ("eval/return_mean", "evaluation return (50 games)", False),
          ("health/augmentation_gap", "augmentation gap: mean (Q(shift1 s) - Q(shift2 s))^2", True)]


def plot(runs: dict[str, list[dict[str, str]]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from worldmodels.training.health import ND_TARGET

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    axes = axes.ravel()
    for variant, rows in runs.items():
        label, color = VARIANTS[variant][0], COLORS[variant]
        for ax, (metric, _, _) in zip(axes, PANELS):
            ax.plot(*series(rows, metric), color=color, label=label, marker=".")
        axes[1].plot(*series(rows, "health/encoder_srank"), color=color, linestyle="--")
    axes[0].axhline(ND_TARGET, color="gray", linewidth=0.8, linestyle=":", label=f"A-LIX target {ND_TARGET}")
    axes[2].axhline(RANDOM_RETURN, color="gray", linewidth=0.8, linestyle=":", label="random policy")
    for ax, (_, name, log) in zip(axes, PANELS):
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
        if log:
            ax.set_yscale("log")
    axes[0].legend(fontsize=8)
    axes[2].legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


SUMMARY_COLUMNS = [("ND score", "health/nd_score", "{:.3f}"), ("critic srank", "health/critic_srank", "{:.0f}"),
                   ("encoder srank", "health/encoder_srank", "{:.0f}"), ("TD loss", "health/td_loss", "{:.2g}"),
                   ("Q - MC return", "health/q_overestimation", "{:.2f}"),
                   ("augmentation gap", "health/augmentation_gap", "{:.2g}")]


def summary(runs: dict[str, list[dict[str, str]]], seconds: dict[str, tuple[float, float] | None],
            command: str) -> str:
    header = " | ".join(name for name, _, _ in SUMMARY_COLUMNS)
    lines = [f"`{command}`", "",
             f"| variant | {header} | eval return (final) | eval return (best) | A-LIX S | wall (CPU) time |",
             "|---" * (len(SUMMARY_COLUMNS) + 5) + "|"]
    for variant, rows in runs.items():
        health = " | ".join(fmt.format(tail_mean(rows, metric)) for _, metric, fmt in SUMMARY_COLUMNS)
        returns = series(rows, "eval/return_mean")[1]
        alix_s = series(rows, "train/alix_s")[1]
        lines.append(f"| {VARIANTS[variant][0]} | {health} | {returns[-1] if returns else math.nan:.2f} "
                     f"| {max(returns, default=math.nan):.2f} | {f'{alix_s[-1]:.2f}' if alix_s else '-'} "
                     f"| {'{:.0f} s ({:.0f} s)'.format(*seconds[variant]) if seconds[variant] else '-'} |")
    lines += ["", "Health figures: mean of the last 4 checks, on the held replay batch (Q - MC return: Q against the "
              "discounted Monte-Carlo return; augmentation gap: Q's mean squared change between two random "
              "1-px shifts of the same states). Returns: mean over 50 evaluation games (random policy about "
              f"{RANDOM_RETURN}, going to the goal and staying there about 2.8)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a ~1-minute check of the plumbing (measures nothing)")
    parser.add_argument("--plot-only", action="store_true", help="redraw from the runs already under --runs")
    parser.add_argument("--runs", type=Path, default=None,
                        help="folder of the three run directories (default runs/self_overfitting; with --quick "
                             "a new temporary folder)")
    parser.add_argument("--out", type=Path, default=None,
                        help="figure path; the table goes beside it as .md (default docs/self_overfitting.png; "
                             "with --quick, inside the runs folder)")
    parser.add_argument("fit_args", nargs="*", help="after --: extra worldmodels.fit flags for every run")
    args = parser.parse_args(argv)
    budget = QUICK if args.quick else EXPERIMENT
    # A quick check measures nothing, so it gets a throwaway folder and never touches docs/.
    runs_dir = args.runs or (Path(tempfile.mkdtemp(prefix="self_overfitting_quick_")) if args.quick
                             else ROOT / "runs" / "self_overfitting")
    out = args.out or (runs_dir / "self_overfitting.png" if args.quick else ROOT / "docs" / "self_overfitting.png")
    command = "python tools/self_overfitting.py" + (" --quick" if args.quick else "") + \
        (" -- " + " ".join(args.fit_args) if args.fit_args else "")

    if not args.plot_only:
        for i, variant in enumerate(VARIANTS, 1):
            print(f"[{i}/{len(VARIANTS)}] {VARIANTS[variant][0]}: {budget['total']} env steps -> {runs_dir / variant}",
                  flush=True)
            seconds = train(variant, budget, runs_dir / variant, args.fit_args)
            rows = read_rows(runs_dir / variant)
            print(f"    done in {seconds[0]:.0f} s ({seconds[1]:.0f} s CPU): "
                  f"ND {tail_mean(rows, 'health/nd_score'):.3f}, "
                  f"critic srank {tail_mean(rows, 'health/critic_srank'):.0f}, "
                  f"last eval return {series(rows, 'eval/return_mean')[1][-1]:.2f}", flush=True)
    runs = {variant: read_rows(runs_dir / variant) for variant in VARIANTS}
    missing = [str(runs_dir / v) for v, rows in runs.items() if not rows]
    if missing:
        sys.exit(f"error: no csv/metrics.csv in {', '.join(missing)}; run the experiment first (without --plot-only).")
    title = (f"{setting('--data.env.task')}, {setting('--data.env.image_size')} px, "
             f"{setting('--model.init_args.updates_per_env_step')} updates per env step, "
             f"{budget['total']} env steps, seed {setting('--seed_everything')}"
             + (f"; extra flags: {' '.join(args.fit_args)}" if args.fit_args else ""))
    plot(runs, out, title)
    seconds = {variant: read_seconds(runs_dir / variant) for variant in VARIANTS}
    table = summary(runs, seconds, command)
    out.with_suffix(".md").write_text(f"# Self-overfitting in miniature\n\n![self-overfitting]({out.name})\n\n{table}")
    print(table + f"\nfigure: {out}\ntable: {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
