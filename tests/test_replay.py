"""Replay storage and its two views, against hand-computed values.

Frames carry their own identity: environment e's frame at step t has every pixel equal to
``t + 100 * e``, so a sampled stack or sequence says exactly which rows it came from.
"""

import numpy as np
import pytest
import torch

from worldmodels.errors import ConfigError
from worldmodels.replay import NotEnoughData, Replay, SequenceView, TransitionView


def fill(replay: Replay, steps: int, envs: int, first=(), terminal=(), truncated=(), reward=None, start: int = 0):
    """Write ``steps`` vector steps (times ``start``...). first/terminal/truncated: sets of (t, env)."""
    for t in range(start, start + steps):
        obs = np.stack([np.full((replay.frame_stack * replay.frame_channels, 2, 2), t + 100 * e, np.uint8)
                        for e in range(envs)])
        rew = np.array([reward(t, e) if reward else 1.0 for e in range(envs)], np.float32)
        flags = [np.array([(t, e) in s for e in range(envs)]) for s in (first, terminal, truncated)]
        replay.add(obs, np.full(envs, t), rew, flags[1], flags[2], flags[0] | (t == 0))


def sample_all(view, replay, times: int = 20):
    """Many samples keyed by the pixel of the newest frame of obs (a unique id of the start row)."""
    out = {}
    for _ in range(times):
        batch = view.sample(replay)
        for i in range(len(batch["reward"])):
            out[int(batch["obs"][i, -1, 0, 0])] = {k: v[i] for k, v in batch.items()}
    return out


def test_n_step_return_stops_at_terminal_and_does_not_bootstrap():
    replay = Replay(1000, frame_stack=1, frame_channels=1)
    # Episode 0..4 ends terminal at t=4; episode 5..19 runs on. Reward at row t is t.
    fill(replay, 20, 1, first={(5, 0)}, terminal={(4, 0)}, reward=lambda t, e: float(t))
    view = TransitionView(batch_size=64, n_step=3, gamma=0.5)
    got = sample_all(view, replay)
    # From t=2: rows 3 and 4 (terminal) -> m=2, R = 3 + 0.5*4 = 5, discount 0, next obs is frame 4.
    assert got[2]["n"] == 2 and got[2]["reward"] == pytest.approx(5.0) and got[2]["discount"] == 0.0
    assert got[2]["next_obs"][0, 0, 0] == 4
    # From t=3: row 4 only.
    assert got[3]["n"] == 1 and got[3]["reward"] == pytest.approx(4.0) and got[3]["discount"] == 0.0
    # Full 3-step return inside an episode: t=6 -> 7 + 0.5*8 + 0.25*9 = 13.25, discount 0.125.
    assert got[6]["n"] == 3 and got[6]["reward"] == pytest.approx(13.25) and got[6]["discount"] == pytest.approx(0.125)
    assert got[6]["next_obs"][0, 0, 0] == 9
    # The action of a transition is the one taken at t (stored on row t+1).
    assert got[6]["action"] == 7
    # An episode's final row is never a start.
    assert 4 not in got


def test_n_step_return_at_truncation_bootstraps_from_the_final_frame():
    replay = Replay(1000, frame_stack=1, frame_channels=1)
    fill(replay, 20, 1, first={(5, 0)}, truncated={(4, 0)}, reward=lambda t, e: float(t))
    got = sample_all(TransitionView(batch_size=64, n_step=3, gamma=0.5), replay)
    assert got[2]["n"] == 2 and got[2]["reward"] == pytest.approx(5.0)
    assert got[2]["discount"] == pytest.approx(0.25)  # gamma^2: the time limit is not a terminal state
    assert got[2]["next_obs"][0, 0, 0] == 4


def test_frame_stack_at_episode_start_repeats_the_first_frame_and_never_the_previous_episode():
    replay = Replay(1000, frame_stack=4, frame_channels=1)
    fill(replay, 20, 1, first={(6, 0)}, terminal={(5, 0)})
    got = sample_all(TransitionView(batch_size=64, n_step=1, gamma=0.9), replay)
    assert got[6]["obs"][:, 0, 0].tolist() == [6, 6, 6, 6]
    assert got[7]["obs"][:, 0, 0].tolist() == [6, 6, 6, 7]
    assert got[9]["obs"][:, 0, 0].tolist() == [6, 7, 8, 9]
    assert got[10]["obs"][:, 0, 0].tolist() == [7, 8, 9, 10]
    assert got[7]["next_obs"][:, 0, 0].tolist() == [6, 6, 7, 8]
    # The previous episode's stack just before its terminal frame.
    assert got[4]["obs"][:, 0, 0].tolist() == [1, 2, 3, 4] and got[4]["next_obs"][:, 0, 0].tolist() == [2, 3, 4, 5]


def test_zero_padded_stacks_at_episode_start_as_dopamine_pads_them():
    replay = Replay(1000, frame_stack=4, frame_channels=1, stack_padding="zero")
    fill(replay, 20, 1, first={(6, 0)}, terminal={(5, 0)})
    got = sample_all(TransitionView(batch_size=64, n_step=1, gamma=0.9), replay)
    assert got[6]["obs"][:, 0, 0].tolist() == [0, 0, 0, 6]
    assert got[7]["obs"][:, 0, 0].tolist() == [0, 0, 6, 7] and got[7]["next_obs"][:, 0, 0].tolist() == [0, 6, 7, 8]
    assert got[9]["obs"][:, 0, 0].tolist() == [6, 7, 8, 9]
    assert got[4]["obs"][:, 0, 0].tolist() == [1, 2, 3, 4] and got[4]["next_obs"][:, 0, 0].tolist() == [2, 3, 4, 5]


def test_transitions_come_from_one_environment_column():
    replay = Replay(1000, num_envs=3, frame_stack=2, frame_channels=1)
    fill(replay, 30, 3)
    batch = TransitionView(batch_size=256, n_step=2, gamma=0.9).sample(replay)
    newest, previous, nxt = batch["obs"][:, 1, 0, 0].long(), batch["obs"][:, 0, 0, 0].long(), batch["next_obs"][:, 1, 0, 0].long()
    assert torch.equal(newest // 100, nxt // 100) and torch.equal(newest // 100, previous // 100)
    assert torch.equal(nxt - newest, torch.full_like(nxt, 2))
    assert set((newest // 100).tolist()) == {0, 1, 2}


def test_sequences_mark_episode_boundaries_and_stay_in_one_column():
    replay = Replay(1000, num_envs=2, frame_stack=1, frame_channels=1)
    fill(replay, 40, 2, first={(10, 0), (25, 1)}, terminal={(9, 0)}, truncated={(24, 1)})
    batch = SequenceView(batch_size=200, seq_len=8).sample(replay)
    ids = batch["obs"][:, :, 0, 0, 0].long()
    t, env = ids % 100, ids // 100
    assert torch.equal(t[:, 1:] - t[:, :-1], torch.ones_like(t[:, 1:]))  # consecutive steps
    assert torch.equal(env, env[:, :1].expand_as(env))  # one environment per sequence
    boundary_first = ((t == 10) & (env == 0)) | ((t == 25) & (env == 1)) | (t == 0)
    assert torch.equal(batch["first"], boundary_first)
    assert torch.equal(batch["last"], ((t == 9) & (env == 0)) | ((t == 24) & (env == 1)))
    assert torch.equal(batch["terminal"], (t == 9) & (env == 0))


def test_ring_buffer_overwrites_the_oldest_rows_and_samples_only_stored_ones():
    replay = Replay(50, num_envs=1, frame_stack=2, frame_channels=1, chunk=7)
    fill(replay, 120, 1)
    assert len(replay) == 50 and replay.oldest == 70
    got = sample_all(TransitionView(batch_size=64, n_step=3, gamma=0.9), replay, times=10)
    assert min(got) >= 71 and max(got) <= 116  # k-1 rows before, n rows after
    seq = SequenceView(batch_size=64, seq_len=10).sample(replay)["obs"][:, :, 0, 0, 0]
    assert int(seq.min()) >= 70 and int(seq.max()) <= 119


def test_sampling_too_early_says_what_to_do():
    replay = Replay(100, frame_stack=1, frame_channels=1)
    fill(replay, 3, 1)
    with pytest.raises(NotEnoughData, match="warm-up"):
        TransitionView(batch_size=4, n_step=5).sample(replay)


def test_checkpoint_round_trip_keeps_contents_and_marks_the_interrupted_episode_truncated(tmp_path):
    replay = Replay(100, num_envs=2, frame_stack=1, frame_channels=1, seed=3)
    fill(replay, 30, 2, reward=lambda t, e: t + 0.5 * e)
    replay.persist(tmp_path)
    state = replay.state_dict()
    assert "frames" not in state  # the rows are in the directory, not in the checkpoint
    restored = Replay(100, num_envs=2, frame_stack=1, frame_channels=1, seed=99)
    restored.load_state_dict(state, tmp_path)
    rows, cols = torch.arange(30)[:, None].expand(30, 2), torch.arange(2).expand(30, 2)
    assert torch.equal(restored.frames(rows, cols), replay.frames(rows, cols))
    assert torch.equal(restored.steps(rows, cols)["reward"], replay.steps(rows, cols)["reward"])
    last = restored.steps(rows, cols)["last"]
    assert last[29].all() and not last[:29].any() and not restored.steps(rows, cols)["terminal"].any()
    # Same generator state: the next samples agree.
    view = SequenceView(batch_size=5, seq_len=4)
    assert torch.equal(view.sample(restored)["obs"], view.sample(replay)["obs"])


def chunk_rows(directory) -> list[tuple[int, int, int]]:
    """(start, stop, rows held) of each chunk file, oldest first."""
    found = []
    for path in sorted(directory.glob("rows-*.pt")):
        start, stop = (int(x) for x in path.stem.split("-")[1:])
        found.append((start, stop, torch.load(path, weights_only=True)["frames"].shape[0]))
    return found


def test_each_persist_writes_only_the_rows_added_since_the_last_and_drops_overwritten_ones(tmp_path):
    replay = Replay(40, num_envs=1, frame_stack=1, frame_channels=1, chunk=7)
    fill(replay, 25, 1)
    replay.persist(tmp_path)
    fill(replay, 10, 1, start=25)
    replay.persist(tmp_path)
    assert chunk_rows(tmp_path) == [(0, 25, 25), (25, 35, 10)]
    fill(replay, 40, 1, start=35)  # the ring wraps: rows 0..34 are overwritten
    replay.persist(tmp_path)
    assert chunk_rows(tmp_path) == [(35, 75, 40)]  # both older files held only overwritten rows
    fill(replay, 5, 1, start=75)
    replay.persist(tmp_path)
    assert chunk_rows(tmp_path) == [(35, 75, 40), (75, 80, 5)]  # rows 40..79 live in both

    restored = Replay(40, num_envs=1, frame_stack=1, frame_channels=1)
    restored.load_state_dict(replay.state_dict(), tmp_path)
    t = torch.arange(40, 80)[:, None]
    assert torch.equal(restored.frames(t, torch.zeros_like(t))[:, 0, 0, 0, 0],
                       torch.arange(40, 80).to(torch.uint8))  # each frame's pixel is its own time
    assert torch.equal(restored.steps(t, torch.zeros_like(t))["episode"], replay.steps(t, torch.zeros_like(t))["episode"])


def test_a_chunk_written_after_the_checkpoint_is_dropped_and_a_missing_one_is_one_sentence(tmp_path):
    replay = Replay(100, num_envs=1, frame_stack=1, frame_channels=1)
    fill(replay, 20, 1)
    replay.persist(tmp_path)
    state = replay.state_dict()  # the checkpoint: cursor at 20
    fill(replay, 10, 1, start=20)
    replay.persist(tmp_path)  # the run dies after this file but before its checkpoint
    (tmp_path / "rows-0000000030-0000000040.pt.tmp").write_bytes(b"half a file")
    Replay(100, num_envs=1, frame_stack=1, frame_channels=1).load_state_dict(state, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows-0000000000-0000000020.pt"]

    ahead = dict(state, time=25)  # a checkpoint from a run that is not this directory's
    with pytest.raises(ConfigError, match="holds rows 0-20 but the checkpoint needs rows 0-25"):
        Replay(100, num_envs=1, frame_stack=1, frame_channels=1).load_state_dict(ahead, tmp_path)


def test_a_checkpoint_with_the_replay_inline_still_resumes_and_its_next_persist_writes_every_row(tmp_path):
    # Checkpoints written before the replay moved to the run directory carry its rows themselves.
    replay = Replay(100, num_envs=1, frame_stack=1, frame_channels=1)
    fill(replay, 12, 1)
    legacy = dict(replay.state_dict(), **replay.rows_between(0, 12))
    restored = Replay(100, num_envs=1, frame_stack=1, frame_channels=1)
    restored.load_state_dict(legacy, tmp_path)
    restored.persist(tmp_path)
    assert chunk_rows(tmp_path) == [(0, 12, 12)]


def test_stored_bytes_per_frame_stay_within_ten_percent_of_the_raw_frame():
    replay = Replay(2000, num_envs=1, frame_stack=4, frame_channels=1)
    for t in range(2000):
        replay.add(np.zeros((1, 4, 84, 84), np.uint8), np.zeros(1, np.int64), np.zeros(1, np.float32),
                   np.zeros(1, bool), np.zeros(1, bool), np.array([t == 0]))
    per_frame = replay.nbytes() / (replay.rows * replay.num_envs)  # the tensors TorchRL allocated, per row
    assert 84 * 84 <= per_frame <= 1.1 * 84 * 84


def test_an_interrupted_episode_stays_a_truncation_after_a_second_resume(tmp_path):
    replay = Replay(100, num_envs=1, frame_stack=1, frame_channels=1)
    fill(replay, 10, 1)  # one episode, interrupted at row 9
    replay.persist(tmp_path)
    resumed = Replay(100, num_envs=1, frame_stack=1, frame_channels=1)
    resumed.load_state_dict(replay.state_dict(), tmp_path)
    fill(resumed, 5, 1, first={(10, 0)}, start=10)  # the resumed run starts a new episode at row 10
    resumed.persist(tmp_path)
    again = Replay(100, num_envs=1, frame_stack=1, frame_channels=1)
    again.load_state_dict(resumed.state_dict(), tmp_path)
    last = again.steps(torch.arange(15)[:, None], torch.zeros(15, 1, dtype=torch.long))["last"][:, 0]
    assert last.nonzero().flatten().tolist() == [9, 14]  # row 9 on disk has no mark; the load restores it
    # No 3-step transition from the first episode reads into the second.
    batch = TransitionView(batch_size=64, n_step=3, gamma=0.5).transitions_at(again, torch.tensor([8]), torch.tensor([0]))
    assert batch["n"].item() == 1 and batch["reward"].item() == 1.0


def test_the_memmap_replay_holds_and_samples_exactly_what_the_in_memory_one_does(tmp_path):
    replays = [Replay(60, num_envs=2, frame_stack=3, frame_channels=1, seed=5, chunk=7),
               Replay(60, num_envs=2, frame_stack=3, frame_channels=1, seed=5, chunk=7, storage="memmap",
                      directory=str(tmp_path))]
    for replay in replays:  # wraps the ring: 45 steps into 30 rows per column
        fill(replay, 45, 2, first={(12, 0), (30, 1)}, terminal={(11, 0)}, truncated={(29, 1)},
             reward=lambda t, e: t - e)
    assert list(tmp_path.rglob("*.memmap")), "the memmap storage wrote no files"
    for view in (TransitionView(batch_size=16, n_step=3, gamma=0.9), SequenceView(batch_size=4, seq_len=8)):
        memory, memmap = (view.sample(r) for r in replays)
        assert memory.keys() == memmap.keys()
        for key in memory:
            assert torch.equal(memory[key], memmap[key]), key


@pytest.mark.parametrize("storage", ["memory", "memmap"])
def test_frames_are_gathered_from_the_rows_and_columns_asked_for(tmp_path, storage):
    replay = Replay(60, num_envs=3, frame_stack=1, frame_channels=1, storage=storage, directory=str(tmp_path))
    fill(replay, 50, 3)  # wraps the ring: 20 rows per column hold times 30..49
    replay.flush()
    t = torch.tensor([[30, 49], [41, 35]])
    env = torch.tensor([2, 0])  # broadcast against t's columns
    frames = replay.frames(t, env)
    assert frames.shape == (2, 2, 1, 2, 2)
    assert frames[..., 0, 0, 0].tolist() == [[230, 49], [241, 35]]  # pixel = t + 100 x env
