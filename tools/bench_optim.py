"""The optimizer-side work of one DreamerV3 update, per-parameter Python loops against torch._foreach_*.

    OMP_NUM_THREADS=1 python tools/bench_optim.py [--size S] [--steps 50] [--repeats 5] [--device cpu]

On DreamerV3's parameter lists at ``--size`` (world model, actor, critic: the three optimizers that
``configure_optimizers`` makes, with random gradients), times per update:

    laprop  three LaProp steps          the loop below (a plain per-parameter LaProp) vs
                                        worldmodels.training.optim.LaProp (foreach)
    agc     adaptive gradient clipping  of the three lists: loop vs adaptive_clip_grad_
    ema     the slow critic's EMA       loop of lerp_ vs worldmodels.nets.ema.ema_update_

Each side runs ``--steps`` steps after a warm-up, alternately ``--repeats`` times; medians (and the
fastest repeat) are printed in ms per update: this process's CPU time on the CPU (run it with
OMP_NUM_THREADS=1: wall time on a shared machine counts the other processes), wall time after a
device sync on an accelerator. Before timing,
one step of each side is checked to give the same parameters and gradients.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from worldmodels.dreamer import DreamerV3
from worldmodels.nets.ema import ema_update_
from worldmodels.training import EnvSpec
from worldmodels.training.optim import LaProp, adaptive_clip_grad_


class LoopLaProp(torch.optim.Optimizer):
    """LaProp as a per-parameter loop, the peer of the foreach implementation."""

    def __init__(self, params, lr: float = 4e-5, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-20,
                 warmup: int = 1000):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, warmup=warmup))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                rms = (v / (1 - beta2 ** t)).sqrt_().add_(group["eps"])
                m.mul_(beta1).add_(p.grad / rms, alpha=1 - beta1)
                lr = group["lr"] * min(1.0, t / group["warmup"]) if group["warmup"] else group["lr"]
                p.add_(m, alpha=-lr / (1 - beta1 ** t))


@torch.no_grad()
def loop_adaptive_clip_grad_(params, clip: float, pmin: float = 1e-3) -> torch.Tensor:
    """Adaptive gradient clipping as a per-tensor loop, the peer of adaptive_clip_grad_."""
    params = [p for p in params if p.grad is not None]
    grad_norms = [torch.linalg.vector_norm(p.grad) for p in params]
    for p, grad_norm in zip(params, grad_norms):
        upper = clip * torch.linalg.vector_norm(p).clamp(min=pmin)
        p.grad.mul_(1.0 / torch.clamp(grad_norm / upper, min=1.0))
    return torch.linalg.vector_norm(torch.stack(grad_norms))


@torch.no_grad()
def loop_ema_(targets, sources, fraction: float) -> None:
    for target, source in zip(targets, sources):
        target.lerp_(source, fraction)


def parameter_lists(size: str, device: str) -> list[list[torch.nn.Parameter]]:
    """World model, actor and critic parameters of DreamerV3 at ``size`` (Atari: 64x64 RGB, 6 actions),
    with random gradients."""
    agent = DreamerV3(size=size, video_every=0)
    agent.build(EnvSpec((3, 64, 64), 3, num_actions=6))
    agent.to(device)
    lists = [list(agent.world_model.parameters()), list(agent.actor.parameters()), list(agent.critic.net.parameters())]
    g = torch.Generator().manual_seed(0)
    for params in lists:
        for p in params:
            # in the parameter's memory format (channels-last convs), as backward makes it
            p.grad = torch.empty_like(p).copy_(torch.randn(p.shape, generator=g) * 1e-2)
    return lists


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def clock(device: str):
    """This process's CPU time on the CPU (with one thread, its wall time less the waits for a core that
    other processes hold on a shared machine); wall time after a device sync on an accelerator."""
    return time.process_time if device == "cpu" else time.perf_counter


def timed(work, steps: int, device: str) -> float:
    """ms per call of ``work`` over ``steps`` calls after one warm-up call."""
    now = clock(device)
    work()
    sync(device)
    start = now()
    for _ in range(steps):
        work()
    sync(device)
    return (now() - start) / steps * 1e3


def copies(lists):
    out = [[torch.nn.Parameter(p.detach().clone()) for p in params] for params in lists]
    for params, originals in zip(out, lists):
        for p, original in zip(params, originals):
            p.grad = original.grad.clone()
    return out


def check_equal(lists) -> None:
    """One step of each side from the same start gives the same parameters and gradients."""
    for side in ("laprop", "agc"):
        a, b = copies(lists), copies(lists)
        if side == "laprop":
            for x in a:
                LoopLaProp(x, eps=1e-8, warmup=1).step()
            for y in b:
                LaProp(y, eps=1e-8, warmup=1).step()
            pairs = [(p, q) for x, y in zip(a, b) for p, q in zip(x, y)]
        else:
            norms = [(loop_adaptive_clip_grad_(x, 0.3), adaptive_clip_grad_(y, 0.3)) for x, y in zip(a, b)]
            for n1, n2 in norms:
                torch.testing.assert_close(n1, n2, rtol=1e-5, atol=0.0)
            pairs = [(p.grad, q.grad) for x, y in zip(a, b) for p, q in zip(x, y)]
        for p, q in pairs:
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="S")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    lists = parameter_lists(args.size, args.device)
    check_equal(lists)
    slow = [p.detach().clone() for p in lists[2]]
    # Warm-up 1000 as in the 2024 spec; the timed steps stay inside it, which changes no kernel count.
    loop_opts = [LoopLaProp(params) for params in lists]
    foreach_opts = [LaProp(params) for params in lists]
    sides = {
        "laprop": (lambda: [o.step() for o in loop_opts], lambda: [o.step() for o in foreach_opts]),
        "agc": (lambda: [loop_adaptive_clip_grad_(p, 0.3) for p in lists],
                lambda: [adaptive_clip_grad_(p, 0.3) for p in lists]),
        "ema": (lambda: loop_ema_(slow, lists[2], 0.02), lambda: ema_update_(slow, lists[2], 0.02)),
    }
    times = {name: ([], []) for name in sides}
    for _ in range(args.repeats):
        for name, (loop, foreach) in sides.items():
            times[name][0].append(timed(loop, args.steps, args.device))
            times[name][1].append(timed(foreach, args.steps, args.device))

    tensors = [len(params) for params in lists]
    numel = sum(p.numel() for params in lists for p in params)
    print(f"DreamerV3-{args.size}: {sum(tensors)} parameter tensors (world model {tensors[0]}, actor {tensors[1]}, "
          f"critic {tensors[2]}), {numel / 1e6:.1f}M parameters; device {args.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s) (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}), "
          f"{platform.processor() or platform.machine()}")
    what = "CPU time" if args.device == "cpu" else "wall time"
    print(f"ms per update ({what}) over {args.steps} steps, median (fastest) of {args.repeats} alternating repeats:")
    print(f"{'':8} {'loop':>17} {'foreach':>17} {'speed-up':>9}")
    for name, (loop, foreach) in times.items():
        a, b = statistics.median(loop), statistics.median(foreach)
        print(f"{name:8} {a:9.2f} ({min(loop):5.2f}) {b:9.2f} ({min(foreach):5.2f}) {a / b:8.2f}x")


if __name__ == "__main__":
    main()
