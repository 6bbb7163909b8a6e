"""Play a trained agent's evaluation policy from a checkpoint and write its returns as JSON.

    python -m worldmodels.evaluate --ckpt runs/nddqn_atari-20260101-120000/checkpoints/last.ckpt --episodes 100
    python -m worldmodels.evaluate --ckpt <run>/checkpoints/last.ckpt --seed 1 --out pong.json --video

The agent and the environment are rebuilt from the run's ``config.yaml`` (the checkpoint lies in
``<run>/checkpoints/``), so an evaluation always sees exactly the networks and frames it was trained
with; whole games with true rewards (``EnvConfig.for_evaluation``). The JSON (default
``<run>/eval-<checkpoint name>.json``) holds the returns, their mean and std, the env steps the agent
was trained for, and for the 26 Atari 100k games the human-normalised score of the mean return.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
import yaml
from jsonargparse import ArgumentParser

from worldmodels import run_files
from worldmodels.errors import ConfigError
from worldmodels.run_directory import latest_config
from worldmodels.training import Agent, AtomicCheckpointIO, Counters, Experience, run_episodes
from worldmodels.training.clock import RunClock
from worldmodels.training.evaluation import evaluation_record


def checkpoint_path(path: Path) -> Path:
    """The checkpoint itself, or a run directory's ``checkpoints/last.ckpt``."""
    ckpt = run_files.last_checkpoint(path) if path.is_dir() else path
    if not ckpt.is_file():
        raise ConfigError(f"checkpoint {ckpt} does not exist; pass a run's checkpoints/<name>.ckpt file.")
    return ckpt


def read_checkpoint(ckpt: Path) -> dict:
    """The checkpoint's contents, read as ``fit`` reads them (one sentence for a corrupt file)."""
    checkpoint = AtomicCheckpointIO().load_checkpoint(ckpt)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ConfigError(f"checkpoint {ckpt} holds no agent weights ('state_dict'); pass a checkpoint written by "
                          "worldmodels.fit.")
    return checkpoint


def read_run_config(run_dir: Path) -> dict:
    path = latest_config(run_dir)  # a forced resume may have changed the config the weights belong to
    if not path.is_file():
        raise ConfigError(f"{path} does not exist; the checkpoint must lie in <run>/checkpoints/ of a run written "
                          "by worldmodels.fit, next to its config.yaml.")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML ({error}); restore the config the run wrote.") from None
    if not isinstance(config, dict) or "model" not in config or "data" not in config:
        raise ConfigError(f"{path} has no 'model' and 'data' sections; it is not a config written by worldmodels.fit.")
    return config


def build_from_config(config: dict) -> tuple[Agent, Experience]:
    """The agent (not yet built) and the data module, from a resolved config, with the same parser
    signatures as ``worldmodels.fit``: class paths, init args and environment presets mean the same."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(Agent, "model", required=True)
    parser.add_class_arguments(Experience, "data")
    data = {**config["data"], "seed": config.get("seed_everything", 0)}  # fit links seed_everything to data.seed
    try:
        parsed = parser.parse_object({"model": config["model"], "data": data})
        objects = parser.instantiate(parsed)
    except ConfigError:
        raise
    except Exception as error:
        raise ConfigError(f"the run's config cannot be rebuilt ({error}); was it written by another version?") from None
    return objects.model, objects.data


@dataclass
class TrainedAgent:
    agent: Agent  # weights loaded, on the requested device
    data: Experience  # the run's environment config and spec (no replay)
    config: dict  # the run's resolved config.yaml
    counters: Counters | None  # env steps, frames... the agent was trained for, when the checkpoint has them


def load_agent(ckpt: Path, seed: int = 0, device: str = "cpu") -> TrainedAgent:
    """The trained agent of a checkpoint, rebuilt from its run's config. ``seed`` seeds the agent's own
    generators (evaluation epsilon) instead of the states the training run left in the checkpoint, so
    that an evaluation depends only on the weights and ``seed``."""
    ckpt = checkpoint_path(Path(ckpt))
    config = read_run_config(ckpt.resolve().parent.parent)
    checkpoint = read_checkpoint(ckpt)
    L.seed_everything(seed, verbose=False)
    agent, data = build_from_config(config)
    agent.build(data.spec)
    data.envs.close()
    agent.on_load_checkpoint({"state_dict": checkpoint["state_dict"]})  # one-sentence errors for mismatched networks
    agent.load_state_dict(checkpoint["state_dict"])
    saved = checkpoint.get(type(data).__qualname__, {}).get("counters")
    counters = Counters(**saved) if saved else None
    clock = RunClock(data.total_env_steps, data.warmup_steps)
    clock.counters = counters or Counters()
    agent.attach_loop(clock)  # schedules read the env steps trained for
    return TrainedAgent(agent.to(device), data, config, counters)


def evaluate(ckpt: Path, episodes: int = 10, seed: int = 0, max_steps: int | None = None,
             video: Path | None = None, device: str = "cpu") -> dict:
    """Returns of ``episodes`` games of the evaluation policy, as the JSON record ``main`` writes."""
    if episodes < 1:
        raise ConfigError(f"--episodes is {episodes}; play at least one game.")
    ckpt = checkpoint_path(Path(ckpt))
    trained = load_agent(ckpt, seed, device)
    env_config = trained.data.env_config.for_evaluation()
    played = run_episodes(trained.agent, env_config, episodes, seed=seed, max_steps=max_steps,
                          record_video=video is not None)
    if video is not None and played.video is not None:
        write_video(video, played.video)
    return evaluation_record(trained.agent, env_config, trained.config, trained.counters, played.scores, seed, max_steps,
                             ckpt, ckpt.resolve().parent.parent, played.cut_short, played.extras)


def write_video(path: Path, frames: np.ndarray, fps: int = 15) -> None:
    """The first game as the agent saw it, (T, 3, H, W) uint8 frames, as an mp4 (imageio comes with wandb[media])."""
    try:
        import imageio.v2 as imageio
    except ImportError:
        raise ConfigError("--video needs imageio and imageio-ffmpeg; pip install imageio imageio-ffmpeg.") from None
    imageio.mimwrite(path, frames.transpose(0, 2, 3, 1), fps=fps, macro_block_size=1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m worldmodels.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", type=Path, required=True,
                        help="checkpoint of a run, <run>/checkpoints/last.ckpt (a run directory means its last.ckpt)")
    parser.add_argument("--episodes", type=int, default=10, help="games to play (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the environment and the policy's randomness")
    parser.add_argument("--max-steps", type=int, default=None, help="cut each game after this many agent steps")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default <run>/eval-<ckpt name>.json)")
    parser.add_argument("--video", action="store_true", help="also write the first game as an mp4 next to the JSON")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    try:
        ckpt = checkpoint_path(args.ckpt)
        out = args.out or ckpt.resolve().parent.parent / f"eval-{ckpt.stem}.json"
        result = evaluate(ckpt, args.episodes, args.seed, args.max_steps,
                          out.with_suffix(".mp4") if args.video else None, args.device)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    hns = f", human-normalised {result['human_normalized']:.3f}" if result["human_normalized"] is not None else ""
    games = f"{args.episodes} game{'s' * (args.episodes != 1)}"
    if result["games_cut_short"]:
        games += (f" ({result['games_cut_short']} cut short at --max-steps {args.max_steps}: partial scores, "
                  "not comparable with published ones)")
    print(f"{result['agent']} on {result['task']} after {result['env_steps']} env steps: return "
          f"{result['mean']:.2f} ± {result['std']:.2f} over {games}{hns}; wrote {out}")
    return out


if __name__ == "__main__":
    main()
