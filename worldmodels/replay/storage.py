"""Replay on TorchRL storages: every frame stored once, time-major, one column per environment.

Row ``t`` of column ``e`` is environment ``e``'s frame at its step ``t`` and how it was reached:

    obs       the newest frame only: (C, H, W) uint8 for an image, (D,) float32 for a vector, or one
              such field per key of a dict observation (``worldmodels.envs.observations``); frame
              stacks are rebuilt when sampling
    action    the action that led to this frame (zeros on a first frame)
    reward    the reward received on arriving at this frame (0 on a first frame)
    first     this frame starts an episode
    terminal  the episode ended here for real (no bootstrap past it)
    last      the episode ended here, terminal or truncated (time limit, or a run stopped here)
    episode   a run-wide episode id

An episode's final frame is kept, so a truncated n-step return can bootstrap from it and a
sequence shows it. Rows are staged in a small numpy chunk and written to the TorchRL storage a
chunk at a time: one TensorDict write per step would cost more than an Atari step itself.

The frames may live on an accelerator (``device``): TorchRL's ``LazyTensorStorage(device=...)``
allocates them there at the first write, each staged chunk is copied there once, and ``frames`` gathers
there, so a batch's frames never cross the bus. The per-step fields stay on the host whatever the
device: the views compute every index, n-step return and stack from them on the CPU, drawing the same
random numbers as a replay kept on the host, and only the flat frame index goes to the device.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from tensordict import TensorDict
from torchrl.data import LazyMemmapStorage, LazyTensorStorage

from worldmodels.envs.observations import SINGLE_KEY, ObsKey, is_dict
from worldmodels.errors import ConfigError
from worldmodels.replay import chunks

logging.getLogger("torchrl").setLevel(logging.WARNING)  # torchrl logs every storage allocation at INFO

STEP_FIELDS = ("action", "reward", "first", "terminal", "last", "episode")


class Replay:
    """Args:
        capacity: frames kept in all, over all environments (oldest overwritten first).
        num_envs: environments written in lock step, one column each.
        frame_stack: frames per observation as the agent sees it; views rebuild stacks of this size.
        stack_padding: what fills a stack before an episode's first frame, as the env's FrameStack
            does: ``repeat`` (that first frame) or ``zero``.
        frame_channels: channels of one frame (1 gray, 3 RGB) of an observation that is one image.
        layout: the observation's keys (``EnvSpec.obs_keys``), for any other observation; it sets
            ``frame_stack`` and ``frame_channels`` aside.
        storage: ``memory`` (LazyTensorStorage) or ``memmap`` (LazyMemmapStorage on disk).
        device: where the frames are kept and gathered (``cpu``, or an accelerator such as ``cuda:0``
            with ``memory`` storage); the per-step fields stay on the CPU.
        directory: where memmap files go (a temporary directory when empty).
        seed: seeds the sampling generator.
        chunk: rows staged before each write to the storage.
    """

    def __init__(self, capacity: int, num_envs: int = 1, frame_stack: int = 1, frame_channels: int = 3,
                 storage: str = "memory", directory: str | None = None, seed: int = 0, chunk: int = 256,
                 stack_padding: str = "repeat", layout: tuple[ObsKey, ...] | None = None,
                 device: str | torch.device = "cpu"):
        if storage not in ("memory", "memmap"):
            raise ConfigError(f"replay.storage is '{storage}'; choose memory or memmap.")
        if storage == "memmap":
            refuse_memmap_on(torch.device(device))
        self.device = numbered(device)
        if capacity < num_envs * 2:
            raise ConfigError(f"replay.capacity is {capacity}; it must hold at least two frames per environment.")
        self.rows = capacity // num_envs  # rows per environment column
        if layout is not None:
            frame_stack = layout[0].frame_stack
            frame_channels = layout[0].frame_shape[0] if not is_dict(layout) else 0
        self.num_envs, self.frame_stack, self.frame_channels = num_envs, frame_stack, frame_channels
        # Per key, the size of one frame along the stacked axis: C of an image, D of a vector. A stack's
        # newest frame is its last ``size`` entries along that axis.
        self.frame_sizes = ({key.name: key.frame_shape[0] for key in layout} if layout is not None
                            else {SINGLE_KEY: frame_channels})
        self.dict_obs = layout is not None and is_dict(layout)
        self.layout = layout
        self.stack_padding = stack_padding
        self.storage = storage

        def make(sub: str, device: torch.device):
            if storage == "memory":
                return LazyTensorStorage(self.rows * num_envs, ndim=2, device=device)
            return LazyMemmapStorage(self.rows * num_envs, scratch_dir=None if directory is None else f"{directory}/{sub}", ndim=2)

        self._frames = make("frames", self.device)
        self._steps = make("steps", torch.device("cpu"))  # the views' index arithmetic reads these on the host
        self.generator = torch.Generator().manual_seed(seed)
        self.time = 0  # rows written per column so far (staged ones included)
        self._chunk = chunk
        self._staged = 0
        self._stage: dict[str, np.ndarray] | None = None
        self._episode = np.full(num_envs, -1, np.int64)
        self._next_episode = 0
        self._persisted = 0  # rows before this logical time are in the on-disk log

    # ------------------------------------------------------------------ writing
    def add(self, obs: np.ndarray, action: np.ndarray, reward: np.ndarray, terminated: np.ndarray,
            truncated: np.ndarray, first: np.ndarray) -> None:
        """Store one vector step. ``obs`` is (N, k*C, H, W) as the env returns it; only the newest
        frame is kept. ``action`` is what produced these frames (ignored where ``first``)."""
        if self._stage is None:
            self._allocate_stage(obs, action)
        s, stage = self._staged, self._stage
        for name, size in self.frame_sizes.items():
            stage["obs"][name][s] = (obs[name] if self.dict_obs else obs)[:, -size:]
        stage["action"][s] = action
        stage["reward"][s] = reward
        stage["first"][s] = first
        stage["terminal"][s] = terminated
        np.logical_or(terminated, truncated, out=stage["last"][s])
        if first.any():  # new episodes: fresh ids; their action and reward are placeholders
            new = np.flatnonzero(first)
            self._episode[new] = self._next_episode + np.arange(len(new))
            self._next_episode += len(new)
            stage["action"][s][first] = 0
            stage["reward"][s][first] = 0.0
        stage["episode"][s] = self._episode
        self._staged += 1
        self.time += 1
        if self._staged == self._chunk:
            self.flush()

    def _allocate_stage(self, obs: np.ndarray, action: np.ndarray) -> None:
        n, chunk = self.num_envs, self._chunk
        action = np.asarray(action)
        keys = obs if self.dict_obs else {SINGLE_KEY: obs}
        self._stage = {
            "obs": {name: np.zeros((chunk, n, size, *keys[name].shape[2:]), keys[name].dtype)
                    for name, size in self.frame_sizes.items()},
            "action": np.zeros((chunk, *action.shape), np.int64 if action.dtype.kind in "iu" else np.float32),
            "reward": np.zeros((chunk, n), np.float32),
            "first": np.zeros((chunk, n), bool),
            "terminal": np.zeros((chunk, n), bool),
            "last": np.zeros((chunk, n), bool),
            "episode": np.zeros((chunk, n), np.int64),
        }

    def flush(self) -> None:
        """Write staged rows to the storage (sampling calls this first)."""
        if not self._staged:
            return
        s = self._staged
        rows = torch.from_numpy((self.time - s + np.arange(s)) % self.rows)
        data = {k: torch.from_numpy(v[:s]) for k, v in self._stage.items() if k != "obs"}
        frames = {name: torch.from_numpy(v[:s]) for name, v in self._stage["obs"].items()}
        self._frames.set(rows, self._frames_on_device(frames, s))
        self._steps.set(rows, TensorDict(data, batch_size=[s, self.num_envs]))
        self._staged = 0

    def _frames_on_device(self, frames: dict[str, torch.Tensor], n: int) -> TensorDict:
        """``n`` rows of host frames as a TensorDict on the frames' device: one copy per key for a
        device replay (none on the CPU), made before TorchRL writes them into its storage."""
        return TensorDict(frames, batch_size=[n, self.num_envs], device=self.device)

    # ------------------------------------------------------------------ reading
    @property
    def oldest(self) -> int:
        """Logical time of the oldest row still stored."""
        return max(0, self.time - self.rows)

    def __len__(self) -> int:
        return min(self.time, self.rows) * self.num_envs

    def steps(self, t: torch.Tensor, env: torch.Tensor) -> TensorDict:
        """Per-step fields at logical times ``t`` of columns ``env`` (any matching shapes)."""
        return self._steps.get((t % self.rows, env))

    def frames(self, t: torch.Tensor, env: torch.Tensor):
        """Frames (..., C, H, W) uint8 (or (..., D) float32 vectors) at logical times ``t`` of columns
        ``env``; a dict of them, one per key, for a dict observation.

        Gathered with ``index_select`` over the storage tensor's rows x columns flattened into one
        dimension: TorchRL's ``get`` indexes the two dimensions with advanced indexing, about 4x slower
        for a batch of frames (DrQ-v2's 256 transitions of 6 RGB 84x84 frames: 15.9 ms against 3.7 ms on
        one core), and the frames are most of what a batch costs to draw. The index is computed on the
        host and sent to the frames' device (a no-op on the CPU), where the gather runs: the frames
        come back on that device."""
        t, env = torch.broadcast_tensors(t, env)
        index = ((t % self.rows) * self.num_envs + env).reshape(-1).to(self.device, non_blocking=True)

        def gather(stored: torch.Tensor) -> torch.Tensor:  # (rows, columns, ...), plain or memory-mapped
            return stored.flatten(0, 1).index_select(0, index).view(*t.shape, *stored.shape[2:])

        stored = self._frames._storage
        if self.dict_obs:
            return {name: gather(stored.get(name)) for name in self.frame_sizes}
        return gather(stored.get(SINGLE_KEY))

    @property
    def obs_keys(self) -> tuple[ObsKey, ...]:
        """The observation's keys as agents see them: the layout given, or (a replay made with
        ``frame_channels``) its one image key, its size read from the stored frames."""
        if self.layout is not None:
            return self.layout
        self.flush()
        c, h, w = self._frames._storage.get(SINGLE_KEY).shape[2:]
        return (ObsKey(SINGLE_KEY, "image", (self.frame_stack * c, h, w), self.frame_stack),)

    def frame_bytes(self) -> int | None:
        """Bytes the frames take at full capacity (on ``device``): from the storage once allocated, else
        from the layout; None for a replay without layout that holds no frame yet."""
        self.flush()
        if self._frames.initialized:
            return sum(leaf.untyped_storage().nbytes()
                       for leaf in self._frames._storage.values(include_nested=True, leaves_only=True))
        if self.layout is None:
            return None
        per_row = sum(int(np.prod(key.frame_shape)) * key.dtype.itemsize for key in self.layout)
        return per_row * self.rows * self.num_envs

    def place_frames(self, device: str | torch.device) -> None:
        """Keep the frames on ``device`` from now on, with the rows already written: a replay made
        before the device it trains on was known (a dataset opened at start-up). Nothing to copy for a
        replay that holds no frame yet: TorchRL allocates its storage at the first write."""
        if self.storage == "memmap":
            refuse_memmap_on(torch.device(device))
        device = numbered(device)
        if device == self.device:
            return
        self.flush()
        moved = LazyTensorStorage(self.rows * self.num_envs, ndim=2, device=device)
        if self._frames.initialized:  # a chunk of rows at a time: the device never holds a second full copy
            stored = self._frames._storage
            for start in range(0, self.rows, self._chunk):
                rows = torch.arange(start, min(start + self._chunk, self.rows))
                moved.set(rows, stored[start:start + len(rows)].to(device))
        self._frames, self.device = moved, device

    def nbytes(self) -> int:
        """Bytes the storages' tensors actually hold: TorchRL allocates the whole capacity at the first
        write, so this is the cost of a full replay (in memory or in the memmap files)."""
        self.flush()
        total = 0
        for storage in (self._frames, self._steps):
            if storage.initialized:
                leaves = storage._storage.values(include_nested=True, leaves_only=True)
                total += sum(leaf.untyped_storage().nbytes() for leaf in leaves)
        return total

    # ------------------------------------------------------------------ checkpoint
    def rows_between(self, start: int, stop: int) -> dict:
        """Rows of logical times ``start <= t < stop`` (still stored), every column: frames and steps."""
        self.flush()
        t = torch.arange(start, stop)
        index = ((t % self.rows)[:, None].expand(len(t), self.num_envs), torch.arange(self.num_envs).expand(len(t), self.num_envs))
        # Gathered as batches are (a new tensor, on the frames' device), then brought to the host: chunk
        # files hold CPU tensors whatever the device, and load on any machine.
        frames = self.frames(*index)
        return {"frames": ({name: frames[name].cpu() for name in self.frame_sizes} if self.dict_obs
                           else frames.cpu()),
                "steps": {k: v.clone() for k, v in self._steps.get(index).items()}}

    def _put_rows(self, start: int, rows: dict) -> None:
        frames = rows["frames"] if self.dict_obs else {SINGLE_KEY: rows["frames"]}
        n = rows["steps"]["first"].shape[0]
        index = torch.arange(start, start + n) % self.rows
        self._frames.set(index, self._frames_on_device(dict(frames), n))  # rows read from files are on the host
        self._steps.set(index, TensorDict(rows["steps"], batch_size=[n, self.num_envs]))

    def persist(self, directory: Path) -> None:
        """Append the rows written since the last call to ``directory`` (one chunk file; see chunks.py)."""
        directory = Path(directory)
        start = max(self._persisted, self.oldest)
        if self.time > start:
            chunks.write_chunk(directory, start, self.time, self.rows_between(start, self.time))
        chunks.drop_before(directory, self.oldest)
        self._persisted = self.time

    def state_dict(self) -> dict:
        """The cursor and metadata only: the rows are in the directory ``persist`` writes."""
        self.flush()
        state = {"time": self.time, "rows": self.rows, "num_envs": self.num_envs,
                 "episode": torch.from_numpy(self._episode.copy()), "next_episode": self._next_episode,
                 "generator": self.generator.get_state()}
        if self.layout is not None:  # a dataset reader builds its replay from it (plain values: weights_only loads)
            state["layout"] = [dict(name=k.name, kind=k.kind, shape=list(k.shape), frame_stack=k.frame_stack)
                               for k in self.layout]
        return state

    def load_state_dict(self, state: dict, directory: Path | None = None, read_only: bool = False) -> None:
        """Restore the cursor and read the window's rows back from ``directory``. ``read_only``: a reader
        of another run's replay (a dataset), which removes nothing there (``chunks.window``)."""
        if (state["rows"], state["num_envs"]) != (self.rows, self.num_envs):
            raise ConfigError(
                f"the checkpoint's replay has {state['rows']} rows x {state['num_envs']} envs but this run has "
                f"{self.rows} x {self.num_envs}; resume with the same replay.capacity and num_envs."
            )
        self.time, self._next_episode = state["time"], state["next_episode"]
        self._episode = np.asarray(state["episode"]).copy()
        self.generator.set_state(state["generator"])
        self._staged, self._stage = 0, None
        if "frames" in state:  # written before the replay left the checkpoint: its rows are inline
            self._put_rows(0, {"frames": state["frames"], "steps": dict(state["steps"])})
            self._persisted = self.oldest  # the run directory has no rows yet: the next persist writes them all
        else:
            if directory is None:
                raise ConfigError("this checkpoint keeps its replay in the run directory; resume it with --run_dir.")
            shape = None  # per key, (envs, size of one frame, ...) of the frames, from the first file
            for chunk in chunks.window(Path(directory), self.oldest, self.time, clean=not read_only):
                rows = chunk.load()
                frames = rows.get("frames") if isinstance(rows, dict) else None
                found = self._frame_shapes(frames)
                shape = shape or found
                if found is None or found != shape or any(found[name][:2] != (self.num_envs, size)
                                                          for name, size in self.frame_sizes.items()):
                    raise ConfigError(f"replay file {chunk.path} holds frames of shape {self._shapes_text(found)} (envs, "
                                      "channels, height, width; or envs, values) where this run's replay holds "
                                      f"{self._expected_text(shape)}; it belongs to another run: remove it, or resume "
                                      "that run from its own directory.")
                skip = max(0, self.oldest - chunk.start)  # rows already overwritten in the ring
                frames = {n: f[skip:] for n, f in frames.items()} if self.dict_obs else frames[skip:]
                try:
                    self._put_rows(chunk.start + skip, {"frames": frames,
                                                        "steps": {k: v[skip:] for k, v in rows["steps"].items()}})
                except (KeyError, RuntimeError, ValueError, TypeError) as error:
                    raise ConfigError(f"replay file {chunk.path} does not fit this run's replay ({type(error).__name__}); "
                                      "it belongs to another run: remove it, or resume that run from its own "
                                      "directory.") from None
            self._persisted = self.time
        self._mark_interrupted_episodes()

    def _shapes_text(self, shapes: dict[str, tuple[int, ...]] | None) -> str:
        if shapes is None:
            return "unknown"
        return str(shapes[SINGLE_KEY]) if not self.dict_obs else "; ".join(f"{n}: {s}" for n, s in shapes.items())

    def _expected_text(self, first_file: dict[str, tuple[int, ...]] | None) -> str:
        """This replay's frames in words; their pixels as the run's first file holds them, when known."""
        def one(name: str, size: int) -> str:
            pixels = first_file.get(name) if first_file else None
            unit = "channel(s)" if pixels is None or len(pixels) == 4 else "value(s)"
            text = f"{self.num_envs} env(s) x {size} {unit}"
            return text + (f" x {pixels[2]}x{pixels[3]} pixels" if pixels is not None and len(pixels) == 4 else "")

        parts = [f"{name}: {one(name, size)}" if self.dict_obs else one(name, size) for name, size in self.frame_sizes.items()]
        return "; ".join(parts)

    def _frame_shapes(self, frames) -> dict[str, tuple[int, ...]] | None:
        """Per key, the (envs, frame size, ...) shape of a chunk file's frames; None when they are not
        this replay's form (one image tensor, or a dict of image and vector tensors)."""
        held = frames if self.dict_obs else {SINGLE_KEY: frames}
        if not isinstance(held, dict) or set(held) != set(self.frame_sizes):
            return None
        if not all(torch.is_tensor(f) and f.dim() in (3, 5) for f in held.values()):
            return None
        return {name: tuple(f.shape[1:]) for name, f in held.items()}

    def _mark_interrupted_episodes(self) -> None:
        """A run that stopped mid-episode left rows with no ``last`` before the next run's first frames:
        mark them (and the newest row, which the resumed run follows with new episodes) as
        truncations, so no sample reads on from one run into the next. The rule is applied to the
        whole window at every load, since the files on disk keep the rows as they were written."""
        if not self.time:
            return
        newest = torch.tensor([(self.time - 1) % self.rows])
        steps = self._steps.get(newest)
        steps["last"][:] = True
        self._steps.set(newest, steps)
        if self.time - self.oldest > 1:
            t = torch.arange(self.oldest, self.time - 1) % self.rows
            before, after = self._steps.get(t), self._steps.get((t + 1) % self.rows)
            before["last"] |= after["first"]
            self._steps.set(t, before)


def numbered(device: str | torch.device) -> torch.device:
    """``device`` with its index: plain ``cuda`` is the GPU current now, so that two names of one GPU
    compare equal (TorchRL numbers its storage's device the same way)."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def refuse_memmap_on(device: torch.device) -> None:
    """Memory-mapped frames are files on the host's disk: they cannot live on an accelerator."""
    if device.type != "cpu":
        raise ConfigError(f"the replay's frames cannot be both memory-mapped files (data.replay_storage memmap) and on "
                          f"{device} (data.replay_device); use --data.replay_storage memory for frames on an accelerator.")
