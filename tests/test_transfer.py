"""The loop's copies between host arrays and the agent's device (``worldmodels.training.transfer``)."""

import numpy as np
import pytest
import torch

from worldmodels.training.transfer import DeviceTransfer


def test_on_the_cpu_observations_and_actions_share_the_arrays_memory_as_plain_tensors_do():
    transfer = DeviceTransfer("cpu")
    obs = {"image": np.arange(24, dtype=np.uint8).reshape(2, 3, 2, 2), "state": np.ones((2, 3), np.float32)}
    uploaded = transfer.to_device(obs)
    assert uploaded["image"].data_ptr() == obs["image"].ctypes.data  # no copy
    assert torch.equal(uploaded["state"], torch.ones(2, 3))
    actions = torch.tensor([1, 2])
    assert transfer.to_host(actions).tolist() == [1, 2]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned buffers and events need a CUDA device")
def test_on_a_gpu_uploads_alternate_two_pinned_buffers_and_downloads_are_arrays_of_their_own():
    transfer = DeviceTransfer("cuda")
    first, second = np.full((2, 4), 1, np.uint8), np.full((2, 4), 2, np.uint8)
    a, b = transfer.to_device(first), transfer.to_device(second)
    assert a.is_cuda and torch.equal(a.cpu(), torch.from_numpy(first)) and torch.equal(b.cpu(), torch.from_numpy(second))
    pair = next(iter(transfer._pairs.values()))
    assert all(buffer.is_pinned() for buffer in pair.buffers)
    assert pair.buffers[0].data_ptr() != pair.buffers[1].data_ptr()
    actions = torch.arange(4, device="cuda")
    host = transfer.to_host(actions)
    transfer.to_host(actions + 10)  # the next download reuses the other buffer, then this one: host stays
    transfer.to_host(actions + 20)
    assert host.tolist() == [0, 1, 2, 3]
