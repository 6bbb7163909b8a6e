"""Does a change keep behaviour? Train each shipped config's smoke run (configs/smoke.yaml merged in) with
one seed on the working tree and on a git revision, and compare the two final checkpoints tensor by tensor.

    OMP_NUM_THREADS=1 python tools/same_weights.py --baseline HEAD~3                  # every shipped config
    OMP_NUM_THREADS=1 python tools/same_weights.py --baseline main --configs alix_atari der_atari
    OMP_NUM_THREADS=1 python tools/same_weights.py --baseline HEAD --configs der_atari \
        --moved replay_priorities=Experience.view

The revision is checked out in a temporary ``git worktree``; each side's ``fit`` runs in a process that
imports that side's package, with the same seed, one torch thread and W&B off. An offline config (CQL)
trains on the smoke run of the online config of its environment (``DATASET_FROM``), made by the same
side with the same seed, so its comparison covers the dataset too. Prints one line per
config: ``equal`` (every tensor of the weights, optimizer states and random states ``torch.equal``), or
the first keys that differ and by how much. Exits 1 if any config differs or fails. ``--moved`` compares
the baseline's tensors under a part of the checkpoint that a refactor moved at their new place.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from smoke_runs import DATASET_FROM, ROOT, last_line, run_smoke, shipped_configs


def smoke_run(tree: Path, config: str, run_dir: Path, seed: int) -> Path:
    """The smoke run of ``config`` with the package of ``tree``; returns its last checkpoint. An offline
    config first makes its dataset: the smoke run of ``DATASET_FROM[config]`` beside ``run_dir``."""
    extra = []
    if config in DATASET_FROM:
        dataset = run_dir.with_name(run_dir.name + "-dataset")
        smoke_run(tree, DATASET_FROM[config], dataset, seed)
        extra = ["--data.dataset", str(dataset)]
    done = run_smoke(tree, config, run_dir, seed, dict(WANDB_MODE="disabled", OMP_NUM_THREADS="1"), extra)
    if done.returncode != 0:
        raise RuntimeError(last_line(done))
    return run_dir / "checkpoints" / "last.ckpt"


def tensors(value, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor inside a checkpoint's nested dicts and lists, by a dotted path."""
    if torch.is_tensor(value):
        return {prefix: value}
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    out = {}
    for key, item in items:
        out |= tensors(item, f"{prefix}.{key}" if prefix else str(key))
    return out


def moved(paths: dict[str, torch.Tensor], renames: dict[str, str]) -> dict[str, torch.Tensor]:
    """``paths`` with each prefix ``old`` of ``renames`` written as its ``new``: where a refactor moved a
    part of the checkpoint (``--moved old=new``), the baseline's tensors are compared at their new place."""
    def renamed(key: str) -> str:
        for old, new in renames.items():
            if key == old or key.startswith(old + "."):
                return new + key[len(old):]
        return key
    return {renamed(key): value for key, value in paths.items()}


def differences(before: Path, now: Path, renames: dict[str, str] | None = None) -> list[str]:
    """What differs between two checkpoints' tensors (missing keys, shapes, values); empty if all equal."""
    a = moved(tensors(torch.load(before, map_location="cpu", weights_only=False)), renames or {})
    b = tensors(torch.load(now, map_location="cpu", weights_only=False))
    out = [f"{k}: only in the baseline" for k in sorted(a.keys() - b.keys())]
    out += [f"{k}: only in the working tree" for k in sorted(b.keys() - a.keys())]
    for key in sorted(a.keys() & b.keys()):
        x, y = a[key], b[key]
        if x.shape != y.shape or x.dtype != y.dtype:
            out.append(f"{key}: {tuple(x.shape)} {x.dtype} against {tuple(y.shape)} {y.dtype}")
        elif not torch.equal(x, y):
            gap = (x.double() - y.double()).abs().max().item() if x.is_floating_point() else "values"
            out.append(f"{key}: differs (largest gap {gap})")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True, help="the git revision to compare the working tree with")
    parser.add_argument("--configs", nargs="*", default=None, help="config names (default: every shipped one)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--moved", nargs="*", default=[], metavar="OLD=NEW",
                        help="checkpoint parts a refactor moved, as dotted paths (replay_priorities=Experience.view)")
    args = parser.parse_args()
    renames = dict(item.split("=", 1) for item in args.moved)
    configs = args.configs or shipped_configs()
    failed = False
    with tempfile.TemporaryDirectory() as scratch:
        baseline = Path(scratch) / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(baseline), args.baseline],
                       check=True, capture_output=True)
        try:
            for config in configs:
                try:
                    before = smoke_run(baseline, config, Path(scratch) / f"before-{config}", args.seed)
                    now = smoke_run(ROOT, config, Path(scratch) / f"now-{config}", args.seed)
                except RuntimeError as error:
                    print(f"{config}: failed: {error}", flush=True)
                    failed = True
                    continue
                found = differences(before, now, renames)
                failed |= bool(found)
                print(f"{config}: " + ("equal" if not found else "DIFFERENT\n  " + "\n  ".join(found[:8])), flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline)], capture_output=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
