"""A run's replay as a dataset: the rows a run directory holds (``replay/`` and the cursor in
``checkpoints/last.ckpt``), rebuilt as a resume rebuilds them but read-only: files past the
checkpoint's cursor (the run may be writing its next checkpoint) are ignored and nothing in the run
is removed. Offline training (``data.dataset``) and ``python -m worldmodels.dataset`` read runs here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from worldmodels import run_files
from worldmodels.checkpoint_file import EXPERIENCE_STATE, rank_zero_state, read_checkpoint
from worldmodels.envs import EnvConfig
from worldmodels.envs.observations import ObsKey
from worldmodels.errors import ConfigError
from worldmodels.replay.storage import Replay
from worldmodels.run_directory import latest_config


@dataclass
class Dataset:
    replay: Replay
    config: dict  # the run's resolved config
    env: EnvConfig  # its training environment, resolved

    @property
    def obs_keys(self) -> tuple[ObsKey, ...]:
        """The observation's keys as agents see them, frame stacks included."""
        return self.replay.obs_keys

    @property
    def actions(self) -> str:
        """The action space in words (``describe_actions``), from a stored action."""
        action = self.replay.steps(torch.tensor([self.replay.oldest]), torch.tensor([0]))["action"]
        return describe_actions(env=self.env, action_dim=action.shape[-1] if action.is_floating_point() else None)


def describe_actions(env: EnvConfig, action_dim: int | None) -> str:
    """An action space in words, to compare a dataset's with a run's: continuous ones by their
    dimensions, a discrete one (``action_dim`` None) by its game, whose action set rows cannot show."""
    if action_dim is not None:
        return f"continuous, {action_dim} dims"
    return f"discrete, the action set of {env.suite}/{env.task}"


def run_of(path: Path) -> Path:
    """The run directory behind ``path`` (the run itself, or its ``replay/``)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"dataset {path} does not exist; pass a run directory written by worldmodels.fit.")
    run = path.parent if path.name == run_files.REPLAY else path
    if not (run / run_files.REPLAY).is_dir() or not run_files.last_checkpoint(run).is_file():
        raise ConfigError(f"{path} is not a dataset: a run directory with replay/ and checkpoints/last.ckpt "
                          "(written by worldmodels.fit since its replay moved out of the checkpoint).")
    return run


def run_config(run: Path) -> dict:
    """The run's latest resolved config, or one sentence saying why ``run`` has none."""
    path = latest_config(run)
    if not path.is_file():
        raise ConfigError(f"{run} is not a run directory: it has no config.yaml; pass a run directory written by "
                          "worldmodels.fit.")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML ({str(error).splitlines()[0]}); it is not a config written by "
                          "worldmodels.fit.") from None
    if not isinstance(config, dict) or not isinstance(config.get("data"), dict):
        raise ConfigError(f"{path} has no data: section; it is not a config written by worldmodels.fit.")
    return config


def open_dataset(path: Path) -> Dataset:
    run = run_of(path)
    config = run_config(run)
    data = config["data"]
    try:
        env = EnvConfig(**data["env"]).resolved()
    except (KeyError, TypeError) as error:
        raise ConfigError(f"{latest_config(run)} has no usable data.env ({error}); it is not a config written by "
                          "worldmodels.fit.") from None
    saved = read_checkpoint(run_files.last_checkpoint(run)).get(EXPERIENCE_STATE, {})
    state, processes = rank_zero_state(saved).get("replay"), len(saved.get("ranks", [saved]))
    if state is None:
        raise ConfigError(f"{run}/checkpoints/last.ckpt holds no replay cursor; it was not written by worldmodels.fit.")
    # A run of several processes: its first process's replay (each held replay_capacity / processes).
    layout = tuple(ObsKey(k["name"], k["kind"], tuple(k["shape"]), k["frame_stack"]) for k in state["layout"]) \
        if "layout" in state else None  # written before replays kept their layout: one image
    replay = Replay(data["replay_capacity"] // processes, data.get("num_envs", 1), env.frame_stack,
                    env.frame_channels if layout is None else 0, stack_padding=env.stack_padding, layout=layout)
    replay.load_state_dict(state, run / run_files.REPLAY, read_only=True)  # the run may be writing: remove nothing
    return Dataset(replay, config, env)


def episodes(replay: Replay) -> list[tuple[float, int, bool]]:
    """(return, steps, whole) of every episode with rows in the replay, in order of their ids; ``whole``
    when its first row is still stored and it ended (terminal, truncated, or its run stopped there)."""
    t = torch.arange(replay.oldest, replay.time)
    found = []
    for env in range(replay.num_envs):
        steps = replay.steps(t, torch.full_like(t, env))
        ids, reward = steps["episode"].numpy(), steps["reward"].numpy()
        first, last = steps["first"].numpy(), steps["last"].numpy()
        for episode in np.unique(ids):
            rows = ids == episode
            begun, ended = bool(first[rows][0]), bool(last[rows][-1])
            # Rewards arrive on the rows after the first one; the steps are the rows after it too.
            found.append((int(episode), float(reward[rows][1:].sum()), int(rows.sum()) - 1, begun and ended))
    return [(ret, length, whole) for _, ret, length, whole in sorted(found)]
