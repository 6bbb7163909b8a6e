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

import logging
import os
import socket
import sys
import time
import warnings
from pathlib import Path
from urllib.parse import urlparse

import yaml

from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from worldmodels.errors import ConfigError
from worldmodels.run_directory import (check_resume, make_run_directory, remove_failed_start, remove_stale_files,
                                       resolve_run, write_config)
from worldmodels.training import (Agent, AtomicCheckpointIO, Evaluation, Experience, Health, LogCounters,
                                  NumericalGuard, PeriodicCheckpoint, Workflow)
from worldmodels.training.validate import validate_devices, validate_precision, validate_start


def wandb_offline_unless_reachable() -> None:
    """No account and no network must still give a W&B run: offline unless told otherwise, and offline
    with one warning when online mode is asked for but no key is set or the server cannot be reached
    (wandb itself would fail after about 100 s)."""
    mode = os.environ.get("WANDB_MODE")
    if mode not in (None, "online", "run"):
        return
    netrc = Path.home() / ".netrc"
    has_key = bool(os.environ.get("WANDB_API_KEY")) or (
        netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore"))
    if mode is None and not has_key:
        os.environ["WANDB_MODE"] = "offline"
        return
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    if not has_key:
        reason = "no W&B API key is set (WANDB_API_KEY or wandb login)"
    else:
        try:
            socket.create_connection((host, 443), timeout=5).close()
            return
        except OSError as error:
            reason = f"{host} cannot be reached ({error.strerror or error})"
    warnings.warn(f"W&B logs offline: {reason}; upload the run later with `wandb sync`.", stacklevel=1)
    os.environ["WANDB_MODE"] = "offline"


def silence_dependency_noise() -> None:
    """Only what the user needs at start-up: Lightning's advertisement for litlogger and a deprecation
    inside Lightning's pytree helper (torch 2.13) say nothing about the run."""
    class DropTip(logging.Filter):
        def filter(self, record):
            return not str(record.msg).startswith("💡 Tip")

    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(DropTip())
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning)


def check_config_files(args: list[str]) -> None:
    """An empty or non-mapping ``--config`` file gets a sentence naming it (jsonargparse's does not)."""
    for flag, value in zip(args, args[1:]):
        if flag != "--config" or value.lstrip().startswith("{"):
            continue
        path = Path(value)
        if not path.is_file():
            continue  # jsonargparse names a missing file itself
        try:
            content = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise ConfigError(f"config file {path} is not valid YAML ({str(error).splitlines()[0]}).") from None
        if not isinstance(content, dict):
            raise ConfigError(f"config file {path} is {'empty' if content is None else 'not a mapping of keys'}; "
                              "write keys such as model:, data:, trainer: in it.")


class FitCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--name", type=str, default="run", help="Run name; the run directory is runs/<name>-<time>.")
        parser.add_argument("--run_dir", type=str | None, default=None, help="Run directory (overrides the default).")
        parser.add_argument("--ckpt_path", type=str | None, default=None,
                            help="Checkpoint to resume: a path, or 'last' for the newest run of this name.")
        parser.add_argument("--force_resume", type=bool, default=False,
                            help="Resume even when the config differs from the run's in what shapes learning.")
        parser.add_argument("--wandb_project", type=str, default="worldmodels")
        parser.add_class_arguments(Evaluation, "evaluation")
        parser.add_class_arguments(Health, "health")
        parser.add_class_arguments(Workflow, "workflow")
        parser.add_class_arguments(NumericalGuard, "guard")
        parser.add_class_arguments(PeriodicCheckpoint, "checkpoint", skip={"dirpath"})
        parser.link_arguments("seed_everything", "data.seed")
        parser.link_arguments("seed_everything", "health.seed")

    def instantiate_trainer(self, **kwargs):
        config = self.config_init
        if self.datamodule.offline:
            self.datamodule.setup("fit")  # opens the dataset: a missing or mismatched one stops here too
        validate_start(self.model, self.datamodule)  # before anything is written
        validate_precision(config["trainer"]["precision"])
        validate_devices(config["trainer"]["devices"], config["trainer"].get("num_nodes", 1))
        self.datamodule.spec  # makes the environments: an unknown task or a missing backend stops here too
        self.run_dir, self.resume_from = resolve_run(config["name"], config["run_dir"], config["ckpt_path"])
        self.created_run_dir = make_run_directory(self.run_dir)
        remove_stale_files(self.run_dir)
        self.config_text = self.parser.dump(self.config, skip_none=False)
        if self.resume_from is not None and not config["force_resume"]:
            check_resume(self.run_dir, self.config_text)
        wandb_offline_unless_reachable()
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
                     callbacks=[config["guard"], LogCounters(), checkpoint, config["evaluation"], config["health"],
                                config["workflow"]],  # the workflow reads the health check of the same update
                     plugins=[AtomicCheckpointIO()])
        trainer = super().instantiate_trainer(**{**kwargs, **extra})
        run = wandb_logger.experiment
        if hasattr(run, "id") and isinstance(run.id, str):
            id_file.write_text(run.id)
            run.define_metric("*", step_metric=self.datamodule.progress_key)  # updates, offline
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
    silence_dependency_noise()
    cli, started = None, False
    try:
        check_config_files(sys.argv[1:] if args is None else args)
        cli = FitCLI(
            Agent, Experience, subclass_mode_model=True, run=False, args=args, save_config_callback=None,
            seed_everything_default=0, auto_configure_optimizers=False,
            # devices=1: Lightning's "auto" takes every GPU of the host and starts DDP unasked.
            trainer_defaults=dict(max_epochs=-1, devices=1, enable_checkpointing=False, enable_progress_bar=False,
                                  num_sanity_val_steps=0, log_every_n_steps=50, enable_model_summary=False),
        )
        write_config(cli.run_dir, cli.config_text, resumed=cli.resume_from is not None)
        cli.model.build(cli.datamodule.spec)
        started = True
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.resume_from)
    except SystemExit:
        if cli is not None and getattr(cli, "trainer", None) is not None and cli.trainer.interrupted:
            sys.exit(130)  # Lightning exits 1 after Ctrl-C; the shell's convention is 128 + SIGINT
        raise
    except Exception as error:
        cause = config_error_in(error)
        if cause is None:
            raise
        if not started and cli is not None and getattr(cli, "created_run_dir", False):
            import wandb

            wandb.finish(exit_code=1)  # else it writes its files into the directory again at exit
            remove_failed_start(cli.run_dir)
        print(f"error: {cause}", file=sys.stderr)
        sys.exit(2)
    print(f"run directory: {cli.run_dir}")
    return cli.run_dir


if __name__ == "__main__":
    main()
