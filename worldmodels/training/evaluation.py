"""Evaluation episodes with the agent's evaluation policy, and the callback that runs them."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

import lightning as L
import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from worldmodels.envs import EnvConfig, make_vector_env
from worldmodels.envs.observations import ObsKey, layout_of, map_obs
from worldmodels.training.distributed import gather_objects, rank_seed, share_of
from worldmodels.training.clock import LoopCallback
from worldmodels.training.guard import check_finite_first
from worldmodels.run_directory import latest_config
from worldmodels.analysis.scores import atari_100k_game, human_normalized
from worldmodels import run_files
from worldmodels.run_files import FINAL_EVALUATION


class Played(NamedTuple):
    scores: list[float]
    video: np.ndarray | None  # the first game's frames (T, 3, H, W) uint8, if asked and there is an image key
    cut_short: int  # games ``max_steps`` cut short (smoke runs; their scores are partial returns)
    extras: list[dict[str, float]]  # what each whole game reported beside its score (Crafter's achievements)


def run_episodes(agent, env_config: EnvConfig, episodes: int, seed: int, max_steps: int | None = None,
                 record_video: bool = False, progress: bool = False) -> Played:
    """Play ``episodes`` whole games (true rewards) with ``explore=False``. ``progress`` shows a bar
    over the games.

    A game ends when the environment reports it over (its episode statistics), so under
    ``terminal_on_life_loss`` a lost life ends only the agent's episode: its frame stack restarts
    and the game plays on, as in Dopamine's evaluation of its Atari 100k agents."""
    envs = make_vector_env(env_config, 1, seed, training=False)
    frame_of = video_frame(layout_of(envs.single_observation_space, env_config.resolved().frame_stack))
    record_video = record_video and frame_of is not None
    scores, video, cut_short, extras = [], [], 0, []
    step = envs.reset(seed=seed)
    with agent.acting():
        for episode in tqdm(range(episodes), desc="evaluation games", unit="game", disable=not progress,
                            dynamic_ncols=True):
            state, score, steps = agent.initial_state(1), 0.0, 0
            while True:
                if record_video and episode == 0:
                    video.append(frame_of(step.obs))
                obs = map_obs(lambda x: torch.as_tensor(x, device=agent.device), step.obs)
                action, state = agent.act(obs, state, torch.as_tensor(step.first, device=agent.device), explore=False)
                step = envs.step(action.cpu().numpy())
                if step.first[0]:  # a lost life restarted the agent's episode; no game time passed
                    continue
                score += float(step.reward[0])
                steps += 1
                if step.finished_games or (max_steps and steps >= max_steps):
                    break
            scores.append(score)
            if step.game_extras:
                extras.append(step.game_extras[0])
            if not step.finished_games:  # cut short: start the next game afresh
                cut_short += 1
                step = envs.reset(seed=seed + episode + 1)
            else:
                step = envs.step(np.zeros_like(action.cpu().numpy()))  # next-step autoreset: the new game's first frame
    envs.close()
    return Played(scores, np.stack(video) if video else None, cut_short, extras)


def video_frame(layout: tuple[ObsKey, ...]):
    """What a video shows of an observation: the newest frame of its first image key, as RGB (3, H, W);
    None when it has no image key (a state-only environment has no video)."""
    images = [key for key in layout if key.kind == "image"]
    if not images:
        return None
    key, channels = images[0], images[0].frame_shape[0]

    def frame(obs) -> np.ndarray:
        newest = (obs[key.name] if isinstance(obs, dict) else obs)[0, -channels:]
        return np.repeat(newest, 3, 0) if channels == 1 else newest[:3]

    return frame


def evaluation_record(agent, env_config: EnvConfig, run_config: dict, counters, returns: list[float], eval_seed: int,
                      max_steps: int | None, checkpoint: Path | None, run_dir: Path | None, cut_short: int = 0,
                      extras: list[dict[str, float]] = ()) -> dict:
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
        **episode_extras_record(env_config, extras),
        "env": asdict(env_config),
    }


def episode_extras_record(env_config: EnvConfig, extras: list[dict[str, float]]) -> dict:
    """The mean over whole games of each value they reported beside their score (``extras_mean``: for
    Crafter, each achievement's success rate), and the suite's own score of them where it has one."""
    if not extras:
        return {}
    names = sorted({name for game in extras for name in game})
    means = {name: float(np.mean([game.get(name, 0.0) for game in extras])) for name in names}
    record = {"extras_mean": means}
    if env_config.suite == "crafter":
        from worldmodels.envs.crafter_suite import crafter_score

        record["crafter_score"] = crafter_score([100.0 * means[name] for name in names if name.startswith("achievement_")])
    return record


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
        self._last: tuple | None = None  # (scores, seed, games cut short, extras) of the latest evaluation

    def _evaluate(self, trainer: L.Trainer, agent, final: bool = False) -> None:
        data = self.loop  # the loop's environment settings, seed and rank
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
        scores, frames, cut_short, extras = self._play_shared(agent, data, episodes, seed,
                                                              progress=final and data.progress_bar)
        self._last = (scores, seed, cut_short, extras)
        if final:
            self._write_final(trainer, agent, scores, seed, cut_short, extras)
        metrics = {"eval/return_mean": float(np.mean(scores)), "eval/return_std": float(np.std(scores)),
                   "env_steps": self.clock.counters.env_steps, "frames": self.clock.counters.frames,
                   "updates": self.clock.counters.updates}
        extra = episode_extras_record(data.env_config, extras)
        metrics.update({f"eval/{name}": value for name, value in extra.get("extras_mean", {}).items()})
        if "crafter_score" in extra:
            metrics["eval/crafter_score"] = extra["crafter_score"]
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
            if mine else Played([], None, 0, [])
        if world == 1:
            return played
        parts = gather_objects((played.scores, played.cut_short, played.extras))
        return Played([score for scores, _, _ in parts for score in scores], played.video, sum(cut for _, cut, _ in parts),
                      [game for _, _, games in parts for game in games])

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

    def _write_final(self, trainer: L.Trainer, agent, scores: list[float], seed: int, cut_short: int,
                     extras: list[dict[str, float]]) -> None:
        if trainer.global_rank != 0:  # the scores are every process's; one writes them
            return
        run_dir = Path(trainer.default_root_dir)
        config_file = latest_config(run_dir)
        run_config = yaml.safe_load(config_file.read_text()) if config_file.is_file() else {}
        run_config.setdefault("model", {}).setdefault("class_path", f"{type(agent).__module__}.{type(agent).__name__}")
        data = self.loop  # the loop's environment settings
        record = evaluation_record(agent, data.env_config.for_evaluation(), run_config, self.clock.counters, scores, seed,
                                   self.max_steps, run_files.last_checkpoint(run_dir), run_dir, cut_short, extras)
        (run_dir / FINAL_EVALUATION).write_text(json.dumps(record, indent=2) + "\n")

    def state_dict(self) -> dict:
        return {"done_at": self._done_at}

    def load_state_dict(self, state: dict) -> None:
        self._done_at = state["done_at"]
