"""Evaluation episodes with the agent's evaluation policy, and the callback that runs them."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import lightning as L
import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from worldmodels.envs import EnvConfig, make_vector_env
from worldmodels.training.distributed import gather_objects, rank_seed, share_of
from worldmodels.training.clock import LoopCallback
from worldmodels.training.guard import check_finite_first
from worldmodels.run_directory import latest_config
from worldmodels.analysis.scores import atari_100k_game, human_normalized
from worldmodels import run_files
from worldmodels.run_files import FINAL_EVALUATION


def run_episodes(agent, env_config: EnvConfig, episodes: int, seed: int, max_steps: int | None = None,
                 record_video: bool = False, progress: bool = False) -> tuple[list[float], np.ndarray | None, int]:
    """Play ``episodes`` whole games (true rewards) with ``explore=False``. Returns the scores, if
    asked the first episode's frames (T, 3, H, W) uint8, and how many games ``max_steps`` cut short
    (smoke runs; their scores are partial returns). ``progress`` shows a bar over the games.

    A game ends when the environment reports it over (its episode statistics), so under
    ``terminal_on_life_loss`` a lost life ends only the agent's episode: its frame stack restarts
    and the game plays on, as in Dopamine's evaluation of its Atari 100k agents."""
    envs = make_vector_env(env_config, 1, seed, training=False)
    channels = env_config.frame_channels
    scores, video, cut_short = [], [], 0
    step = envs.reset(seed=seed)
    with agent.acting():
        for episode in tqdm(range(episodes), desc="evaluation games", unit="game", disable=not progress,
                            dynamic_ncols=True):
            state, score, steps = agent.initial_state(1), 0.0, 0
            while True:
                if record_video and episode == 0:
                    frame = step.obs[0, -channels:]
                    video.append(np.repeat(frame, 3, 0) if channels == 1 else frame)
                obs = torch.as_tensor(step.obs, device=agent.device)
                action, state = agent.act(obs, state, torch.as_tensor(step.first, device=agent.device), explore=False)
                step = envs.step(action.cpu().numpy())
                if step.first[0]:  # a lost life restarted the agent's episode; no game time passed
                    continue
                score += float(step.reward[0])
                steps += 1
                if step.finished_games or (max_steps and steps >= max_steps):
                    break
            scores.append(score)
            if not step.finished_games:  # cut short: start the next game afresh
                cut_short += 1
                step = envs.reset(seed=seed + episode + 1)
            else:
                step = envs.step(np.zeros_like(action.cpu().numpy()))  # next-step autoreset: the new game's first frame
    envs.close()
    return scores, (np.stack(video) if video else None), cut_short


def evaluation_record(agent, env_config: EnvConfig, run_config: dict, counters, returns: list[float], eval_seed: int,
                      max_steps: int | None, checkpoint: Path | None, run_dir: Path | None, cut_short: int = 0) -> dict:
    """The JSON record of an evaluation, as ``python -m worldmodels.evaluate`` and a run's final
    evaluation (``<run>/eval-final.json``) write it. ``env_config``: the evaluation environment."""
    game = atari_100k_game(env_config.task) if env_config.suite == "atari" else None
    mean = float(np.mean(returns))
    return {
        "agent": type(agent).__name__, "class_path": run_config["model"]["class_path"],
        "name": run_config.get("name"), "seed": run_config.get("seed_everything"),
        "suite": env_config.suite, "task": env_config.task,
        "checkpoint": str(checkpoint.resolve()) if checkpoint else None,
        "run_dir": str(run_dir.resolve()) if run_dir else None,
        "env_steps": counters.env_steps if counters else None, "frames": counters.frames if counters else None,
        "updates": counters.updates if counters else None,
        "eval_seed": eval_seed, "episodes": len(returns), "max_steps": max_steps, "games_cut_short": cut_short,
        "returns": [float(r) for r in returns], "mean": mean, "std": float(np.std(returns)),
        "human_normalized": human_normalized(game, mean) if game else None,
        "env": asdict(env_config),
    }


class Evaluation(LoopCallback):
    """Runs evaluation episodes every ``every_env_steps`` and when training ends; logs
    ``eval/return_mean``, ``eval/return_std`` and, with ``video``, the first episode as a W&B video.
    The evaluation at the end also goes to ``<run>/eval-final.json``, in the format of
    ``python -m worldmodels.evaluate``, so runs can be compared without evaluating them again.

    Args:
        every_env_steps: evaluate each time this many more env steps have been taken (updates in an
            offline run; 0: only at the end).
        episodes: games per evaluation during training.
        final_episodes: games of the evaluation at the end (``None``: ``episodes``). The Atari 100k
            protocol plays 100 (Dopamine's MaxEpisodeEvalRunner).
        max_steps: cut each evaluation game after this many agent steps (``None``: play it out; Atari
            episodes end at the env's 27k-step limit anyway).
        video: log the first game of each evaluation as a video.
        fps: frames per second of the video.
    """

    def __init__(self, every_env_steps: int = 10_000, episodes: int = 10, final_episodes: int | None = None,
                 max_steps: int | None = None, video: bool = True, fps: int = 15):
        self.every_env_steps, self.episodes, self.max_steps = every_env_steps, episodes, max_steps
        self.final_episodes = episodes if final_episodes is None else final_episodes
        self.video, self.fps = video, fps
        self._done_at = -1
        self._last: tuple[list[float], int, int] | None = None  # (scores, seed, games cut short) of the latest evaluation

    def _evaluate(self, trainer: L.Trainer, agent, final: bool = False) -> None:
        data = trainer.datamodule  # the loop's environment settings, seed and rank
        steps = self.clock.progress
        episodes = self.final_episodes if final else self.episodes
        if episodes < 1:
            return
        if steps == self._done_at:  # evaluated at this very step already
            if not final:
                return
            if self._last is not None and len(self._last[0]) == episodes:
                self._write_final(trainer, agent, *self._last)  # those games are the final evaluation
                return
        self._done_at = steps
        seed = data.seed + 10_000 + steps
        scores, frames, cut_short = self._play_shared(agent, data, episodes, seed, progress=final and data.progress_bar)
        self._last = (scores, seed, cut_short)
        if final:
            self._write_final(trainer, agent, scores, seed, cut_short)
        metrics = {"eval/return_mean": float(np.mean(scores)), "eval/return_std": float(np.std(scores)),
                   "env_steps": self.clock.counters.env_steps, "frames": self.clock.counters.frames,
                   "updates": self.clock.counters.updates}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
            if frames is not None and hasattr(logger, "log_video"):
                logger.log_video("eval/video", [frames], step=trainer.global_step, fps=[self.fps], format=["mp4"])
        self.clock.last_eval_return = metrics["eval/return_mean"]

    def _play_shared(self, agent, data, episodes: int, seed: int, progress: bool):
        """The games, split over the processes of a several-device run (each plays its share from its own
        seed) and gathered: (scores, rank 0's video, games cut short). One process plays them all."""
        rank, world = data.rank, data.world
        mine = share_of(episodes, rank, world)
        played = run_episodes(agent, data.env_config, mine, seed=rank_seed(seed, rank), max_steps=self.max_steps,
                              record_video=self.video and rank == 0, progress=progress and rank == 0) \
            if mine else ([], None, 0)
        if world == 1:
            return played
        parts = gather_objects((played[0], played[2]))
        return [score for scores, _ in parts for score in scores], played[1], sum(cut for _, cut in parts)

    def on_train_batch_end(self, trainer, agent, outputs, batch, batch_idx) -> None:
        steps = self.clock.progress
        if self.every_env_steps and steps // self.every_env_steps > max(self._done_at, 0) // self.every_env_steps:
            check_finite_first(trainer, agent)  # a policy of NaN weights is not played
            self._evaluate(trainer, agent)

    def on_train_end(self, trainer, agent) -> None:
        done = Path(trainer.default_root_dir) / FINAL_EVALUATION
        if done.is_file():  # a finished run resumed again: its final evaluation stands
            record = json.loads(done.read_text())
            counters = self.clock.counters
            if (record.get("env_steps"), record.get("updates", counters.updates), record.get("episodes")) == (
                    counters.env_steps, counters.updates, self.final_episodes):
                return
        self._evaluate(trainer, agent, final=True)

    def _write_final(self, trainer: L.Trainer, agent, scores: list[float], seed: int, cut_short: int) -> None:
        if trainer.global_rank != 0:  # the scores are every process's; one writes them
            return
        run_dir = Path(trainer.default_root_dir)
        config_file = latest_config(run_dir)
        run_config = yaml.safe_load(config_file.read_text()) if config_file.is_file() else {}
        run_config.setdefault("model", {}).setdefault("class_path", f"{type(agent).__module__}.{type(agent).__name__}")
        data = trainer.datamodule  # the loop's environment settings
        record = evaluation_record(agent, data.env_config.for_evaluation(), run_config, self.clock.counters, scores, seed,
                                   self.max_steps, run_files.last_checkpoint(run_dir), run_dir, cut_short)
        (run_dir / FINAL_EVALUATION).write_text(json.dumps(record, indent=2) + "\n")

    def state_dict(self) -> dict:
        return {"done_at": self._done_at}

    def load_state_dict(self, state: dict) -> None:
        self._done_at = state["done_at"]
