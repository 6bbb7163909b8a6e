"""The shipped configs' smoke runs (``configs/smoke.yaml`` merged in), shared by the tools that run them
(``same_weights.py``: equal checkpoints across revisions; ``smoke_times.py``: how long each takes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOT_SHIPPED = {"smoke", "dqn_50m", "dreamer_2024"}  # merged after another config, or an overlay
# Offline configs and the online config whose smoke run is their dataset (the same environment).
DATASET_FROM = {"cql_atari": "nddqn_atari", "cql_dmc": "drq_dmc"}


def shipped_configs() -> list[str]:
    return sorted(p.stem for p in (ROOT / "configs").glob("*.yaml") if p.stem not in NOT_SHIPPED)


def smoke_command(tree: Path, config: str, run_dir: Path, seed: int, extra: list[str] = ()) -> list[str]:
    return [sys.executable, "-m", "worldmodels.fit", "--config", str(tree / "configs" / f"{config}.yaml"),
            "--config", str(tree / "configs" / "smoke.yaml"), "--seed_everything", str(seed),
            "--run_dir", str(run_dir), *extra]


def run_smoke(tree: Path, config: str, run_dir: Path, seed: int, env: dict[str, str], extra: list[str] = ()
              ) -> subprocess.CompletedProcess:
    """One smoke run with the package of ``tree`` in its own process (``env`` added to this one's)."""
    return subprocess.run(smoke_command(tree, config, run_dir, seed, extra), cwd=tree,
                          env=dict(os.environ, PYTHONPATH=str(tree), **env), capture_output=True, text=True)


def last_line(done: subprocess.CompletedProcess) -> str:
    """What a failed run said last (its error sentence, or the traceback's last line)."""
    return done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
