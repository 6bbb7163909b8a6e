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
This module is the command; the library it reads runs with is ``worldmodels.replay.dataset``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

from worldmodels import run_files
from worldmodels.checkpoint_file import EXPERIENCE_STATE, write_checkpoint
from worldmodels.envs.observations import describe_layout, layout_of, map_obs
from worldmodels.errors import ConfigError
from worldmodels.replay.dataset import episodes, open_dataset, run_of
from worldmodels.replay.storage import Replay
from worldmodels.run_directory import ensure_run_id


def info(path: Path) -> str:
    data = open_dataset(path)
    replay = data.replay
    eps = episodes(replay)
    whole = [(ret, length) for ret, length, ok in eps if ok]
    lines = [
        f"dataset {run_of(path)}: {data.config['model']['class_path']} on {data.env.suite}/{data.env.task}",
        f"rows: {len(replay):,} ({replay.time - replay.oldest:,} per environment x {replay.num_envs}), logical times "
        f"{replay.oldest:,}-{replay.time:,}; {replay.nbytes() / 1e6:.1f} MB allocated for its capacity",
        f"observations ({data.env.frame_stack} frame(s) per state): {describe_layout(data.obs_keys)}; "
        f"actions: {data.actions}",
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

    if steps < 1 or not 0.0 <= epsilon <= 1.0:
        raise ConfigError(f"--steps is {steps} and --epsilon {epsilon}: take at least one step, with epsilon in [0, 1].")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"--out {out} is not empty; collect into a new directory.")
    trained = load_agent(Path(ckpt), seed)
    agent, env = trained.agent, trained.data.env_config
    envs = make_vector_env(env, 1, seed, training=True)
    capacity = 2 * steps + 1  # each step's frame, and at most one first frame of a new episode per step
    replay = Replay(capacity, 1, stack_padding=env.stack_padding,
                    layout=layout_of(envs.single_observation_space, env.frame_stack))
    rng = np.random.default_rng(seed)
    step = envs.reset(seed=seed)
    replay.add(step.obs, envs.random_actions(rng), step.reward, step.terminated, step.truncated, step.first)
    state, taken, scores = agent.initial_state(1), 0, []
    with agent.acting(), tqdm(total=steps, unit="step", desc="collecting", dynamic_ncols=True) as bar:
        while taken < steps:
            obs = map_obs(lambda x: torch.as_tensor(x, device=agent.device), step.obs)
            first = torch.as_tensor(step.first, device=agent.device)
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
    replay.persist(out / run_files.REPLAY)
    write_checkpoint({EXPERIENCE_STATE: {"replay": replay.state_dict()}}, run_files.last_checkpoint(out))
    config = dict(trained.config, name=f"{trained.config.get('name', 'run')}-collected")
    config["data"] = dict(config["data"], replay_capacity=capacity, num_envs=1)
    (out / run_files.CONFIG).write_text(yaml.safe_dump(config, sort_keys=False))
    record = {"checkpoint": str(Path(ckpt).resolve()), "steps": steps, "epsilon": epsilon, "seed": seed,
              "games": len(scores), "scores": scores}
    (out / run_files.COLLECTED).write_text(json.dumps(record, indent=2) + "\n")
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
