"""Metrics a run logged, read back from its CSV files (the first run's and each resume's)."""

from __future__ import annotations

import csv
from pathlib import Path

from worldmodels import run_files


def logged_curve(run_dir: Path, key: str) -> list[tuple[int, float]]:
    """(env_steps, ``key``) wherever the run logged ``key``, over the first CSV and those of its
    resumes; a later file wins where two logged it at the same step (a resume replays the steps after
    its checkpoint)."""
    files = [run_dir / run_files.FIRST_CSV / run_files.METRICS_CSV,
             *sorted(run_dir.glob(f"{run_files.RESUMED_CSVS}/{run_files.METRICS_CSV}"))]
    points: dict[int, float] = {}
    for path in files:
        if not path.is_file():
            continue
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                if row.get(key) and row.get("env_steps"):
                    points[int(float(row["env_steps"]))] = float(row[key])
    return sorted(points.items())
