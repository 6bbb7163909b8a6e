"""glibc's malloc takes the thresholds ``worldmodels.fit`` sets at start-up (mallopt refuses values out of
its range by returning 0, which the function reports)."""

import platform
import sys

import pytest
import torch

from worldmodels.training.host_memory import reuse_freed_host_memory


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="needs glibc")
def test_glibc_accepts_the_thresholds_and_tensors_still_allocate():
    assert reuse_freed_host_memory()
    block = torch.ones(4 << 20)  # 16 MiB, under the mmap threshold now: from the heap
    assert block.sum().item() == 4 << 20
