"""The names of the files in a run directory, spelled in this one place (no Lightning, no torch: the
analysis commands read runs with these names and nothing else of the training stack).

    <run>/config.yaml                 the config the run was started with (never overwritten)
    <run>/config-resumed-<n>.yaml     the config of its n-th resume
    <run>/checkpoints/last.ckpt       weights, optimizers, counters and RNG states (no replay)
    <run>/checkpoints/early_stop.ckpt the state when the numerical guard stopped the run
    <run>/replay/rows-*.pt            the replay, appended at each checkpoint (rank r > 0: replay-rank<r>/)
    <run>/csv/metrics.csv             the metrics (csv-resumed-<time>/metrics.csv for each resume)
    <run>/eval-final.json             the evaluation at the end of training
    <run>/run.lock                    the process writing the run (pid and host)
    <run>/run_id.txt                  the run's id, carried by its replay files
    <run>/wandb_id.txt                the W&B run a resume continues
    <run>/workflow.txt                what the workflow callback decided (early stop, plateau)
    <run>/health_warnings.txt         the health check's warnings
    <run>/collected.json              a dataset played by ``python -m worldmodels.dataset collect``
"""

from __future__ import annotations

from pathlib import Path

CONFIG = "config.yaml"
RESUMED_CONFIGS = "config-resumed-*.yaml"
CHECKPOINTS = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
EARLY_STOP_CHECKPOINT = "early_stop.ckpt"
REPLAY = "replay"
METRICS_CSV = "metrics.csv"
FIRST_CSV = "csv"
RESUMED_CSVS = "csv-resumed-*"
ALL_METRICS = f"csv*/{METRICS_CSV}"  # the first run's and every resume's
FINAL_EVALUATION = "eval-final.json"
RUN_LOCK = "run.lock"
RUN_ID = "run_id.txt"
WANDB_ID = "wandb_id.txt"
COLLECTED = "collected.json"
WORKFLOW_LOG = "workflow.txt"
HEALTH_WARNINGS = "health_warnings.txt"


def resumed_config(n: int) -> str:
    return f"config-resumed-{n}.yaml"


def resumed_csv(stamp: str) -> str:
    return f"csv-resumed-{stamp}"


def replay_of_rank(rank: int) -> str:
    """Rank 0's replay is ``replay/``, as a one-process run's; the others' ``replay-rank<r>/``."""
    return REPLAY if rank == 0 else f"{REPLAY}-rank{rank}"


def checkpoints_dir(run: Path) -> Path:
    return Path(run) / CHECKPOINTS


def last_checkpoint(run: Path) -> Path:
    return Path(run) / CHECKPOINTS / LAST_CHECKPOINT
