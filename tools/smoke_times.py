"""How long each shipped config's smoke run takes, from process start to exit, as a user runs it:
``python -m worldmodels.fit --config configs/<name>.yaml --config configs/smoke.yaml`` with torch's
default threads and W&B offline (it writes its run files and encodes the videos, as online).

    python tools/smoke_times.py                            # every shipped config, a markdown table
    python tools/smoke_times.py --configs dreamer_dmc drq_dmc
    python tools/smoke_times.py --configs dreamer_dmc --profile prof/   # cProfile of each, top entries

Also times the package's import alone (``python -c "import worldmodels.fit"``), the floor every run
pays. An offline config (CQL) is timed alone; its dataset, the smoke run of the online config of its
environment, is made first and not counted. Prints the load average before each run: the figures mean
something only on a machine with nothing else running.
"""

from __future__ import annotations

import argparse
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from smoke_runs import DATASET_FROM, ROOT, last_line, run_smoke, shipped_configs, smoke_command

ENV = dict(WANDB_MODE="offline")


def timed(call) -> tuple[float, object]:
    start = time.perf_counter()
    out = call()
    return time.perf_counter() - start, out


def import_seconds() -> float:
    seconds, done = timed(lambda: subprocess.run([sys.executable, "-c", "import worldmodels.fit"], cwd=ROOT,
                                                 env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True))
    if done.returncode != 0:
        sys.exit(f"error: importing worldmodels.fit failed: {done.stderr.decode().strip().splitlines()[-1]}")
    return seconds


def profile_summary(path: Path, top: int = 12) -> str:
    """The entries of the project's and Lightning's code with the most cumulative time."""
    stats = pstats.Stats(str(path))
    rows = [(cum, f"{Path(file).name}:{line}({name})") for (file, line, name), (_, _, _, cum, _) in stats.stats.items()
            if "/worldmodels/" in file or "/model_free/" in file]
    return "\n".join(f"    {cum:7.1f} s  {where}" for cum, where in sorted(rows, reverse=True)[:top])


def smoke(config: str, run_dir: Path, extra: list[str], profile: Path | None) -> subprocess.CompletedProcess:
    """One smoke run; under cProfile, writing ``profile``, where given (slower: compare profiled runs with
    each other only)."""
    if profile is None:
        return run_smoke(ROOT, config, run_dir, 0, ENV, extra)
    command = smoke_command(ROOT, config, run_dir, 0, extra)
    command[1:3] = ["-m", "cProfile", "-o", str(profile), "-m", "worldmodels.fit"]
    return subprocess.run(command, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT), **ENV),
                          capture_output=True, text=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="*", default=None, help="config names (default: every shipped one)")
    parser.add_argument("--profile", type=Path, default=None, help="folder for a cProfile of each run")
    args = parser.parse_args()
    configs = args.configs or shipped_configs()
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    print(f"import worldmodels.fit: {import_seconds():.1f} s", flush=True)
    print("| config | seconds | load average before | result |\n|---|---:|---:|---|", flush=True)
    failed = False
    with tempfile.TemporaryDirectory() as scratch:
        for config in configs:
            extra = []
            if config in DATASET_FROM:
                dataset = Path(scratch) / f"{config}-dataset"
                run_smoke(ROOT, DATASET_FROM[config], dataset, 0, ENV)
                extra = ["--data.dataset", str(dataset)]
            profile = None if args.profile is None else args.profile.resolve() / f"{config}.prof"
            load = os.getloadavg()[0]
            seconds, done = timed(lambda: smoke(config, Path(scratch) / config, extra, profile))
            result = "ok" if done.returncode == 0 else f"failed: {last_line(done)}"
            failed |= done.returncode != 0
            print(f"| {config} | {seconds:.0f} | {load:.2f} | {result} |", flush=True)
            if profile is not None and done.returncode == 0:
                print(profile_summary(profile), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
