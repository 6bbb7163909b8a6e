"""The replay's frames on an accelerator (``Replay(device=...)``, ``data.replay_device``): the batches are
those of a replay kept on the host, bit for bit, live and after a resume; chunk files hold host tensors;
what cannot work stops with one sentence.

A machine without a GPU still checks most of it: the same code path with ``device="cpu"``, and PyTorch's
``meta`` device, which holds no data but refuses any operation that mixes it with CPU tensors, as a GPU
does, so a frame batch assembled with a host tensor somewhere fails here too. The ``cuda`` cases run
where a GPU is present.
"""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import run_fit
from worldmodels.checkpoint_file import read_checkpoint
from worldmodels.envs import EnvConfig
from worldmodels.envs.observations import ObsKey
from worldmodels.errors import ConfigError
from worldmodels.replay import PrioritizedTransitionView, Replay, SequenceView, TransitionView
from worldmodels.training import Experience
from worldmodels.training.validate import check_frames_fit

NO_GPU = not torch.cuda.is_available()
ON_A_GPU = pytest.param("cuda", marks=pytest.mark.skipif(NO_GPU, reason="needs a GPU"))
STACK, ENVS, CAPACITY = 4, 2, 160  # 80 rows per column, overwritten by STEPS
STEPS = 130
IMAGE = (ObsKey("obs", "image", (STACK * 3, 6, 6), STACK),)
IMAGE_AND_VECTOR = (ObsKey("pixels", "image", (STACK * 3, 6, 6), STACK), ObsKey("state", "vector", (STACK * 5,), STACK))


def views():
    return [TransitionView(batch_size=16, n_step=3, gamma=0.9), SequenceView(batch_size=3, seq_len=12),
            PrioritizedTransitionView(batch_size=16, n_step=3, gamma=0.9)]


def make(layout, padding: str, device: str | None = None) -> Replay:
    """A replay of ``layout``; today's constructor call when ``device`` is None."""
    chosen = {} if device is None else {"device": device}
    return Replay(CAPACITY, num_envs=ENVS, seed=11, chunk=16, stack_padding=padding, layout=layout, **chosen)


def write_stream(replay: Replay, layout, steps: int = STEPS, seed: int = 5) -> None:
    """Random frames, actions and rewards, with episode ends (terminal or truncated) every dozen steps or
    so: the same stream for every replay given the same seed."""
    rng = np.random.default_rng(seed)
    ended = np.ones(ENVS, bool)  # the first step starts every episode
    for _ in range(steps):
        keys = {key.name: (rng.integers(0, 256, (ENVS, *key.shape), dtype=np.uint8) if key.kind == "image"
                           else rng.standard_normal((ENVS, *key.shape)).astype(np.float32)) for key in layout}
        obs = keys if len(layout) > 1 else keys["obs"]
        end = rng.random(ENVS) < 0.08
        terminal = end & (rng.random(ENVS) < 0.5)
        replay.add(obs, rng.integers(0, 4, ENVS), rng.standard_normal(ENVS).astype(np.float32), terminal,
                   end & ~terminal, ended)
        ended = end


def on_host(value):
    return {k: v.cpu() for k, v in value.items()} if isinstance(value, dict) else value.cpu()


def draws(replay: Replay, each: int = 3) -> list[dict]:
    """``each`` batches of every view, in turn, moved to the host."""
    return [{k: on_host(v) for k, v in view.sample(replay).items()} for view in views() for _ in range(each)]


def assert_same_batches(expected: list[dict], got: list[dict]) -> None:
    assert len(expected) == len(got)
    for i, (a, b) in enumerate(zip(expected, got)):
        assert a.keys() == b.keys()
        for key in a:
            pairs = [(n, a[key][n], b[key][n]) for n in a[key]] if isinstance(a[key], dict) else [("", a[key], b[key])]
            for name, x, y in pairs:
                assert x.dtype == y.dtype and torch.equal(x, y), f"batch {i}, {key} {name}"


def resumed(replay: Replay, layout, padding: str, directory, device: str | None) -> Replay:
    """``replay`` written to ``directory`` and read back into a new replay, as a resume does."""
    replay.persist(directory)
    again = make(layout, padding, device)
    again.load_state_dict(replay.state_dict(), directory)
    return again


@pytest.mark.parametrize("device", ["cpu", ON_A_GPU])
@pytest.mark.parametrize("layout", [IMAGE, IMAGE_AND_VECTOR], ids=["image", "image+vector"])
@pytest.mark.parametrize("padding", ["repeat", "zero"])
def test_a_replay_with_its_frames_on_a_device_draws_the_batches_of_a_host_replay_live_and_after_a_resume(
        tmp_path, device, layout, padding):
    host, placed = make(layout, padding), make(layout, padding, device)
    for replay in (host, placed):
        write_stream(replay, layout)
    newest = placed.frames(torch.tensor([STEPS - 1]), torch.tensor([0]))
    assert {f.device.type for f in (newest.values() if isinstance(newest, dict) else [newest])} == {device}
    assert_same_batches(draws(host), draws(placed))
    host = resumed(host, layout, padding, tmp_path / "host", None)
    placed = resumed(placed, layout, padding, tmp_path / "placed", device)
    assert placed.device.type == device
    assert_same_batches(draws(host), draws(placed))
    for replay in (host, placed):  # and writing on after the resume
        write_stream(replay, layout, steps=40, seed=6)
    assert_same_batches(draws(host), draws(placed))


@pytest.mark.parametrize("layout", [IMAGE, IMAGE_AND_VECTOR], ids=["image", "image+vector"])
def test_batches_hold_frames_on_the_replays_device_and_every_other_field_on_the_host(layout):
    # Zero padding multiplies the frames by a mask computed on the host: it must go to the frames' device.
    replay = make(layout, "zero", "meta")
    write_stream(replay, layout)
    for view in views():
        batch = view.sample(replay)
        for key, value in batch.items():
            devices = {v.device.type for v in value.values()} if isinstance(value, dict) else {value.device.type}
            assert devices == ({"meta"} if key in ("obs", "next_obs") else {"cpu"}), key


@pytest.mark.parametrize("device", ["cpu", ON_A_GPU])
def test_the_rows_a_device_replay_writes_to_its_chunk_files_are_host_tensors(tmp_path, device):
    replay = make(IMAGE_AND_VECTOR, "repeat", device)
    write_stream(replay, IMAGE_AND_VECTOR, steps=40)
    rows = replay.rows_between(10, 40)
    for name, frames in rows["frames"].items():
        assert frames.device.type == "cpu", name
    assert {v.device.type for v in rows["steps"].values()} == {"cpu"}
    replay.persist(tmp_path)
    for path in tmp_path.glob("rows-*.pt"):
        saved = torch.load(path, weights_only=True)  # no map_location: as written
        assert {f.device.type for f in saved["frames"].values()} == {"cpu"}


def test_the_frame_bytes_known_before_the_first_write_are_those_torchrl_allocates():
    replay = make(IMAGE_AND_VECTOR, "repeat")
    before = replay.frame_bytes()
    assert before == CAPACITY * (3 * 6 * 6 + 5 * 4)  # uint8 RGB 6x6, 5 float32 values per frame
    write_stream(replay, IMAGE_AND_VECTOR, steps=20)
    assert replay.frame_bytes() == before


def test_frames_that_do_not_fit_the_gpus_free_memory_are_refused_in_one_sentence(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1 << 30, 80 << 30))
    check_frames_fit(1 << 29, torch.device("cuda", 0), 1000)  # half of what is free: fits
    with pytest.raises(ConfigError, match=r"\(2\.0 GiB for 1,000 frames\) do not fit the 1\.0 GiB free on cuda:0 "
                                          r"\(data\.replay_device\)"):
        check_frames_fit(2 << 30, torch.device("cuda", 0), 1000)
    check_frames_fit(2 << 30, torch.device("cpu"), 1000)  # host memory is not measured here


def test_memory_mapped_frames_on_a_device_are_refused_before_anything_is_allocated(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.replay_storage memmap\) and on cuda \(data\.replay_device\)"):
        Replay(CAPACITY, num_envs=ENVS, storage="memmap", directory=str(tmp_path), layout=IMAGE, device="cuda")
    replay = Replay(CAPACITY, num_envs=ENVS, storage="memmap", directory=str(tmp_path), layout=IMAGE)
    with pytest.raises(ConfigError, match=r"data\.replay_device"):
        replay.place_frames("cuda")
    assert not list(tmp_path.rglob("*.memmap"))


def catch() -> EnvConfig:
    return EnvConfig(suite="test", task="catch", image_size=16, grayscale=True, frame_stack=1)


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
def test_replay_device_cuda_without_a_gpu_stops_in_one_sentence_naming_the_option():
    with pytest.raises(ConfigError, match=r"^data\.replay_device is cuda but this machine has no CUDA GPU"):
        Experience(catch(), replay_device="cuda")


def test_an_unknown_replay_device_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match=r"data\.replay_device is 'gpu'; choose cpu, cuda"):
        Experience(catch(), replay_device="gpu")


def trained_on(experience: Experience, device: str) -> None:
    """Attach what ``frames_device`` reads of a trainer: the device Lightning trains this process on."""
    experience.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)))


def test_auto_puts_the_frames_on_the_gpu_this_process_trains_on_and_on_the_host_otherwise():
    experience = Experience(catch(), replay_device="auto", replay_capacity=100)
    experience.replay = Replay(100, layout=IMAGE)
    assert experience.frames_device() == torch.device("cpu")  # no trainer yet (an offline run's start-up checks)
    trained_on(experience, "cuda:1")  # a second DDP rank's GPU
    assert experience.frames_device() == torch.device("cuda", 1)
    trained_on(experience, "cpu")
    assert experience.frames_device() == torch.device("cpu")
    experience.replay = Replay(100, layout=IMAGE, storage="memmap")
    trained_on(experience, "cuda:0")
    assert experience.frames_device() == torch.device("cpu")  # memmap frames stay files on the host


def test_replay_device_cuda_with_training_on_the_cpu_stops_in_one_sentence():
    experience = Experience(catch(), replay_capacity=100)
    experience.replay_device = "cuda"  # as if made on a machine with a GPU (the constructor checks for one)
    experience.replay = Replay(100, layout=IMAGE)
    trained_on(experience, "cpu")
    with pytest.raises(ConfigError, match=r"data\.replay_device is cuda but this run trains on cpu"):
        experience.frames_device()


def test_a_replay_placed_on_a_device_after_it_was_filled_keeps_its_rows():
    """A dataset is opened on the host at start-up and moved at Lightning's set-up (``place_frames``)."""
    host, moved = make(IMAGE_AND_VECTOR, "zero"), make(IMAGE_AND_VECTOR, "zero")
    for replay in (host, moved):
        write_stream(replay, IMAGE_AND_VECTOR)
    moved.place_frames("meta")
    assert moved.device.type == "meta"
    assert {f.device.type for f in TransitionView(batch_size=8, n_step=3).sample(moved)["obs"].values()} == {"meta"}
    if not NO_GPU:
        moved = make(IMAGE_AND_VECTOR, "zero")
        write_stream(moved, IMAGE_AND_VECTOR)
        moved.place_frames("cuda")
        assert_same_batches(draws(host), draws(moved))


# 30 updates of NDDQN with prioritized replay and stacks of 2 frames, one evaluation game at the end.
TINY = ["--config", "tests/configs/nddqn_catch.yaml", "--model.init_args.prioritized", "true",
        "--data.total_env_steps", "230", "--data.warmup_steps", "200", "--data.env.frame_stack", "2",
        "--evaluation.every_env_steps", "0", "--evaluation.episodes", "1", "--trainer.accelerator", "cpu"]


def test_a_run_with_replay_device_cpu_or_auto_on_the_cpu_trains_the_weights_of_a_run_without_the_option(tmp_path):
    """``auto`` resolves against the trainer Lightning made (its strategy's device: the CPU here)."""
    weights = []
    for extra in ([], ["--data.replay_device", "cpu"], ["--data.replay_device", "auto"]):
        run = tmp_path / f"run{len(weights)}"
        done = run_fit(*TINY, *extra, "--run_dir", str(run), cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        weights.append(read_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"])
    for other in weights[1:]:
        assert weights[0].keys() == other.keys() and weights[0]
        for name in weights[0]:
            assert torch.equal(weights[0][name], other[name]), name
