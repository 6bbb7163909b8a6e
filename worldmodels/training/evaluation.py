"""Evaluation episodes with the agent's evaluation policy, and the callback that runs them."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch

from worldmodels.envs import EnvConfig, make_vector_env


def run_episodes(agent, env_config: EnvConfig, episodes: int, seed: int, max_steps: int | None = None,
                 record_video: bool = False) -> tuple[list[float], np.ndarray | None]:
    """Play ``episodes`` whole games (true rewards, no life-loss terminals) with ``explore=False``.
    Returns the scores and, if asked, the first episode's frames (T, 3, H, W) uint8. ``max_steps``
    cuts an episode short (smoke runs); its score is then the partial return."""
    envs = make_vector_env(env_config, 1, seed, training=False)
    channels = env_config.frame_channels
    scores, video = [], []
    step = envs.reset(seed=seed)
    with agent.acting():
        for episode in range(episodes):
            state, score, steps, first = agent.initial_state(1), 0.0, 0, step.first
            while True:
                if record_video and episode == 0:
                    frame = step.obs[0, -channels:]
                    video.append(np.repeat(frame, 3, 0) if channels == 1 else frame)
                obs = torch.as_tensor(step.obs, device=agent.device)
                action, state = agent.act(obs, state, torch.as_tensor(first, device=agent.device), explore=False)
                step = envs.step(action.cpu().numpy())
                score += float(step.reward[0])
                steps, first = steps + 1, step.first
                if step.terminated[0] or step.truncated[0] or (max_steps and steps >= max_steps):
                    break
            scores.append(score)
            if not (step.terminated[0] or step.truncated[0]):  # cut short: start the next game afresh
                step = envs.reset(seed=seed + episode + 1)
            else:
                step = envs.step(np.zeros_like(action.cpu().numpy()))  # next-step autoreset: the new game's first frame
    envs.close()
    return scores, (np.stack(video) if video else None)


class Evaluation(L.Callback):
    """Runs evaluation episodes every ``every_env_steps`` and when training ends; logs
    ``eval/return_mean``, ``eval/return_std`` and, with ``video``, the first episode as a W&B video.

    Args:
        every_env_steps: evaluate each time this many more env steps have been taken (0: only at the end).
        episodes: games per evaluation.
        max_steps: cut each evaluation game after this many agent steps (``None``: play it out).
        video: log the first game of each evaluation as a video.
        fps: frames per second of the video.
    """

    def __init__(self, every_env_steps: int = 10_000, episodes: int = 10, max_steps: int | None = None,
                 video: bool = True, fps: int = 15):
        self.every_env_steps, self.episodes, self.max_steps = every_env_steps, episodes, max_steps
        self.video, self.fps = video, fps
        self._done_at = -1

    def _evaluate(self, trainer: L.Trainer, agent) -> None:
        data = trainer.datamodule
        steps = data.counters.env_steps
        if steps == self._done_at or self.episodes < 1:
            return
        self._done_at = steps
        scores, frames = run_episodes(agent, data.env_config, self.episodes, seed=data.seed + 10_000 + steps,
                                      max_steps=self.max_steps, record_video=self.video)
        metrics = {"eval/return_mean": float(np.mean(scores)), "eval/return_std": float(np.std(scores)),
                   "env_steps": steps, "frames": data.counters.frames}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
            if frames is not None and hasattr(logger, "log_video"):
                logger.log_video("eval/video", [frames], step=trainer.global_step, fps=[self.fps], format=["mp4"])
        data.last_eval_return = metrics["eval/return_mean"]

    def on_train_batch_end(self, trainer, agent, outputs, batch, batch_idx) -> None:
        steps = trainer.datamodule.counters.env_steps
        if self.every_env_steps and steps // self.every_env_steps > max(self._done_at, 0) // self.every_env_steps:
            self._evaluate(trainer, agent)

    def on_train_end(self, trainer, agent) -> None:
        self._evaluate(trainer, agent)

    def state_dict(self) -> dict:
        return {"done_at": self._done_at}

    def load_state_dict(self, state: dict) -> None:
        self._done_at = state["done_at"]
