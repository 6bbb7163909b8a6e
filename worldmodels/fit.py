"""Train any agent from config files.

    python -m worldmodels.fit --config configs/nddqn_atari.yaml
    python -m worldmodels.fit --config configs/nddqn_atari.yaml --config configs/smoke.yaml --model.init_args.lr 3e-4
    python -m worldmodels.fit --config configs/nddqn_atari.yaml --ckpt_path last      # resume the newest run

Config files merge left to right, then dotted flags override single values. The run directory
(``runs/<name>-<time>`` unless ``--run_dir`` says otherwise) receives the resolved config, the W&B run
(offline unless credentials are configured; ``WANDB_MODE`` is honoured), a CSV of metrics and
``checkpoints/last.ckpt``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from worldmodels.errors import ConfigError
from worldmodels.training import (Agent, AtomicCheckpointIO, Evaluation, Experience, Health, LogCounters,
                                  NumericalGuard, PeriodicCheckpoint)

RUNS = Path("runs")


def wandb_offline_by_default() -> None:
    """No account and no network must still give a W&B run: offline unless told otherwise."""
    if "WANDB_MODE" in os.environ or os.environ.get("WANDB_API_KEY"):
        return
    netrc = Path.home() / ".netrc"
    if not (netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")):
        os.environ["WANDB_MODE"] = "offline"


def resolve_run(name: str, run_dir: str | None, ckpt_path: str | None) -> tuple[Path, Path | None]:
    """The run directory and the checkpoint to resume from (``last``: the newest run named ``name``)."""
    if ckpt_path == "last":
        if run_dir is None:
            candidates = sorted(RUNS.glob(f"{name}-*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
            if not candidates:
                raise ConfigError(f"--ckpt_path last found no checkpoint under {RUNS}/{name}-*; "
                                  "pass --run_dir or the checkpoint's path.")
            return candidates[-1].parent.parent, candidates[-1]
        return Path(run_dir), Path(run_dir) / "checkpoints" / "last.ckpt"
    if ckpt_path is not None:
        ckpt = Path(ckpt_path)
        return (Path(run_dir) if run_dir else ckpt.resolve().parent.parent), ckpt
    if run_dir is None:
        return RUNS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}", None
    run = Path(run_dir)
    if (run / "checkpoints" / "last.ckpt").exists():
        raise ConfigError(f"{run} already holds a run; pass --ckpt_path last to resume it or another --run_dir.")
    return run, None


class FitCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--name", type=str, default="run", help="Run name; the run directory is runs/<name>-<time>.")
        parser.add_argument("--run_dir", type=str | None, default=None, help="Run directory (overrides the default).")
        parser.add_argument("--ckpt_path", type=str | None, default=None,
                            help="Checkpoint to resume: a path, or 'last' for the newest run of this name.")
        parser.add_argument("--wandb_project", type=str, default="worldmodels")
        parser.add_class_arguments(Evaluation, "evaluation")
        parser.add_class_arguments(Health, "health")
        parser.add_class_arguments(NumericalGuard, "guard")
        parser.add_class_arguments(PeriodicCheckpoint, "checkpoint", skip={"dirpath"})
        parser.link_arguments("seed_everything", "data.seed")
        parser.link_arguments("seed_everything", "health.seed")

    def instantiate_trainer(self, **kwargs):
        config = self.config_init
        self.run_dir, self.resume_from = resolve_run(config["name"], config["run_dir"], config["ckpt_path"])
        self.run_dir.mkdir(parents=True, exist_ok=True)
        wandb_offline_by_default()
        id_file = self.run_dir / "wandb_id.txt"
        wandb_id = id_file.read_text().strip() if id_file.exists() else None
        wandb_logger = WandbLogger(project=config["wandb_project"], name=self.run_dir.name, save_dir=str(self.run_dir),
                                   id=wandb_id, resume="allow" if wandb_id else None)
        # Lightning's CSV logger empties an existing file, so a resumed run writes a file of its own.
        csv_version = "csv" if self.resume_from is None else f"csv-resumed-{time.strftime('%Y%m%d-%H%M%S')}"
        csv_logger = CSVLogger(str(self.run_dir), name="", version=csv_version)
        checkpoint = config["checkpoint"]
        checkpoint.dirpath = str(self.run_dir / "checkpoints")
        extra = dict(logger=[wandb_logger, csv_logger], default_root_dir=str(self.run_dir),
                     callbacks=[config["guard"], LogCounters(), checkpoint, config["evaluation"], config["health"]],
                     plugins=[AtomicCheckpointIO()])
        trainer = super().instantiate_trainer(**{**kwargs, **extra})
        run = wandb_logger.experiment
        if hasattr(run, "id") and isinstance(run.id, str):
            id_file.write_text(run.id)
            run.define_metric("*", step_metric="env_steps")
        return trainer


def config_error_in(error: BaseException) -> ConfigError | None:
    """The ConfigError behind ``error``, if any: jsonargparse wraps one raised by an agent's constructor
    in its own ValueError ("Does not validate against any of the Union subtypes")."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, ConfigError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def main(args: list[str] | None = None) -> Path:
    try:
        cli = FitCLI(
            Agent, Experience, subclass_mode_model=True, run=False, args=args, save_config_callback=None,
            seed_everything_default=0, auto_configure_optimizers=False,
            trainer_defaults=dict(max_epochs=-1, enable_checkpointing=False, enable_progress_bar=False,
                                  num_sanity_val_steps=0, log_every_n_steps=50, enable_model_summary=False),
        )
        (cli.run_dir / "config.yaml").write_text(cli.parser.dump(cli.config, skip_none=False))
        cli.model.build(cli.datamodule.spec)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.resume_from)
    except Exception as error:
        cause = config_error_in(error)
        if cause is None:
            raise
        print(f"error: {cause}", file=sys.stderr)
        sys.exit(2)
    print(f"run directory: {cli.run_dir}")
    return cli.run_dir


if __name__ == "__main__":
    main()
