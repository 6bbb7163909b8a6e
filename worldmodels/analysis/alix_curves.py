"""A-LIX's adaptive strength over a run: S and the ND score it is steered by, against env steps.

A-LIX (Cetin et al. 2022, "Stabilizing Off-Policy Deep Reinforcement Learning from Pixels",
arXiv:2207.00986, section 4) tunes the mixing strength S by a dual step on ND - target, with ND the
normalized discontinuity of the TD loss's gradient at the A-LIX layer. Whether S moves, and where ND sits
against its target, says whether the regulariser did anything on a run; ``compare`` draws this plot for
every run that logged ``train/alix_s``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from worldmodels import run_files
from worldmodels.analysis.logged_metrics import logged_curve

S_KEY, ND_KEY = "train/alix_s", "train/nd_score"


def nd_target(run_dir: Path) -> float | None:
    """The run's ND target (``model.init_args.alix_target_nd`` of its config), None where not written."""
    config = yaml.safe_load((run_dir / run_files.CONFIG).read_text()) or {}
    return ((config.get("model") or {}).get("init_args") or {}).get("alix_target_nd")


def running_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` points at each point from the ``window``-th on (the ND score is one
    batch's estimate per logged update, so noisy)."""
    window = max(1, min(window, len(values)))
    return np.convolve(values, np.ones(window) / window, "valid")


def plot_alix_curves(runs: list[tuple[str, Path]], colors: dict[str, tuple], path: Path, window: int = 20) -> None:
    """Two panels, S and the ND score against env steps, one line per (label, run directory); the ND
    panel shows each logged point faintly, their running mean over ``window`` points, and each run's target."""
    import matplotlib.pyplot as plt

    fig, (ax_s, ax_nd) = plt.subplots(1, 2, figsize=(10, 3.4))
    targets = set()
    for label, run_dir in runs:
        color = colors.get(label, "C0")
        s_curve, nd_curve = logged_curve(run_dir, S_KEY), logged_curve(run_dir, ND_KEY)
        if s_curve:
            ax_s.plot(*zip(*s_curve), color=color, lw=1.5, label=f"{label}: {run_dir.name}")
        if nd_curve:
            steps, nd = (np.array(v) for v in zip(*nd_curve))
            ax_nd.plot(steps, nd, ".", color=color, alpha=0.2, ms=2)
            mean = running_mean(nd, window)
            ax_nd.plot(steps[len(steps) - len(mean):], mean, color=color, lw=1.5)
        target = nd_target(run_dir)
        if target is not None:
            targets.add(target)
    for target in sorted(targets):
        ax_nd.axhline(target, color="0.3", ls="--", lw=1, label=f"target {target:g}")
    ax_s.set(xlabel="env steps", ylabel="S (mixing strength)", title="A-LIX strength S")
    ax_nd.set(xlabel="env steps", ylabel=f"ND score (running mean of {window})", title="ND score")
    for ax in (ax_s, ax_nd):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
