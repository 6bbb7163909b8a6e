"""A run's replay as a dataset: what it holds, and new datasets played by a trained policy.

    python -m worldmodels.dataset info <run directory | its replay/ directory>
    python -m worldmodels.dataset collect --ckpt <run or checkpoint> --steps N [--epsilon E] --out <dir>

``collect`` plays the checkpoint's evaluation policy in its training environment (clipped rewards and
life-loss terminals where the preset has them, as the replay of a training run), taking a uniformly
random action instead with probability ``epsilon`` (a mixed dataset: 0 expert, 1 random), and writes
the directory a run would: ``config.yaml``, ``replay/`` and ``checkpoints/last.ckpt`` with the
replay's cursor, plus ``collected.json`` (where it came from, the scores of the games played).

A run directory written by ``worldmodels.fit`` keeps its replay in ``replay/`` (chunk files appended
at each checkpoint) and the replay's cursor in ``checkpoints/last.ckpt``; together they are the
dataset, rebuilt here as a resume rebuilds it, but read-only: files past the checkpoint's cursor
(the run may be writing its next checkpoint) are ignored and nothing in the run is removed. ``info`` prints its rows, size, spaces and the
episodes it holds with their returns (the stored rewards: clipped where the env preset clips them).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from worldmodels.envs import EnvConfig
from worldmodels.errors import ConfigError
from worldmodels.replay import Replay
from worldmodels.run_directory import ensure_run_id, latest_config


@dataclass
class Dataset:
    replay: Replay
    config: dict  # the run's resolved config
    env: EnvConfig  # its training environment, resolved

    @property
    def obs_shape(self) -> tuple[int, ...]:
        """A state as agents see it, (frame_stack x C, H, W), from the stored frames."""
        c, h, w = self.replay.frames(torch.tensor([self.replay.oldest]), torch.tensor([0])).shape[1:]
        return (self.env.frame_stack * c, h, w)

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
    run = path.parent if path.name == "replay" else path
    if not (run / "replay").is_dir() or not (run / "checkpoints" / "last.ckpt").is_file():
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
    from worldmodels.training import AtomicCheckpointIO  # the training package pulls in Lightning
    from worldmodels.training.experience import rank_zero_state

    run = run_of(path)
    config = run_config(run)
    data = config["data"]
    try:
        env = EnvConfig(**data["env"]).resolved()
    except (KeyError, TypeError) as error:
        raise ConfigError(f"{latest_config(run)} has no usable data.env ({error}); it is not a config written by "
                          "worldmodels.fit.") from None
    saved = AtomicCheckpointIO().load_checkpoint(run / "checkpoints" / "last.ckpt").get("Experience", {})
    state, processes = rank_zero_state(saved).get("replay"), len(saved.get("ranks", [saved]))
    if state is None:
        raise ConfigError(f"{run}/checkpoints/last.ckpt holds no replay cursor; it was not written by worldmodels.fit.")
    # A run of several processes: its first process's replay (each held replay_capacity / processes).
    replay = Replay(data["replay_capacity"] // processes, data.get("num_envs", 1), env.frame_stack, env.frame_channels,
                    stack_padding=env.stack_padding)
    replay.load_state_dict(state, run / "replay", read_only=True)  # the run may be writing: remove nothing
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


def info(path: Path) -> str:
    data = open_dataset(path)
    replay = data.replay
    eps = episodes(replay)
    whole = [(ret, length) for ret, length, ok in eps if ok]
    lines = [
        f"dataset {run_of(path)}: {data.config['model']['class_path']} on {data.env.suite}/{data.env.task}",
        f"rows: {len(replay):,} ({replay.time - replay.oldest:,} per environment x {replay.num_envs}), logical times "
        f"{replay.oldest:,}-{replay.time:,}; {replay.nbytes() / 1e6:.1f} MB allocated for its capacity",
        f"observations: {data.env.frame_stack} x {tuple(replay.frames(torch.tensor([replay.oldest]), torch.tensor([0])).shape[1:])} "
        f"uint8 frames per state; actions: {data.actions}",
        f"episodes: {len(eps)} with rows stored, {len(whole)} whole",
    ]
    if whole:
        returns, lengths = np.array([r for r, _ in whole]), np.array([n for _, n in whole])
        clipped = " (clipped rewards)" if data.env.clip_rewards else ""
        lines.append(f"returns of whole episodes{clipped}: mean {returns.mean():.2f}, std {returns.std():.2f}, "
                     f"min {returns.min():.2f}, max {returns.max():.2f}; length mean {lengths.mean():.1f} steps")
    return "\n".join(lines)


def collect(ckpt: Path, steps: int, out: Path, epsilon: float = 0.0, seed: int = 0) -> Path:
    """Play ``steps`` env steps of the checkpoint's policy (see the module docstring) into ``out``."""
    from tqdm.auto import tqdm

    from worldmodels.envs import make_vector_env
    from worldmodels.evaluate import load_agent
    from worldmodels.training import AtomicCheckpointIO

    if steps < 1 or not 0.0 <= epsilon <= 1.0:
        raise ConfigError(f"--steps is {steps} and --epsilon {epsilon}: take at least one step, with epsilon in [0, 1].")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"--out {out} is not empty; collect into a new directory.")
    trained = load_agent(Path(ckpt), seed)
    agent, env = trained.agent, trained.data.env_config
    envs = make_vector_env(env, 1, seed, training=True)
    capacity = 2 * steps + 1  # each step's frame, and at most one first frame of a new episode per step
    replay = Replay(capacity, 1, env.frame_stack, env.frame_channels, stack_padding=env.stack_padding)
    rng = np.random.default_rng(seed)
    step = envs.reset(seed=seed)
    replay.add(step.obs, envs.random_actions(rng), step.reward, step.terminated, step.truncated, step.first)
    state, taken, scores = agent.initial_state(1), 0, []
    with agent.acting(), tqdm(total=steps, unit="step", desc="collecting", dynamic_ncols=True) as bar:
        while taken < steps:
            obs, first = (torch.as_tensor(x, device=agent.device) for x in (step.obs, step.first))
            action, state = agent.act(obs, state, first, explore=False)
            action = action.cpu().numpy()
            if rng.random() < epsilon:
                action = envs.random_actions(rng)
            step = envs.step(action)
            replay.add(step.obs, action, step.reward, step.terminated, step.truncated, step.first)
            new = int((~step.first).sum())
            taken += new
            bar.update(new)
            scores += [score for _, score, _ in step.finished_games]
    envs.close()
    out.mkdir(parents=True, exist_ok=True)
    ensure_run_id(out)  # the replay files carry it, as a run's do
    replay.persist(out / "replay")
    AtomicCheckpointIO().save_checkpoint({"Experience": {"replay": replay.state_dict()}},
                                         out / "checkpoints" / "last.ckpt")
    config = dict(trained.config, name=f"{trained.config.get('name', 'run')}-collected")
    config["data"] = dict(config["data"], replay_capacity=capacity, num_envs=1)
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    record = {"checkpoint": str(Path(ckpt).resolve()), "steps": steps, "epsilon": epsilon, "seed": seed,
              "games": len(scores), "scores": scores}
    (out / "collected.json").write_text(json.dumps(record, indent=2) + "\n")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m worldmodels.dataset", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="what a dataset holds").add_argument("path", type=Path)
    play = sub.add_parser("collect", help="a dataset played by a trained policy")
    play.add_argument("--ckpt", type=Path, required=True, help="a run directory or one of its checkpoints")
    play.add_argument("--steps", type=int, required=True, help="env steps to play")
    play.add_argument("--epsilon", type=float, default=0.0, help="probability of a uniformly random action instead")
    play.add_argument("--seed", type=int, default=0)
    play.add_argument("--out", type=Path, required=True, help="a new directory: the dataset")
    args = parser.parse_args(argv)
    try:
        if args.command == "info":
            print(info(args.path))
        else:
            out = collect(args.ckpt, args.steps, args.out, args.epsilon, args.seed)
            print(info(out))
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
