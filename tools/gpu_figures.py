"""The GPU figures of BENCHMARKS.md in one command, a few minutes on one GPU:

    python tools/gpu_figures.py --out gpu_figures.json                      # on a GPU machine
    python tools/gpu_figures.py --sheeprl-python /opt/sheeprl/bin/python     # with sheeprl's peer update too
    python tools/gpu_figures.py --device cpu --size XS --updates 1 --env-steps 40 --fit-env-steps 0 \
        --compile-backend aot_eager                                        # a dry run of the logic on a CPU

For DreamerV3 (Atari 64x64 RGB, 6 actions, batch 16 x 64), eager and ``--compile full`` (the whole update,
CUDA graphs), each in fp32 and bf16-mixed, with TF32 and cuDNN's autotuner on as ``worldmodels.fit`` sets
them: milliseconds per gradient update; peak allocated and reserved GPU memory; a profiler pass over a
few updates giving CUDA kernels per update and the GPU-busy fraction (the kernels' summed time over the
wall time); host syncs over whole loop steps (acting, replay sampling and the updates owed:
``torch.cuda.set_sync_debug_mode("warn")`` reports each); and env steps per second of the loop
(Pong, ``Experience`` acting and training at train ratio 512, after its warm-up). Then the loop
through ``worldmodels.fit`` itself: two runs of ``configs/dreamer_atari.yaml`` at train ratio 512 that
differ only in their env-step budget (``--fit-env-steps`` apart), whose difference in wall time gives
env steps per second without start-up, compilation or the final evaluation. DrQ-v2's updates per second at
batch 256. sheeprl 0.8.4's DreamerV3-S update on the same GPU (``tools/sheeprl_dreamer_peer.py`` run by
``--sheeprl-python``, sheeprl's own environment). Each result is printed as it comes and written to
``--out``, so a run cut short keeps what it measured. DDP on two GPUs is ``tests/test_ddp.py``'s runs with
``--trainer.accelerator gpu``, when a machine has two.

A device machine without internet and without some of the packages (torchrl, tensordict, gymnasium,
ale-py, dm_control, mujoco, wandb): build their wheels where the package index is reachable, with the
same Python version, and carry them over with the repository:

    pip download --only-binary=:all: --python-version 3.11 -d wheels "torchrl>=0.14,<0.15" "tensordict>=0.14,<0.15" \
        "gymnasium>=1.1" "ale-py>=0.10" "dm_control>=1.0.50" "mujoco>=3.17,<4" "wandb[media]"
    # on the device machine, beside its own torch:
    pip install --no-index --find-links wheels --no-deps wheels/*.whl && pip install --no-deps -e .
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from bench_dreamer import random_batch  # noqa: E402
from bench_model_free import ours, random_batch as transition_batch  # noqa: E402


def synchronized(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def dreamer(size: str, device: str, precision: str, compile_: str | None, updates: int, backend: str | None) -> dict:
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

        compile_agent(agent, compile_, **({"backend": backend} if backend else {}))
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
    on_gpu = device.startswith("cuda")
    return {"ms_per_update": 1000 * seconds, "first_update_seconds": first, "host_syncs_per_update": syncs,
            "peak_allocated_mb": torch.cuda.max_memory_allocated() / 2**20 if on_gpu else None,
            "peak_reserved_mb": torch.cuda.max_memory_reserved() / 2**20 if on_gpu else None,
            **(kernels_and_busy(update, device) if on_gpu else {}), "agent": agent}


def kernels_and_busy(update, device: str, updates: int = 3) -> dict:
    """A profiler pass over ``updates`` updates: CUDA kernels launched per update, and the fraction of the
    wall time the GPU spent in kernels (their summed durations; overlapping kernels would count twice,
    which one stream does not run)."""
    from torch.profiler import ProfilerActivity, profile

    synchronized(device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        start = time.perf_counter()
        for _ in range(updates):
            update()
        synchronized(device)
        wall = time.perf_counter() - start
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    busy = sum(e.device_time for e in kernels) / 1e6  # microseconds
    return {"kernels_per_update": len(kernels) / updates, "gpu_busy_fraction": busy / wall}


def loop_figures(agent, device: str, precision: str, env_steps: int) -> dict:
    """The whole loop on Pong: the agent acts on the device, the updates run at train ratio 512 (the
    agent's ``updates_per_env_step`` set to it); env steps per second after the warm-up, and host syncs
    over the first 50 loop steps after it, acting and sampling included (the loop's own copies and the
    updates; Lightning's hooks are not in this loop, ``--fit-env-steps`` measures with them)."""
    from worldmodels.envs import EnvConfig
    from worldmodels.training import Experience

    warmup = 1024
    agent.updates_per_env_step = 512 / (16 * 64)  # train ratio: replayed steps per env step
    data = Experience(EnvConfig("atari", "pong", preset="world_model"), total_env_steps=warmup + env_steps,
                      warmup_steps=warmup, replay_capacity=warmup + env_steps + 10, progress_bar=False)
    data.setup("fit")
    autocast = torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16,
                              enabled=precision == "bf16-mixed", cache_enabled=False)
    on_gpu = device.startswith("cuda")
    start = steps = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for batch in data.batches(agent):
            if start is None:  # the first update comes after the warm-up
                synchronized(device)
                start, steps = time.perf_counter(), data.counters.env_steps
                if on_gpu:
                    torch.cuda.set_sync_debug_mode("warn")
            if on_gpu and data.counters.env_steps - steps >= 50:
                torch.cuda.set_sync_debug_mode("default")
            with autocast:
                agent.training_step(data.transfer_batch_to_device(batch, torch.device(device), 0), 0)
    if on_gpu:
        torch.cuda.set_sync_debug_mode("default")
    synchronized(device)
    seconds = time.perf_counter() - start
    data.teardown("fit")
    syncs = sum("synchroniz" in str(w.message) for w in caught) if on_gpu else None
    return {"env_steps_per_second": (data.counters.env_steps - steps) / seconds, "host_syncs_per_50_loop_steps": syncs}


def fit_env_steps_per_second(device: str, precision: str, compile_: str | None, extra_steps: int) -> float:
    """Env steps per second of ``worldmodels.fit`` itself on ``configs/dreamer_atari.yaml`` at train ratio
    512: the wall-time difference of two runs whose budgets differ by ``extra_steps`` (no evaluation,
    no checkpoint, W&B off), so that start-up and compilation cancel out."""
    warmup = 1024

    def wall(total: int) -> float:
        with tempfile.TemporaryDirectory() as run_dir:
            command = [sys.executable, "-m", "worldmodels.fit", "--config", str(ROOT / "configs/dreamer_atari.yaml"),
                       "--model.init_args.train_ratio", "512", "--data.total_env_steps", str(total),
                       "--data.warmup_steps", str(warmup), "--data.progress_bar", "false",
                       "--evaluation.every_env_steps", "0", "--evaluation.final_episodes", "0",
                       "--checkpoint.every_env_steps", "0", "--trainer.precision", precision,
                       "--trainer.accelerator", "gpu" if device.startswith("cuda") else "cpu",
                       "--run_dir", f"{run_dir}/run"] + (["--compile", compile_] if compile_ else [])
            start = time.perf_counter()
            subprocess.run(command, cwd=ROOT, check=True, capture_output=True,
                           env=dict(os.environ, WANDB_MODE="disabled", PYTHONPATH=str(ROOT)))
            return time.perf_counter() - start

    short = wall(warmup + 200)
    return extra_steps / (wall(warmup + 200 + extra_steps) - short)


def sheeprl_ms_per_update(python: str, device: str, updates: int) -> dict:
    """sheeprl 0.8.4's DreamerV3-S update (``tools/sheeprl_dreamer_peer.py``), run by its own interpreter."""
    accelerator = "cuda" if device.startswith("cuda") else "cpu"
    done = subprocess.run([python, str(HERE / "sheeprl_dreamer_peer.py"), "--updates", str(updates),
                           "--override", f"fabric.accelerator={accelerator}"], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", default="S")
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--env-steps", type=int, default=2000, help="env steps after the warm-up, per loop measurement")
    parser.add_argument("--fit-env-steps", type=int, default=2000,
                        help="env steps between the two fit runs of the loop measured through fit (0: skip it)")
    parser.add_argument("--sheeprl-python", default=None, help="sheeprl's interpreter, for its peer update")
    parser.add_argument("--compile-backend", default=None,
                        help="torch.compile backend (default inductor; aot_eager for a quick dry run of the logic)")
    parser.add_argument("--out", type=Path, default=Path("gpu_figures.json"))
    args = parser.parse_args()
    from worldmodels.fit import fast_cuda_kernels

    fast_cuda_kernels()  # TF32 and cuDNN's autotuner, as a run sets them
    device = args.device
    results = {"device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
               "torch": torch.__version__, "size": args.size}

    def record(key, value):
        results[key] = value
        print(json.dumps({key: value}), flush=True)
        args.out.write_text(json.dumps(results, indent=2))

    for precision, compile_ in [("32", None), ("32", "full"), ("bf16-mixed", None), ("bf16-mixed", "full")]:
        name = f"dreamer_{precision}" + ("_compiled_full" if compile_ else "_eager")
        figures = dreamer(args.size, device, precision, compile_, args.updates, args.compile_backend)
        agent = figures.pop("agent")
        record(name, figures)
        record(name + "_loop", loop_figures(agent, device, precision, args.env_steps))
        del agent
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
        if args.fit_env_steps and args.size == "S":
            record(name + "_fit_env_steps_per_second",
                   fit_env_steps_per_second(device, precision, compile_, args.fit_env_steps))
    if args.sheeprl_python:
        record("sheeprl_dreamer_v3_S", sheeprl_ms_per_update(args.sheeprl_python, device, args.updates))

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
