"""Checks at start-up, before a run directory exists: one sentence per value out of its range,
instead of a NaN run that exits 0 or a traceback minutes later."""

from __future__ import annotations

import torch

from worldmodels.errors import ConfigError


def _rule(name: str):
    """(test, requirement) for an agent hyperparameter, by its name, or None."""
    if name in ("batch_size", "seq_len", "n_step", "horizon", "hidden", "feature_dim"):
        return (lambda v: isinstance(v, int) and v >= 1), "a whole number of at least 1"
    if name == "lr" or name.endswith("_lr"):
        return (lambda v: v > 0), "positive"
    if name == "gamma":
        return (lambda v: 0 < v <= 1), "in (0, 1]"
    if name in ("updates_per_env_step", "train_ratio"):
        return (lambda v: v > 0), "positive"
    return None


def validate_agent(hparams: dict) -> None:
    for name, value in hparams.items():
        rule = _rule(name)
        if rule is not None and isinstance(value, (int, float)) and not rule[0](value):
            raise ConfigError(f"model.{name} is {value}; it must be {rule[1]}.")


def validate_data(experience, agent) -> None:
    """The step budget, the warm-up and the replay against what the agent's replay view draws."""
    e = experience
    if dict(agent.hparams).get("cql_alpha", 0) > 0 and not e.offline:
        raise ConfigError("CQL (model.init_args.cql_alpha) trains from a dataset: pass --data.dataset <run directory> "
                          "(python -m worldmodels.dataset info <dir> shows what one holds).")
    if e.offline:
        if e.max_updates is None or e.max_updates < 1:
            raise ConfigError(f"data.max_updates is {e.max_updates}: an offline run (data.dataset) needs it as its "
                              "budget, a whole number of updates of at least 1.")
        needed, held = agent.replay_view().rows_needed(e.env_config.frame_stack), e.replay.time - e.replay.oldest
        if held < needed:  # the warm-up and the capacity are the dataset's
            raise ConfigError(f"dataset {e.dataset} holds {held} steps per environment, but {type(agent).__name__} "
                              f"draws spans of {needed}; use a longer run as the dataset.")
        return
    if e.warmup_steps >= e.total_env_steps:
        raise ConfigError(f"data.warmup_steps ({e.warmup_steps}) is not below data.total_env_steps "
                          f"({e.total_env_steps}): the run would end before its first update.")
    if e.max_updates is not None and e.max_updates < 1:
        raise ConfigError(f"data.max_updates is {e.max_updates}; it must be at least 1 (or null).")
    needed = agent.replay_view().rows_needed(e.env_config.frame_stack)
    rows = e.replay_capacity // max(e.num_envs, 1)
    if rows < needed + 1:
        raise ConfigError(f"data.replay_capacity ({e.replay_capacity}) keeps {rows} steps per environment, but "
                          f"{type(agent).__name__} draws spans of {needed}; raise it.")
    warm_rows = e.warmup_steps // max(e.num_envs, 1) + 1  # + the first frame of each environment
    if warm_rows < needed:
        raise ConfigError(f"data.warmup_steps ({e.warmup_steps}) gives {warm_rows} steps per environment before the "
                          f"first update, but {type(agent).__name__} draws spans of {needed}; raise it.")


REPLAY_DEVICES = ("cpu", "cuda", "auto")


def check_replay_device(choice: str, storage: str) -> str:
    """``data.replay_device`` as given, once it can be honoured: checked when the data module is made,
    before anything is written (which GPU is known later, at set-up: ``Experience.frames_device``)."""
    if choice not in REPLAY_DEVICES:
        raise ConfigError(f"data.replay_device is '{choice}'; choose cpu, cuda (this process's GPU) or auto.")
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("data.replay_device is cuda but this machine has no CUDA GPU that torch can use; "
                          "use --data.replay_device cpu (or auto, which keeps the frames on the host here).")
    if choice == "cuda" and storage == "memmap":
        raise ConfigError("data.replay_device cuda keeps the frames on the GPU, which memory-mapped files "
                          "(data.replay_storage memmap) cannot; use --data.replay_storage memory with it.")
    return choice


def check_frames_fit(frame_bytes: int | None, device: torch.device, capacity: int) -> None:
    """A replay's frames, at full capacity, against the free memory of the GPU they go to (measured,
    before they are allocated): one sentence when they cannot fit, instead of an out-of-memory error
    at some env step. The agent's weights and activations need room beside them, which this does not
    reserve: it stops only what cannot work."""
    if device.type != "cuda" or frame_bytes is None:
        return
    free, _ = torch.cuda.mem_get_info(device)
    if frame_bytes > free:
        raise ConfigError(f"the replay's frames ({frame_bytes / 2**30:.1f} GiB for {capacity:,} frames) do not fit "
                          f"the {free / 2**30:.1f} GiB free on {device} (data.replay_device); lower "
                          "data.replay_capacity, or keep them on the host with --data.replay_device cpu.")


def validate_start(agent, experience) -> None:
    validate_agent(dict(agent.hparams))
    validate_data(experience, agent)


def validate_precision(precision) -> None:
    """fp16 would need a loss scaler the agents' manual optimisation and gradient clipping do not
    apply (clipping scaled gradients clips the wrong norm): refused; bf16 needs none."""
    if str(precision).startswith("16"):
        raise ConfigError(f"trainer.precision {precision} (fp16) is not supported: its loss scaling would clip "
                          "scaled gradients; use bf16-mixed, or 32.")


def plan_processes(trainer_config: dict, experience, workflow) -> tuple[int, object | None]:
    """The number of training processes the trainer config asks for (devices x nodes), and the DDP
    strategy to train them with (None for one process): one sentence for what cannot run.

    Several processes train with ``worldmodels.training.ddp.GradientGroupsDDP``: Lightning's DDP with
    each backward pass's gradients averaged in one all-reduce of the weights it reached. Each process
    draws its own batch: the gradient averages ``processes x batch_size`` samples."""
    devices, nodes = trainer_config.get("devices", 1), int(trainer_config.get("num_nodes") or 1)
    accelerator = str(trainer_config.get("accelerator", "auto"))
    count = len(devices) if isinstance(devices, (list, tuple)) else devices
    gpus = torch.cuda.device_count()
    if str(count) in ("auto", "-1"):  # Lightning's "every device of the host"
        count = max(1, gpus) if accelerator in ("auto", "gpu", "cuda") else 1
    count = int(count)
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and gpus):
        if count > gpus:
            raise ConfigError(f"trainer.devices {devices} asks for {count} GPUs but this machine has {gpus}; "
                              f"use --trainer.devices {max(gpus, 1)}" + (" or --trainer.accelerator cpu." if not gpus else "."))
    processes = count * nodes
    if processes == 1:
        return 1, None
    if experience.offline:
        raise ConfigError("offline training (data.dataset) runs in one process: use --trainer.devices 1.")
    if workflow.online:
        raise ConfigError("the workflow monitor (workflow.online) runs in one process: use --trainer.devices 1.")
    strategy = trainer_config.get("strategy", "auto")
    if not isinstance(strategy, str) or strategy not in ("auto", "ddp"):
        raise ConfigError(f"trainer.strategy {strategy}: several processes train with ddp (or auto, which picks it); "
                          "other strategies are not supported.")
    from worldmodels.training.ddp import GradientGroupsDDP

    return processes, GradientGroupsDDP()
