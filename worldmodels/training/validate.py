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


def validate_start(agent, experience) -> None:
    validate_agent(dict(agent.hparams))
    validate_data(experience, agent)


def validate_precision(precision) -> None:
    """fp16 would need a loss scaler the agents' manual optimisation and gradient clipping do not
    apply (clipping scaled gradients clips the wrong norm): refused; bf16 needs none."""
    if str(precision).startswith("16"):
        raise ConfigError(f"trainer.precision {precision} (fp16) is not supported: its loss scaling would clip "
                          "scaled gradients; use bf16-mixed, or 32.")


def validate_devices(devices, num_nodes=1) -> None:
    """More than one process is refused until the pipeline is correct under DDP: today every rank would
    collect the same data (one seed) and write the same replay files, and the run crashes mid-way."""
    count = len(devices) if isinstance(devices, (list, tuple)) else devices
    if str(count) in ("auto", "-1"):  # Lightning's "every device of the host"
        count = max(1, torch.cuda.device_count())
    if str(count) != "1" or int(num_nodes or 1) != 1:
        raise ConfigError(f"trainer.devices {devices} (num_nodes {num_nodes}): training on several devices is not "
                          "supported yet (the ranks would collect the same data and write the same replay files); "
                          "use --trainer.devices 1.")
