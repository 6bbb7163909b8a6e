"""Which GPU renders MuJoCo in this process: with several processes on one machine, each renders on its
own GPU instead of all of them on the first.

MuJoCo's EGL backend picks its device from ``MUJOCO_EGL_DEVICE_ID``, an index into the machine's EGL
devices (which ignore ``CUDA_VISIBLE_DEVICES``), and reads it once, when the first rendering context is
made. So it is set when ``worldmodels`` is imported, before any environment exists, from the process's
local rank as its launcher announces it (Lightning's launcher and torchrun: ``LOCAL_RANK``; SLURM:
``SLURM_LOCALID``; the first process of a Lightning run has none, and is rank 0), mapped through
``CUDA_VISIBLE_DEVICES`` when that lists device numbers. A value the user set is kept.
"""

from __future__ import annotations

import os
from collections.abc import Mapping


def egl_device_for(environ: Mapping[str, str], gpus: int) -> str | None:
    """The EGL device this process should render on, or None to leave MuJoCo's choice: no GPU (Mesa's
    software EGL has one device), one process and no ``CUDA_VISIBLE_DEVICES``, device names that are
    not numbers, or a value already set."""
    if "MUJOCO_EGL_DEVICE_ID" in environ or gpus == 0:
        return None
    local = environ.get("LOCAL_RANK") or environ.get("SLURM_LOCALID")
    visible = [d.strip() for d in environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    if local is None and not visible:
        return None
    rank = int(local or 0)
    if not visible:
        return str(rank)
    if rank < len(visible) and visible[rank].isdigit():  # GPU UUIDs or MIG names cannot be mapped
        return visible[rank]
    return None


def render_on_this_ranks_gpu() -> None:
    if egl_device_for(os.environ, gpus=1) is None:  # decided by the environment alone: torch not imported
        return  # (the benchmark runner and its job processes never import torch)
    import torch

    device = egl_device_for(os.environ, torch.cuda.device_count())
    if device is not None:
        os.environ["MUJOCO_EGL_DEVICE_ID"] = device
