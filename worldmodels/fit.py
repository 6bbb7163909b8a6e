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
import signal
import socket
import sys
import time
import warnings
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

import lightning as L
import torch
import yaml

from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers.utilities import _log_hyperparams
from lightning.pytorch.loggers.logger import DummyExperiment
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from worldmodels import run_files
from worldmodels.envs.observations import summary as observation_summary
from worldmodels.errors import ConfigError
from worldmodels.run_directory import (check_resume, ensure_run_id, make_run_directory, no_checkpoint_yet, remove_failed_start,
                                       holds_lock, remove_stale_files, resolve_run, take_lock, trim_logs_after,
                                       write_config)
from worldmodels.training import (Agent, AtomicCheckpointIO, Evaluation, Experience, Health, LogCounters,
                                  NumericalGuard, PeriodicCheckpoint, Workflow)
from worldmodels.training.clock import LoopCallback
from worldmodels.training.compile import compile_agent, compile_choice
from worldmodels.training.distributed import started_beside_rank_zero
from worldmodels.training.host_memory import reuse_freed_host_memory
from worldmodels.training.validate import plan_processes, validate_precision, validate_start

# Rank 0 hands its run directory and checkpoint to the processes Lightning's launcher starts beside it
# (they inherit its environment): their own resolution could name another directory (a new time stamp).
RUN_DIR_VARIABLE, RESUME_VARIABLE = "WORLDMODELS_RUN_DIR", "WORLDMODELS_RESUME_FROM"
CREATED_RUN_DIR: dict[str, Path] = {}  # the run directory this process made, once it holds its lock


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
    """Only what the user needs at start-up: Lightning's advertisement for litlogger, a deprecation
    inside Lightning's pytree helper (torch 2.13), and LightningCLI's caution against passing ``args`` while
    ``sys.argv`` holds arguments (``main`` passes ``sys.argv``'s own, joined where values look like flags)
    say nothing about the run."""
    class DropTip(logging.Filter):
        def filter(self, record):
            return not str(record.msg).startswith("💡 Tip")

    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(DropTip())
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r"LightningCLI's args parameter is intended to run from within Python")


def fast_cuda_kernels() -> None:
    """On CUDA: TF32 for float32 matmuls and convolutions (10 mantissa bits, as bf16-mixed's fp32 parts
    tolerate), and cuDNN's autotuner, which pays off since a run's shapes never change."""
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


def check_config_files(args: list[str]) -> None:
    """An empty or non-mapping ``--config`` file gets a sentence naming it (jsonargparse's does not)."""
    for flag, value in zip(args, args[1:]):
        if flag != "--config" or value.lstrip().startswith("{"):
            continue
        path = Path(value)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; pass a file such as configs/nddqn_atari.yaml "
                              "(python -m worldmodels.fit --help lists the options).")
        try:
            content = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise ConfigError(f"config file {path} is not valid YAML ({str(error).splitlines()[0]}).") from None
        if not isinstance(content, dict):
            raise ConfigError(f"config file {path} is {'empty' if content is None else 'not a mapping of keys'}; "
                              "write keys such as model:, data:, trainer: in it.")


class Deferred:
    """A logger that starts its experiment (the W&B run, the CSV folder) when ``RunBookkeeping`` says,
    not when Lightning first looks at it (its set-up touches every logger's experiment before the
    checkpoint is loaded): until then its experiment is Lightning's do-nothing one."""

    started = False

    @property
    def experiment(self):
        return super().experiment if self.started else DummyExperiment()


class DeferredWandbLogger(Deferred, WandbLogger):
    pass


class DeferredCSVLogger(Deferred, CSVLogger):
    pass


class RunBookkeeping(LoopCallback):
    """What a start or a resume records in the run directory, written only once the checkpoint has loaded
    and passed its checks (``Experience.train_dataloader``, which Lightning calls after every restore and
    before the first env step, calls ``on_run_restored``), so that a failed resume leaves the directory
    as it was: ``config.yaml`` or ``config-resumed-<n>.yaml``, the CSV rows an interrupted
    attempt logged past the checkpoint dropped, the W&B run started (or continued) and its id kept, and
    the hyperparameters logged."""

    def __init__(self, run_dir: Path, config_text: str, resumed: bool, wandb_logger):
        self.run_dir, self.config_text, self.resumed, self.wandb_logger = run_dir, config_text, resumed, wandb_logger

    done = False

    def on_run_restored(self, trainer) -> None:
        if self.done:
            return
        self.done = True
        for logger in trainer.loggers:
            logger.started = True
        if not trainer.is_global_zero:
            return
        write_config(self.run_dir, self.config_text, resumed=self.resumed)
        clock = self.clock
        if self.resumed:
            trim_logs_after(self.run_dir, clock.progress, clock.progress_key)
        run = self.wandb_logger.experiment
        if hasattr(run, "id") and isinstance(run.id, str):
            (self.run_dir / run_files.WANDB_ID).write_text(run.id)
            run.define_metric("*", step_metric=clock.progress_key)  # updates, offline
        _log_hyperparams(trainer)


def values_that_look_like_flags(args: list[str]) -> list[str]:
    """``--model.init_args.lr -1e-4``: argparse takes a value that starts with '-' for an option unless it
    looks like a plain negative number (``-1e-4`` does not); join such a value to its flag."""
    out, i = [], 0
    while i < len(args):
        if args[i].startswith("--") and "=" not in args[i] and i + 1 < len(args) and args[i + 1].startswith("-"):
            try:
                float(args[i + 1])
            except ValueError:
                pass
            else:
                out.append(f"{args[i]}={args[i + 1]}")
                i += 2
                continue
        out.append(args[i])
        i += 1
    return out


HELP = "python -m worldmodels.fit --help lists the options"


def parse_error_sentence(parser, message: str) -> str:
    """jsonargparse's parse error as one sentence, with the closest valid key, instead of its usage dump."""
    import difflib
    import re

    keys = sorted({o[2:] for a in parser._actions for o in a.option_strings if o.startswith("--")})
    if found := re.search(r"unrecognized arguments: (\S+)", message):
        wrong = found[1].split("=")[0].lstrip("-")
    elif found := re.search(r"Group '([\w.]+)' does not accept option '(\w+)'", message):
        wrong = f"{found[1]}.{found[2]}"
    elif found := re.search(r"class_path '([\w.]+)':\s*Option '(\w+)' is not accepted", message):
        wrong = f"model.init_args.{found[2]}"
        keys = [f"model.init_args.{name}" for name in init_parameters(found[1])] or keys
    else:
        return f"{message.strip().splitlines()[0].rstrip(':')} ({HELP})."
    close = difflib.get_close_matches(wrong, keys, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"{wrong} is not an option of a flag or a config file{hint}; {HELP}."


def init_parameters(class_path: str) -> list[str]:
    """The constructor arguments of ``class_path`` and its bases (``model_free.Rainbow`` or a full path)."""
    import importlib
    import inspect

    for path in (class_path, f"worldmodels.{class_path}"):
        module, _, name = path.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError, ValueError):
            continue
        names = []
        for base in cls.__mro__:
            if "__init__" in vars(base):
                names += [p for p in inspect.signature(base.__init__).parameters if p not in ("self", "args", "kwargs")]
        return sorted(set(names))
    return []


class FitCLI(LightningCLI):
    def init_parser(self, **kwargs):
        parser = super().init_parser(**kwargs)

        def error(message, ex=None):
            raise ConfigError(parse_error_sentence(parser, message))

        parser.error = error  # one sentence and exit code 2 (main), not the 77-line usage
        return parser

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--name", type=str, default="run", help="Run name; the run directory is runs/<name>-<time>.")
        parser.add_argument("--run_dir", type=str | None, default=None, help="Run directory (overrides the default).")
        parser.add_argument("--ckpt_path", type=str | None, default=None,
                            help="Checkpoint to resume: a path, or 'last' for the newest run of this name.")
        parser.add_argument("--force_resume", type=bool, default=False,
                            help="Resume even when the config differs from the run's in what shapes learning.")
        parser.add_argument("--wandb_project", type=str, default="worldmodels")
        parser.add_argument("--compile", type=bool | Literal["parts", "full"], default=False,
                            help="torch.compile the agent's update (worldmodels.training.compile): parts (or true, "
                                 "as older runs wrote it) its hot parts, full the whole update (CUDA graphs on a "
                                 "GPU); the first updates include the compilation.")
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
        processes, strategy = plan_processes(config["trainer"], self.datamodule, config["workflow"])
        self.follower = started_beside_rank_zero()
        if self.follower:
            self._follow_rank_zero(config)
        else:
            self._resolve_run(config, processes)  # a resume under another config stops here, naming the key
        self.model.build(self.datamodule.spec)  # makes the environments: an unknown task or a missing backend
        if not self.follower:
            print(start_summary(self.datamodule.spec), flush=True)
        compile_what = compile_choice(config["compile"])
        if compile_what:                        # stops here too, as an agent with nothing to compile does
            compile_agent(self.model, compile_what)
        wandb_id = None
        if not self.follower:
            created = make_run_directory(self.run_dir)
            if created:
                CREATED_RUN_DIR["path"] = self.run_dir  # removed again if start-up is interrupted (once locked)
            take_lock(self.run_dir)  # one writer per run directory: a second one stops here, naming the first
            self.created_run_dir = created
            ensure_run_id(self.run_dir)  # its replay files carry it
            remove_stale_files(self.run_dir)
            wandb_offline_unless_reachable()
            id_file = self.run_dir / run_files.WANDB_ID
            wandb_id = id_file.read_text().strip() if id_file.exists() else None
        wandb_logger = DeferredWandbLogger(project=config["wandb_project"], name=self.run_dir.name, save_dir=str(self.run_dir),
                                   id=wandb_id, resume="allow" if wandb_id else None)
        # Lightning's CSV logger empties an existing file, so a resumed run writes a file of its own.
        csv_version = run_files.FIRST_CSV if self.resume_from is None else run_files.resumed_csv(time.strftime('%Y%m%d-%H%M%S'))
        csv_logger = DeferredCSVLogger(str(self.run_dir), name="", version=csv_version)
        checkpoint = config["checkpoint"]
        checkpoint.dirpath = str(run_files.checkpoints_dir(self.run_dir))
        callbacks = [config["guard"], LogCounters(), checkpoint, config["evaluation"], config["health"],
                     config["workflow"]]  # the workflow reads the health check of the same update
        if not self.follower:
            callbacks.insert(0, RunBookkeeping(self.run_dir, self.config_text, self.resume_from is not None, wandb_logger))
        extra = dict(logger=[wandb_logger, csv_logger], default_root_dir=str(self.run_dir), callbacks=callbacks,
                     plugins=[AtomicCheckpointIO()], enable_autolog_hparams=False)  # RunBookkeeping logs them
        if strategy is not None:
            extra["strategy"] = strategy
        trainer = super().instantiate_trainer(**{**kwargs, **extra})
        if processes > 1 and not self.follower:  # the launcher's processes inherit these
            os.environ[RUN_DIR_VARIABLE] = str(self.run_dir)
            os.environ[RESUME_VARIABLE] = str(self.resume_from or "")
        return trainer

    def _resolve_run(self, config, processes: int) -> None:
        """The run directory and the checkpoint to resume, checked against this config; nothing written."""
        self.run_dir, self.resume_from = resolve_run(config["name"], config["run_dir"], config["ckpt_path"])
        self.config_text = self.parser.dump(self.config, skip_none=False)
        if self.resume_from is not None and not Path(self.resume_from).exists():
            no_checkpoint_yet(self.run_dir, self.resume_from)  # a run stopped before its first checkpoint
        if self.resume_from is not None and not config["force_resume"]:
            check_resume(self.run_dir, self.config_text)
        if self.resume_from is not None:
            check_resume_processes(self.resume_from, processes)

    def _follow_rank_zero(self, config) -> None:
        """A process started beside rank 0 uses its run directory and checkpoint and writes no run files:
        from rank 0's environment (Lightning's launcher), else from --run_dir (torchrun, SLURM: every
        process starts on its own, so the directory must be named)."""
        run_dir = os.environ.get(RUN_DIR_VARIABLE) or config["run_dir"]
        if not run_dir:
            raise ConfigError("processes started by torchrun or SLURM need the run directory named: pass the same "
                              "--run_dir to every process.")
        self.run_dir = Path(run_dir)
        if RESUME_VARIABLE in os.environ:
            self.resume_from = Path(os.environ[RESUME_VARIABLE]) if os.environ[RESUME_VARIABLE] else None
        else:
            ckpt = config["ckpt_path"]
            self.resume_from = run_files.last_checkpoint(self.run_dir) if ckpt == "last" else (
                Path(ckpt) if ckpt else None)
        self.created_run_dir = False


def start_summary(spec) -> str:
    """What the agent reads and does: each observation key and the network that reads it, the actions."""
    actions = {"discrete": f"{spec.num_actions} discrete", "continuous": f"{spec.action_dim}-dim continuous in [-1, 1]",
               "multi_discrete": f"multi-discrete {list(spec.action_nvec or ())}"}[spec.action_kind]
    return f"observation keys:\n{observation_summary(spec.obs_keys)}\nactions: {actions}"


def check_resume_processes(checkpoint: Path, processes: int) -> None:
    """A checkpoint holds the state of each process that wrote it (its replay cursor, generators): it
    resumes on as many. Read lazily (mmap): the weights are not loaded twice."""
    if not Path(checkpoint).is_file():
        return  # the checkpoint loader names a missing or corrupt file
    try:
        state = torch.load(checkpoint, mmap=True, weights_only=True).get("Experience", {})
    except Exception:
        return
    saved = len(state.get("ranks", [state]))
    if saved != processes:
        raise ConfigError(f"{checkpoint} was written by a run of {saved} process(es) and this resume has {processes}: "
                          f"resume it with as many (trainer.devices x trainer.num_nodes = {saved}).")


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a scheduler stopping the job), handled as Ctrl-C is: a checkpoint is saved and the
    run exits 143 (128 + SIGTERM)."""


def stop_on_sigterm() -> None:
    """Raise ``Terminated`` on the first SIGTERM; later ones are ignored while the checkpoint is saved.
    Lightning adds its own SIGTERM handler at fit and calls this one after it."""
    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated()

    signal.signal(signal.SIGTERM, handler)


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
    fast_cuda_kernels()
    reuse_freed_host_memory()  # CPU updates free and reallocate blocks of MBs each step
    cli, started = None, False
    stop_on_sigterm()
    try:
        args = values_that_look_like_flags(sys.argv[1:] if args is None else list(args))
        check_config_files(args)
        cli = FitCLI(
            Agent, Experience, subclass_mode_model=True, run=False, args=args, save_config_callback=None,
            seed_everything_default=0, auto_configure_optimizers=False,
            # devices=1: Lightning's "auto" takes every GPU of the host and starts DDP unasked.
            trainer_defaults=dict(max_epochs=-1, devices=1, enable_checkpointing=False, enable_progress_bar=False,
                                  num_sanity_val_steps=0, log_every_n_steps=50, enable_model_summary=False),
        )
        started = True
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.resume_from)
    except SystemExit:
        if cli is not None and getattr(cli, "trainer", None) is not None and cli.trainer.interrupted:
            # Lightning exits 1 after Ctrl-C; the shell's convention is 128 + the signal
            sys.exit(143 if isinstance(sys.exc_info()[1].__context__, Terminated) else 130)
        raise
    except KeyboardInterrupt as error:  # during start-up, before training began: nothing is kept
        created = CREATED_RUN_DIR.get("path")
        if created is not None and holds_lock(created):  # made by this process, and no other writes it
            remove_failed_start(created)
        what = "SIGTERM" if isinstance(error, Terminated) else "Ctrl-C"
        print(f"interrupted ({what}) during start-up, before training began; nothing was written.", file=sys.stderr)
        sys.exit(143 if isinstance(error, Terminated) else 130)
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
    if not cli.follower:
        print(f"run directory: {cli.run_dir}")
    return cli.run_dir


if __name__ == "__main__":
    main()
