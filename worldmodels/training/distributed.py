"""What the processes of a several-device run (Lightning's DDP) share, and how each differs.

Every rank steps its own environments into its own replay, with its own seeds; the agent's weights
are one copy, kept equal by DDP's all-reduced gradients. Everything that decides *when* something
happens (updates owed, checkpoints, evaluations, the end of the run) reads counters that are equal
on every rank, so the ranks stay in step: the ranks exchange their env-step counts every
``COUNT_EXCHANGE_EVERY`` vector steps (a number equal on every rank by construction), through a CPU
group, so that no collective per env step waits behind the update in flight on an accelerator. Statistics that change weights outside the gradients (A-LIX's ND score, DreamerV3's
return percentiles) are taken over every rank's data.

With one process every function here is the identity, without a collective.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import numpy as np
import torch
import torch.distributed as dist


_alone = 0  # depth of ``this_process_only`` blocks
_cpu_group = None  # the gloo group of ``cpu_group``

# Vector steps between two exchanges of the ranks' env-step counts (``TrainingLoop._count_steps``): the
# run's clock moves by the env steps of 16 vector steps of every rank at once (32 with two processes of
# one environment each), so checkpoints, evaluations and the end of the run land up to that many env
# steps past the step they name, and the updates those steps owe come together.
COUNT_EXCHANGE_EVERY = 16


def world_size() -> int:
    """The processes sharing statistics now: 1 inside ``this_process_only``."""
    if _alone:
        return 1
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


@contextmanager
def this_process_only():
    """For work that one process does while the others go on (the first process's health checks): the
    statistics in it stay this process's, since a collective would wait for processes that never come."""
    global _alone
    _alone += 1
    try:
        yield
    finally:
        _alone -= 1


def rank() -> int:
    """This process's rank in the run (also inside ``this_process_only``)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def rank_seed(seed: int, rank: int) -> int:
    """Rank 0 keeps ``seed`` (a one-device run is unchanged); other ranks get unrelated streams."""
    if rank == 0:
        return seed
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0] >> 1)


def sum_over_ranks(counts: torch.Tensor, group=None) -> torch.Tensor:
    """Sum of ``counts`` over the ranks (in place), in ``group`` (the default group: the run's backend)."""
    if world_size() > 1:
        dist.all_reduce(counts, op=dist.ReduceOp.SUM, group=group)
    return counts


def cpu_group():
    """A gloo group of every rank, for counters that live on the CPU: a count exchanged through NCCL
    would be copied to the GPU and wait there behind the update in flight. Made on first use, which
    every rank must reach at the same point (a collective); None without several processes."""
    global _cpu_group
    if _cpu_group is None and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        _cpu_group = dist.new_group(backend="gloo")
    return _cpu_group


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """Mean of ``value`` over the ranks (a new tensor; the input is unchanged)."""
    if world_size() == 1:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / world_size()


def cat_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """Every rank's ``values`` (the same shape on each), concatenated along the first dimension."""
    if world_size() == 1:
        return values
    parts = [torch.empty_like(values) for _ in range(world_size())]
    dist.all_gather(parts, values.contiguous())
    return torch.cat(parts)


def gather_objects(obj) -> list:
    """Every rank's picklable ``obj``, in rank order (a list of one without DDP)."""
    if world_size() == 1:
        return [obj]
    gathered = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def share_of(total: int, rank: int, world: int) -> int:
    """Rank ``rank``'s part of ``total`` items split as evenly as possible (the first ranks take one more)."""
    return total // world + (1 if rank < total % world else 0)


def started_beside_rank_zero() -> bool:
    """Whether a launcher started this process beside rank 0, as it announces it before any process
    group exists: Lightning's launcher (LOCAL_RANK, NODE_RANK on later nodes), torchrun (RANK) or
    SLURM (SLURM_PROCID). Such a process uses rank 0's run directory and writes no run files."""
    return any(int(os.environ.get(key, "0") or 0) != 0 for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def weights_fingerprint(module: torch.nn.Module) -> list[float]:
    """Two float64 sums per parameter tensor: ranks whose weights drifted apart give different lists."""
    with torch.no_grad():
        return [x for p in module.parameters() for x in
                (float(p.double().sum()), float((p.double() * torch.linspace(1, 2, p.numel(), dtype=torch.float64,
                                                                               device=p.device).view_as(p)).sum()))]
