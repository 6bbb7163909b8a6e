import contextlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from fork_server import ForkServer

ROOT = Path(__file__).resolve().parent.parent

# No account, no network: W&B writes offline runs; MuJoCo renders headless.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("MUJOCO_GL", "egl")

# Under pytest-xdist (`make test` runs `-n 2`) each worker gets one core: one thread per process, in
# the workers and in the training runs they start, instead of every process fighting for both cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def run_fit(*args: str, cwd: Path, timeout: int = 2400) -> subprocess.CompletedProcess:
    """``python -m worldmodels.fit`` in ``cwd`` (runs/ goes there), configs resolved from the repo.
    ``timeout`` guards against a hung run; it is no speed target: a learning run budgeted at a few minutes
    of one core takes up to four times that on the slower machines of the kind the suite runs on."""
    argv = [str(ROOT / a) if a.startswith(("configs/", "tests/configs/")) else a for a in args]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return FORK_SERVER.run(["-m", "worldmodels.fit", *argv], cwd=cwd, env=env, timeout=timeout)


# Training runs start as forks of one process that has imported the pipeline (tests/fork_server.py),
# which saves each run the seconds of its imports; runs a fork cannot serve get a new interpreter.
FORK_SERVER = ForkServer()


def pytest_sessionfinish():  # pytest passes the arguments a hook names; this one needs none
    FORK_SERVER.close()


class ConstantPolicy:
    """An agent's acting interface that always plays ``action``: scripted play for loop and env tests."""

    device = torch.device("cpu")

    def __init__(self, action: int = 0):
        self.action = action

    def acting(self):
        return contextlib.nullcontext()

    def initial_state(self, n):
        return None

    def act(self, obs, state, first, explore):
        return torch.full((obs.shape[0],), self.action, dtype=torch.int64), state


def differences(saved, again, path="") -> list[str]:
    """The paths at which two checkpoint trees differ (tensors compared exactly)."""
    if isinstance(saved, dict):
        keys = set(saved) | set(again)
        return [d for k in sorted(keys, key=str)
                for d in ([f"{path}/{k} missing"] if k not in saved or k not in again
                          else differences(saved[k], again[k], f"{path}/{k}"))]
    if isinstance(saved, (list, tuple)):
        if len(saved) != len(again):
            return [f"{path} length"]
        return [d for i, (a, b) in enumerate(zip(saved, again)) for d in differences(a, b, f"{path}[{i}]")]
    if isinstance(saved, torch.Tensor):
        return [] if saved.shape == again.shape and torch.equal(saved, again) else [path]
    if isinstance(saved, float) and isinstance(again, float) and saved != saved and again != again:
        return []  # NaN on both sides: the same unset value
    return [] if saved == again else [path]


def made_once(tmp_path_factory, name: str, make: Callable[[Path], None]) -> Path:
    """The folder ``name``, filled by ``make(folder)`` once per pytest run, for all its pytest-xdist workers:
    the first to ask makes it under a file lock, the others (and later calls) wait and read it. For the
    runs that several tests only read (a module fixture would make one per worker)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # above every worker's own folder
    folder, done = shared / name, shared / f"{name}.done"
    with FileLock(shared / f"{name}.lock"):
        if not folder.exists():
            folder.mkdir()
            make(folder)  # raises when the run fails: no done marker, and the other workers say so
            done.touch()
    if not done.exists():
        pytest.fail(f"{name} was made by another worker and failed there: see its error")
    return folder


@pytest.fixture
def fit(tmp_path):
    return lambda *args, **kw: run_fit(*args, cwd=tmp_path, **kw)


# The longest tests first, so that the two xdist workers share them instead of one worker finishing
# the suite alone on the last long test (longest-first scheduling): the learning runs, dearest first
# (each says its rough cost in minutes of one core: ``pytest.mark.learning(minutes=...)``), then the
# shipped-config runs, then the rest.
def _cost_rank(item) -> tuple[int, float]:
    learning = item.get_closest_marker("learning")
    if learning:
        return 0, -learning.kwargs.get("minutes", 2)
    return (1 if item.get_closest_marker("integration") else 2), 0


def pytest_collection_modifyitems(config, items):
    # Opt-in runs (``long``) are deselected unless -m names them (a plain run's summary counts them as
    # deselected; under xdist the workers deselect them and the summary does not say so).
    if "long" not in (config.option.markexpr or ""):
        opt_in = [item for item in items if item.get_closest_marker("long")]
        if opt_in:
            config.hook.pytest_deselected(items=opt_in)
            items[:] = [item for item in items if not item.get_closest_marker("long")]
    items.sort(key=_cost_rank)  # stable: each group keeps its file order
