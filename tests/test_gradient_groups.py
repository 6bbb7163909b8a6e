"""Several processes average each backward pass's gradients over the weights that pass reached
(``worldmodels.training.ddp``), checked by hand on two CPU processes over gloo."""

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from worldmodels.training.ddp import ReachedWeights, average_gradients


def two_heads() -> nn.ModuleDict:
    torch.manual_seed(0)
    return nn.ModuleDict({"first": nn.Linear(2, 1, bias=False), "second": nn.Linear(2, 1, bias=False)})


def test_a_backward_pass_reaches_only_the_weights_its_loss_reads_in_the_modules_order():
    net = two_heads()
    reached = ReachedWeights(net)
    net["second"](torch.ones(1, 2)).sum().backward()
    assert reached.take() == [net["second"].weight]
    assert reached.take() == []  # forgotten once taken
    (net["first"](torch.ones(1, 2)) + net["second"](torch.ones(1, 2))).sum().backward()
    assert reached.take() == [net["first"].weight, net["second"].weight]


def average_on_rank(rank: int, init_file: str, results) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    net = two_heads()
    reached = ReachedWeights(net)
    x = torch.tensor([[1.0, 2.0]]) * (rank + 1)  # rank 0 reads (1, 2), rank 1 (2, 4)
    net["second"](x).sum().backward()  # d/dw of w . x is x
    net["first"].weight.grad = torch.full((1, 2), float(rank))  # a gradient no pass reached: left alone
    average_gradients(reached.take(), world=2)
    results[rank] = (net["second"].weight.grad.clone(), net["first"].weight.grad.clone())
    dist.destroy_process_group()


def test_two_processes_average_the_reached_gradients_and_leave_the_others(tmp_path):
    results = mp.Manager().dict()
    # forked, not spawned: a spawned process spends seconds importing torch and this module again
    mp.start_processes(average_on_rank, args=(str(tmp_path / "store"), results), nprocs=2, start_method="fork")
    for rank in (0, 1):
        averaged, untouched = results[rank]
        assert torch.equal(averaged, torch.tensor([[1.5, 3.0]]))  # ((1, 2) + (2, 4)) / 2
        assert torch.equal(untouched, torch.full((1, 2), float(rank)))
