"""Several environments stepped together, in lock step, with next-step autoreset.

gymnasium's SyncVectorEnv does the same but merges every info dict key by key on every step, which
cost about 13% of Atari's raw speed here; this loop keeps only what the pipeline uses: the frames,
rewards, the terminated/truncated/first flags, and the statistics of games that just ended.

``SubprocessVectorEnv`` steps each environment in a process of its own: the environments step at the
same time, and ``step_async`` returns at once, so the caller can train while they step (gymnasium's
AsyncVectorEnv would do the stepping too, with its info merging and its own autoreset rules).
"""

from __future__ import annotations

import multiprocessing
import signal
from dataclasses import dataclass, field
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from worldmodels.envs.observations import buffer_for, map_obs, put_row


@dataclass
class Step:
    """One vector step. Row ``i`` is environment ``i``'s newest frame and how it was reached: ``first``
    marks a reset frame (its reward is 0 and the action given for it was ignored)."""

    obs: Any  # (N, ...) per key: one array, or a dict of them (``worldmodels.envs.observations``)
    reward: np.ndarray  # (N,) float32
    terminated: np.ndarray  # (N,) bool
    truncated: np.ndarray  # (N,) bool
    first: np.ndarray  # (N,) bool
    finished_games: list[tuple[int, float, int]]  # (env index, true score, agent steps) of games that ended
    game_extras: dict[int, dict[str, float]] = field(default_factory=dict)  # env index -> what the env reported
    # at a game's end beside its score (``info["episode_extras"]``, e.g. Crafter's achievements)


class VectorEnv:
    asynchronous = False  # step() does the work; SubprocessVectorEnv also steps in two calls (step_async, step_wait)

    def __init__(self, env_fns: list[Callable[[], gym.Env]]):
        self.envs = [fn() for fn in env_fns]
        self.num_envs = len(self.envs)
        self.single_observation_space = self.envs[0].observation_space
        self.single_action_space = self.envs[0].action_space
        self._obs = buffer_for(self.single_observation_space, self.num_envs)
        self._needs_reset = np.ones(self.num_envs, bool)

    def reset(self, seed: int | None = None) -> Step:
        for i, env in enumerate(self.envs):
            put_row(self._obs, i, env.reset(seed=None if seed is None else seed + i)[0])
        self._needs_reset[:] = False
        n = self.num_envs
        return Step(map_obs(np.copy, self._obs), np.zeros(n, np.float32), np.zeros(n, bool), np.zeros(n, bool),
                    np.ones(n, bool), [])

    def step(self, actions) -> Step:
        n = self.num_envs
        reward = np.zeros(n, np.float32)
        terminated, truncated = np.zeros(n, bool), np.zeros(n, bool)
        first = self._needs_reset.copy()
        finished, extras = [], {}
        for i, env in enumerate(self.envs):
            if first[i]:
                put_row(self._obs, i, env.reset()[0])
                self._needs_reset[i] = False
                continue
            obs, reward[i], terminated[i], truncated[i], info = env.step(actions[i])
            put_row(self._obs, i, obs)
            if terminated[i] or truncated[i]:
                self._needs_reset[i] = True
            if "episode" in info:
                finished.append((i, float(info["episode"]["r"]), int(info["episode"]["l"])))
            if "episode_extras" in info:
                extras[i] = dict(info["episode_extras"])
        return Step(map_obs(np.copy, self._obs), reward, terminated, truncated, first, finished, extras)

    def step_async(self, actions) -> None:
        """``step`` in two calls, as ``SubprocessVectorEnv`` steps: here the work is done in ``step_wait``
        (the loop overlaps it with updates running on a GPU meanwhile)."""
        self._pending = actions

    def step_wait(self) -> Step:
        actions, self._pending = self._pending, None
        return self.step(actions)

    @property
    def stepping(self) -> np.ndarray:
        """Which environments the next (or pending) step advances: not those that restart an episode."""
        return ~self._needs_reset

    def random_actions(self, rng: np.random.Generator) -> np.ndarray:
        space = self.single_action_space
        if isinstance(space, gym.spaces.Discrete):  # rng.integers costs ~20 us a call, a third of the loop's overhead
            return (rng.random(self.num_envs) * space.n).astype(np.int64)
        if isinstance(space, gym.spaces.MultiDiscrete):
            return (rng.random((self.num_envs, len(space.nvec))) * space.nvec).astype(np.int64)
        return rng.uniform(space.low, space.high, (self.num_envs, *space.shape)).astype(np.float32)

    def close(self):
        for env in self.envs:
            env.close()


class SubprocessVectorEnv(VectorEnv):
    """``VectorEnv`` with each environment in its own (spawned) process. ``env_fns`` must pickle
    (``functools.partial`` of a module-level function, not a lambda). Results equal ``VectorEnv``'s for
    the same environments, seeds and actions."""

    asynchronous = True

    def __init__(self, env_fns: list[Callable[[], gym.Env]]):
        # spawn, not fork: the parent holds torch's threads (and maybe CUDA), which a fork does not survive.
        context = multiprocessing.get_context("spawn")
        self.pipes, self.processes = [], []
        for fn in env_fns:
            parent, child = context.Pipe()
            process = context.Process(target=_serve_environment, args=(child, fn), daemon=True)
            process.start()
            child.close()
            self.pipes.append(parent)
            self.processes.append(process)
        self.num_envs = len(self.pipes)
        self.pipes[0].send(("spaces", None))
        self.single_observation_space, self.single_action_space = self._receive(self.pipes[0])
        self._obs = buffer_for(self.single_observation_space, self.num_envs)
        self._needs_reset = np.ones(self.num_envs, bool)
        self._first: np.ndarray | None = None

    @staticmethod
    def _receive(pipe):
        reply = pipe.recv()
        if isinstance(reply, _Failure):
            raise reply.error
        return reply

    def reset(self, seed: int | None = None) -> Step:
        for i, pipe in enumerate(self.pipes):
            pipe.send(("reset", None if seed is None else seed + i))
        for i, pipe in enumerate(self.pipes):
            put_row(self._obs, i, self._receive(pipe))
        self._needs_reset[:] = False
        n = self.num_envs
        return Step(map_obs(np.copy, self._obs), np.zeros(n, np.float32), np.zeros(n, bool), np.zeros(n, bool),
                    np.ones(n, bool), [])

    def step_async(self, actions) -> None:
        self._first = self._needs_reset.copy()
        for i, pipe in enumerate(self.pipes):
            pipe.send(("reset", None) if self._first[i] else ("step", actions[i]))

    def step_wait(self) -> Step:
        n, first = self.num_envs, self._first
        reward = np.zeros(n, np.float32)
        terminated, truncated = np.zeros(n, bool), np.zeros(n, bool)
        finished, extras = [], {}
        for i, pipe in enumerate(self.pipes):
            if first[i]:
                put_row(self._obs, i, self._receive(pipe))
                self._needs_reset[i] = False
                continue
            obs, reward[i], terminated[i], truncated[i], episode, extra = self._receive(pipe)
            put_row(self._obs, i, obs)
            self._needs_reset[i] = terminated[i] or truncated[i]
            if episode is not None:
                finished.append((i, *episode))
            if extra is not None:
                extras[i] = extra
        self._first = None
        return Step(map_obs(np.copy, self._obs), reward, terminated, truncated, first, finished, extras)

    def step(self, actions) -> Step:
        self.step_async(actions)
        return self.step_wait()

    @property
    def stepping(self) -> np.ndarray:
        return ~(self._first if self._first is not None else self._needs_reset)

    def close(self):
        for pipe in self.pipes:
            try:
                pipe.send(("close", None))
            except (BrokenPipeError, OSError):
                pass
        for process in self.processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()


@dataclass
class _Failure:
    error: BaseException


def _serve_environment(pipe, make_env: Callable[[], gym.Env]) -> None:
    """One environment's process: make it, then answer the parent's commands until ``close`` (or
    until the parent is gone). Ctrl-C is the parent's to handle: it closes its environments."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        env = make_env()
    except BaseException as error:  # e.g. a missing ROM: the parent raises it at its first request
        env, failure = None, _Failure(error)
    while True:
        try:
            command, data = pipe.recv()
        except EOFError:  # the parent ended without closing us
            return
        if env is None:
            pipe.send(failure)
            if command == "close":
                return
            continue
        if command == "step":
            obs, reward, terminated, truncated, info = env.step(data)
            episode, extras = info.get("episode"), info.get("episode_extras")
            pipe.send((obs, reward, terminated, truncated,
                       None if episode is None else (float(episode["r"]), int(episode["l"])),
                       None if extras is None else dict(extras)))
        elif command == "reset":
            pipe.send(env.reset(seed=data)[0])
        elif command == "spaces":
            pipe.send((env.observation_space, env.action_space))
        elif command == "close":
            env.close()
            pipe.close()
            return
