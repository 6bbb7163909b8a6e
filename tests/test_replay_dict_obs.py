"""The replay with dict and vector observations, against hand-computed values.

As in test_replay.py, every value says where it came from: environment e's observation at step t has
its image pixels equal to ``t + 100 * e`` and its vector entries equal to ``t + 100 * e + 0.5`` (a
value no uint8 image could hold), so a sampled stack says exactly which rows it came from.
"""

import gymnasium as gym
import numpy as np
import pytest
import torch

from worldmodels.envs.observations import ObsKey
from worldmodels.envs.vector import VectorEnv
from worldmodels.errors import ConfigError
from worldmodels.replay import Replay, SequenceView, TransitionView

STACK = 3
LAYOUT = (ObsKey("pixels", "image", (STACK * 1, 2, 2), STACK), ObsKey("state", "vector", (STACK * 2,), STACK))
VECTOR_ONLY = (ObsKey("obs", "vector", (STACK * 2,), STACK),)


def observation(layout, t: int, envs: int):
    """The whole stacks an env would return at step t (only their newest frame is stored)."""
    def key_value(key, e):
        value = t + 100 * e + (0.5 if key.kind == "vector" else 0)
        return np.full(key.shape, value, key.dtype)

    arrays = {key.name: np.stack([key_value(key, e) for e in range(envs)]) for key in layout}
    return arrays if len(layout) > 1 else arrays[layout[0].name]


def fill(replay: Replay, layout, steps: int, envs: int, first=(), terminal=()):
    for t in range(steps):
        flags = [np.array([(t, e) in s for e in range(envs)]) for s in (first, terminal)]
        replay.add(observation(layout, t, envs), np.full(envs, t), np.ones(envs, np.float32), flags[1],
                   np.zeros(envs, bool), flags[0] | (t == 0))


def by_start(batch, key):
    """The sampled transitions keyed by the step of s_t's newest frame."""
    newest = batch["obs"][key][:, -1] if key == "state" else batch["obs"]["pixels"][:, -1, 0, 0]
    return {int(v): i for i, v in enumerate(newest.tolist())}


def test_dict_stacks_are_rebuilt_per_key_from_single_frames_with_zero_padding():
    replay = Replay(1000, stack_padding="zero", layout=LAYOUT)
    fill(replay, LAYOUT, 20, 1, first={(6, 0)}, terminal={(5, 0)})
    batch = TransitionView(batch_size=256, n_step=1, gamma=0.9).sample(replay)
    assert batch["obs"]["pixels"].dtype == torch.uint8 and batch["obs"]["state"].dtype == torch.float32
    assert batch["obs"]["pixels"].shape[1:] == (3, 2, 2) and batch["obs"]["state"].shape[1:] == (6,)
    rows = by_start(batch, "pixels")
    i = rows[7]  # the episode began at 6: one zero frame, then 6 and 7; each vector frame is 2 values
    assert batch["obs"]["pixels"][i, :, 0, 0].tolist() == [0, 6, 7]
    assert batch["obs"]["state"][i].tolist() == [0, 0, 6.5, 6.5, 7.5, 7.5]
    assert batch["next_obs"]["state"][i].tolist() == [6.5, 6.5, 7.5, 7.5, 8.5, 8.5]
    j = rows[10]
    assert batch["obs"]["pixels"][j, :, 0, 0].tolist() == [8, 9, 10]
    assert batch["obs"]["state"][j].tolist() == [8.5, 8.5, 9.5, 9.5, 10.5, 10.5]


def test_vector_observations_are_stored_as_float32_not_as_images():
    replay = Replay(1000, layout=VECTOR_ONLY)
    fill(replay, VECTOR_ONLY, 10, 1)
    replay.flush()
    frames = replay.frames(torch.tensor([4]), torch.tensor([0]))
    assert frames.dtype == torch.float32 and frames.tolist() == [[4.5, 4.5]]
    batch = TransitionView(batch_size=64, n_step=2, gamma=0.5).sample(replay)
    newest = batch["obs"][:, -1]
    assert torch.equal(batch["next_obs"][:, -1], newest + 2)
    assert torch.equal(batch["obs"][:, 0], torch.clamp(newest - 2, min=0.5))  # repeat padding at the start


def test_sequences_of_dict_observations_stay_in_one_column():
    replay = Replay(1000, num_envs=2, layout=LAYOUT)
    fill(replay, LAYOUT, 30, 2)
    batch = SequenceView(batch_size=64, seq_len=5).sample(replay)
    pixels, state = batch["obs"]["pixels"], batch["obs"]["state"]
    assert pixels.shape == (64, 5, 1, 2, 2) and state.shape == (64, 5, 2)
    assert torch.equal(state[..., 0], pixels[:, :, 0, 0, 0].float() + 0.5)
    assert torch.equal(pixels[:, 1:, 0, 0, 0].long() - pixels[:, :-1, 0, 0, 0].long(), torch.ones(64, 4, dtype=torch.long))


def test_dict_replay_persists_and_reloads_every_key(tmp_path):
    replay = Replay(40, num_envs=2, layout=LAYOUT, chunk=7)
    fill(replay, LAYOUT, 15, 2)
    replay.persist(tmp_path)
    fill_more = observation(LAYOUT, 15, 2)
    replay.add(fill_more, np.zeros(2), np.ones(2, np.float32), np.zeros(2, bool), np.zeros(2, bool), np.zeros(2, bool))
    replay.persist(tmp_path)
    restored = Replay(40, num_envs=2, layout=LAYOUT)
    restored.load_state_dict(replay.state_dict(), tmp_path)
    t, env = torch.arange(16).repeat(2), torch.arange(2).repeat_interleave(16)
    replay.flush()
    for name in ("pixels", "state"):
        assert torch.equal(restored.frames(t, env)[name], replay.frames(t, env)[name])
    assert restored.state_dict()["layout"] == replay.state_dict()["layout"]


def test_a_replay_file_of_another_layout_is_refused_in_one_sentence(tmp_path):
    replay = Replay(40, layout=LAYOUT)
    fill(replay, LAYOUT, 10, 1)
    replay.persist(tmp_path)
    other = (ObsKey("pixels", "image", (STACK * 1, 2, 2), STACK), ObsKey("state", "vector", (STACK * 3,), STACK))
    with pytest.raises(ConfigError, match="belongs to another run"):
        Replay(40, layout=other).load_state_dict(replay.state_dict(), tmp_path)
    with pytest.raises(ConfigError, match="belongs to another run"):
        Replay(40, frame_stack=STACK, frame_channels=1).load_state_dict(replay.state_dict(), tmp_path)


class DictEnv(gym.Env):
    """Four steps per game; reports an achievement at its end, as Crafter does."""

    observation_space = gym.spaces.Dict({"pixels": gym.spaces.Box(0, 255, (1, 2, 2), np.uint8),
                                         "state": gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)})
    action_space = gym.spaces.MultiDiscrete([2, 3])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def _obs(self):
        return {"pixels": np.full((1, 2, 2), self.t, np.uint8), "state": np.full(2, self.t + 0.5, np.float32)}

    def step(self, action):
        self.t += 1
        done = self.t == 4
        info = {"episode": {"r": 1.0, "l": 4}, "episode_extras": {"achievement_wake_up": 1.0}} if done else {}
        return self._obs(), 0.25, done, False, info


def test_vector_env_steps_dict_observations_and_reports_what_games_end_with():
    envs = VectorEnv([DictEnv, DictEnv])
    step = envs.reset(seed=0)
    assert set(step.obs) == {"pixels", "state"} and step.obs["state"].dtype == np.float32
    actions = envs.random_actions(np.random.default_rng(0))
    assert actions.shape == (2, 2) and actions.dtype == np.int64
    assert (actions[:, 0] < 2).all() and (actions[:, 1] < 3).all()
    for _ in range(4):
        step = envs.step(actions)
    assert step.obs["state"].tolist() == [[4.5, 4.5], [4.5, 4.5]] and step.obs["pixels"][:, 0, 0, 0].tolist() == [4, 4]
    assert [game[0] for game in step.finished_games] == [0, 1]
    assert step.game_extras == {0: {"achievement_wake_up": 1.0}, 1: {"achievement_wake_up": 1.0}}
