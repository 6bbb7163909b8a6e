"""The learning tests' runs over several training seeds, to size their pass marks on more than one.

    OMP_NUM_THREADS=1 python tools/learning_seeds.py --seeds 1 2 --out ~/runs/learning_seeds

Runs each learning test's exact ``fit`` command (tests/test_learning.py, tests/test_learning_continuous.py;
their runs are listed in tests/configs/learning_runs.yaml)
with ``--seed_everything <seed>``, one at a time, each into ``<out>/<agent>-s<seed>``; a run that has
already written its final evaluation is skipped, so the command resumes after an interruption. Prints
and writes ``<out>/learning_seeds.md``: each agent's final evaluation return per seed, the random
policy's, and the test's pass mark.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
from pathlib import Path

import yaml

from worldmodels import run_files

ROOT = Path(__file__).resolve().parent.parent
LEARNING_RUNS = yaml.safe_load((ROOT / "tests" / "configs" / "learning_runs.yaml").read_text())  # the tests' runs, as data
DISCRETE_AGENTS, CONTINUOUS_AGENTS = LEARNING_RUNS["discrete"], LEARNING_RUNS["continuous"]

# (agent, fit arguments, pass mark: margin over the random policy's return, the random policy's return
# as the tests compute it: catch -0.77 over 300 games at 44 px, reach about -33)
RUNS = [(f"{name} (catch)", ["--config", "tests/configs/nddqn_catch.yaml", *args], 0.4)
        for name, args in DISCRETE_AGENTS.items()]
RUNS.append(("DreamerV3 (catch)", ["--config", "tests/configs/dreamer_catch.yaml"], 0.4))
RUNS += [(f"{name} (reach)", ["--config", config], margin) for name, config, margin in CONTINUOUS_AGENTS]
RUNS += [(f"{name} ({task}-states)", ["--config", config], margin) for name, config, margin, task in LEARNING_RUNS["vectors"]]


def final_return(run_dir: Path) -> float | None:
    path = run_dir / run_files.FIRST_CSV / run_files.METRICS_CSV
    if not path.is_file():
        return None
    with path.open(newline="") as f:
        values = [float(r["eval/return_mean"]) for r in csv.DictReader(f) if r.get("eval/return_mean")]
    return values[-1] if values and (run_dir / run_files.FINAL_EVALUATION).is_file() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=Path.home() / "runs" / "learning_seeds")
    parser.add_argument("--only", nargs="*", default=None, help="agents to run (names as in the table)")
    args = parser.parse_args()
    env = dict(os.environ, WANDB_MODE="disabled", PYTHONPATH=str(ROOT))
    results: dict[str, dict[int, float | None]] = {}
    for name, fit_args, margin in RUNS:
        if args.only and name not in args.only:
            continue
        for seed in args.seeds:
            run_dir = args.out / f"{name.split()[0]}-{name.split()[1][1:-1]}-s{seed}"
            if final_return(run_dir) is None:
                if run_dir.exists():
                    import shutil

                    shutil.rmtree(run_dir)  # an unfinished run starts again: the tests run from scratch
                argv = [str(ROOT / a) if a.startswith("tests/configs/") else a for a in fit_args]
                done = subprocess.run([sys.executable, "-m", "worldmodels.fit", *argv, "--seed_everything", str(seed),
                                       "--run_dir", str(run_dir)], cwd=ROOT, env=env, capture_output=True, text=True)
                if done.returncode != 0:
                    print(f"{name} seed {seed} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
            results.setdefault(name, {})[seed] = final_return(run_dir)
            print(f"{name} seed {seed}: {results[name][seed]}", flush=True)
    lines = ["| agent | " + " | ".join(f"seed {s}" for s in args.seeds) + " |",
             "|---|" + "---|" * len(args.seeds)]
    for name, by_seed in results.items():
        lines.append(f"| {name} | " + " | ".join("-" if v is None else f"{v:.2f}" for v in by_seed.values()) + " |")
    table = "\n".join(lines)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "learning_seeds.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
