"""The GPU figures of BENCHMARKS.md in one command, a few minutes on one GPU:

    python tools/gpu_figures.py --out gpu_figures.json                      # on a GPU machine
    python tools/gpu_figures.py --device cpu --size XS --updates 1 --env-steps 40   # a dry run on a CPU

For DreamerV3 (Atari 64x64 RGB, 6 actions, batch 16 x 64) in fp32, bf16-mixed, bf16-mixed with
``--compile parts`` and bf16-mixed with ``--compile full`` (the whole update, CUDA graphs): gradient
updates per second, peak GPU memory, host syncs in one update whose metrics are not logged
(``torch.cuda.set_sync_debug_mode("warn")`` reports each), and env steps per second of the whole loop
(Pong, ``Experience`` with the agent acting and training at train ratio 1024, after its warm-up).
DrQ-v2's updates per second at batch 256. Each result is printed as it comes and written to ``--out``,
so a run cut short keeps what it measured. DDP on two GPUs is ``tests/test_ddp.py``'s runs with
``--trainer.accelerator gpu``, when a machine has two.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_dreamer import random_batch  # noqa: E402
from bench_model_free import ours, random_batch as transition_batch  # noqa: E402


def synchronized(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def dreamer(size: str, device: str, precision: str, compile_: str | None, updates: int) -> dict:
    from worldmodels.dreamer import DreamerV3
    from worldmodels.training import EnvSpec

    agent = DreamerV3(size=size, video_every=0)
    agent.build(EnvSpec((3, 64, 64), 3, num_actions=6))  # as bench_dreamer.py: Pong, 64x64 RGB
    agent.to(device)
    optimizers = agent.configure_optimizers()
    agent.optimizers = lambda: optimizers
    agent.manual_backward = lambda loss: loss.backward()
    agent.logs_now = lambda: False  # the updates whose metrics are not logged: most of them
    agent.log_scalars = lambda metrics: None
    if compile_:
        from worldmodels.training.compile import compile_agent

        compile_agent(agent, compile_)
    batch = {k: v.to(device) for k, v in random_batch(16, 64, 6).items()}
    autocast = torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16,
                              enabled=precision == "bf16-mixed", cache_enabled=False)

    def update():
        with autocast:
            agent.training_step(batch, 0)

    start = time.perf_counter()
    update()
    synchronized(device)
    first = time.perf_counter() - start
    syncs = None
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            update()
            torch.cuda.set_sync_debug_mode("default")
        syncs = sum("synchroniz" in str(w.message) for w in caught)
    synchronized(device)
    start = time.perf_counter()
    for _ in range(updates):
        update()
    synchronized(device)
    seconds = (time.perf_counter() - start) / updates
    return {"updates_per_second": 1 / seconds, "first_update_seconds": first, "host_syncs_per_update": syncs,
            "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None,
            "agent": agent}


def env_steps_per_second(agent, device: str, precision: str, env_steps: int) -> float:
    """The whole loop on Pong: the agent acts on the device, the updates run at its train ratio."""
    from worldmodels.envs import EnvConfig
    from worldmodels.training import Experience

    warmup = 1024
    data = Experience(EnvConfig("atari", "pong", preset="world_model"), total_env_steps=warmup + env_steps,
                      warmup_steps=warmup, replay_capacity=warmup + env_steps + 10, progress_bar=False)
    data.setup("fit")
    autocast = torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16,
                              enabled=precision == "bf16-mixed", cache_enabled=False)
    start = steps = None
    for batch in data.batches(agent):
        if start is None:  # the first update comes after the warm-up
            synchronized(device)
            start, steps = time.perf_counter(), data.counters.env_steps
        with autocast:
            agent.training_step({k: v.to(device, non_blocking=True) for k, v in batch.items()}, 0)
    synchronized(device)
    data.teardown("fit")
    return (data.counters.env_steps - steps) / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", default="S")
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--env-steps", type=int, default=2000, help="env steps after the warm-up, per loop measurement")
    parser.add_argument("--out", type=Path, default=Path("gpu_figures.json"))
    args = parser.parse_args()
    device = args.device
    results = {"device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
               "torch": torch.__version__, "size": args.size}

    def record(key, value):
        results[key] = value
        print(json.dumps({key: value}), flush=True)
        args.out.write_text(json.dumps(results, indent=2))

    for precision, compile_ in [("32", None), ("bf16-mixed", None), ("bf16-mixed", "parts"), ("bf16-mixed", "full")]:
        name = f"dreamer_{precision}" + {None: "", "parts": "_compiled", "full": "_compiled_full"}[compile_]
        figures = dreamer(args.size, device, precision, compile_, args.updates)
        agent = figures.pop("agent")
        record(name, figures)
        record(name + "_env_steps_per_second", env_steps_per_second(agent, device, precision, args.env_steps))
        del agent
        if device.startswith("cuda"):
            torch.cuda.empty_cache()

    agent = ours("model_free.DrQv2", batch_size=256).to(device)
    batch = {k: v.to(device) for k, v in transition_batch(256).items()}
    agent.training_step(batch, 0)
    synchronized(device)
    start = time.perf_counter()
    for i in range(args.updates):
        agent.counters.updates = i + 1
        agent.training_step(batch, i + 1)
    synchronized(device)
    record("drqv2_batch256_updates_per_second", args.updates / (time.perf_counter() - start))


if __name__ == "__main__":
    main()
