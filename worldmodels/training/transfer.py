"""The loop's copies between host arrays and the agent's device, off the critical path on a GPU.

Acting moves an observation to the device and the chosen actions back every env step. Plain copies
(``torch.as_tensor(x, device=...)``, ``actions.cpu()``) go through pageable memory: the upload is staged
by the driver and blocks the host, the download waits for everything queued on the stream. Here, on a
GPU, uploads are copied into page-locked (pinned) host buffers and sent with ``non_blocking=True``;
downloads land in pinned buffers too, and the host waits on an event recorded right after the copy.
Each array has two buffers used in turn, so a buffer is never refilled while a copy from it may still
be in flight: a step's upload is complete once that step's actions were waited for, which precedes the
upload two steps later into the same buffer.

On the CPU nothing is copied: tensors share the arrays' memory, as before.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from worldmodels.envs.observations import map_obs


class PinnedPair:
    """Two pinned host buffers of one shape and dtype, handed out in turn."""

    def __init__(self, like: torch.Tensor):
        self.buffers = [torch.empty_like(like, device="cpu").pin_memory() for _ in range(2)]
        self.turn = 0

    def next(self) -> torch.Tensor:
        self.turn ^= 1
        return self.buffers[self.turn]


class DeviceTransfer:
    """Uploads (``to_device``) and downloads (``to_host``) for one device."""

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        self.pinned = self.device.type == "cuda"
        self._pairs: dict[tuple, PinnedPair] = {}

    def _buffer(self, name: str, like: torch.Tensor) -> torch.Tensor:
        key = (name, tuple(like.shape), like.dtype)
        if key not in self._pairs:
            self._pairs[key] = PinnedPair(like)
        return self._pairs[key].next()

    def to_device(self, array: Any, name: str = "obs") -> Any:
        """A host array (or a dict of them, an observation) as tensors on the device."""
        if not self.pinned:
            return map_obs(lambda x: torch.as_tensor(x, device=self.device), array)

        def upload(x: np.ndarray, key: str) -> torch.Tensor:
            host = torch.as_tensor(x)
            buffer = self._buffer(key, host)
            buffer.copy_(host)
            return buffer.to(self.device, non_blocking=True)

        if isinstance(array, dict):
            return {k: upload(v, f"{name}.{k}") for k, v in array.items()}
        return upload(array, name)

    def to_host(self, tensor: torch.Tensor, name: str = "actions") -> np.ndarray:
        """A device tensor as a host array of its own, waiting for this copy only (an event recorded
        after it), not for what the stream queued after it."""
        if not self.pinned:
            return tensor.cpu().numpy()
        buffer = self._buffer(name, tensor)
        buffer.copy_(tensor, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        done.synchronize()
        return buffer.numpy().copy()
