"""The contract between an agent and the shared loop: everything the infrastructure calls on an agent
is declared here, abstract or with a documented default, so no caller probes an agent with getattr.

An agent is a LightningModule with manual optimization that
- builds its networks once the environment is known (``build``),
- acts on a batch of uint8 observations, carrying an optional recurrent state (``act``),
- names the replay view it learns from (``replay_view``) and how many updates it wants per
  environment step (``updates_per_env_step``, ``warmup_burst``, ``random_warmup``),
- learns from one sampled batch per ``training_step``,
- and may declare what ``compile`` compiles (``compiled_modules``, ``update_regions``), its discount
  (``discount``, for the health diagnostics) and its health metrics (``health``). An update may run
  several backward passes, each reaching part of the weights: several processes average each pass's
  gradients (``worldmodels.training.ddp``).
The loop (``worldmodels.training.loop``) owns environments, replay and the run's clock; it never looks
inside an agent, and the agent reads the clock (``clock``) only to run its schedules.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable

import lightning as L
import torch
from torch import nn

from worldmodels.errors import ConfigError
from worldmodels.nets.draws import DeviceStream
from worldmodels.training.clock import RunClock
from worldmodels.training.counters import Counters
from worldmodels.training.distributed import gather_objects, rank, rank_seed
from worldmodels.training.guard import FiniteWatch
from worldmodels.training.log_cadence import logs_this_step
from worldmodels.training.spec import EnvSpec


class Agent(L.LightningModule):
    # The loop fills the replay with uniform random actions before the first update; an agent that
    # explores its own way from the first step (Dopamine's noisy-net agents) sets this False.
    random_warmup: bool = True
    # Whether the loop owes, once the warm-up ends, the updates of the warm-up's steps at once (ratio x
    # warm-up steps, then the ratio per step): SAC+AE's code makes init_steps updates when its seed
    # steps end (denisyarats/pytorch_sac_ae train.py lines 223-226, commit 7fa560e). Off for the others.
    warmup_burst: bool = False

    def __init__(self, updates_per_env_step: float = 1.0):
        super().__init__()
        self.automatic_optimization = False
        self.updates_per_env_step = updates_per_env_step
        self.clock = RunClock()  # the loop's, once attached: schedules read its env steps and warm-up
        self.spec: EnvSpec | None = None
        self.finite_watch = FiniteWatch()

    # -------------------------------------------------------------- to implement
    def build(self, spec: EnvSpec) -> None:
        """Create the networks for this environment. Subclasses call ``super().build(spec)`` first."""
        self.spec = spec

    def replay_view(self):
        """The replay view whose batches ``training_step`` expects (SequenceView or TransitionView)."""
        raise NotImplementedError

    def act(self, obs: torch.Tensor, state: Any, first: torch.Tensor, explore: bool) -> tuple[torch.Tensor, Any]:
        """Actions for observations ``obs`` (N, k*C, H, W) uint8 on this module's device. ``first``
        (N,) marks observations that start an episode: a recurrent agent resets its state there.
        ``explore`` is True while collecting training data, False for the evaluation policy."""
        raise NotImplementedError

    def initial_state(self, num_envs: int) -> Any:
        """Recurrent state before the first step; feed-forward agents have none."""
        return None

    def compiled_modules(self) -> dict[str, nn.Module | Callable[..., Any]] | None:
        """The parts ``compile: true`` compiles (``worldmodels.training.compile``), by name: modules, or
        methods of modules. None, this default: the agent does not support compilation, and a run that
        asks for it is refused; an empty dict: nothing to compile as configured (refused too)."""
        return None

    def update_regions(self) -> dict[str, Callable[..., Any]] | None:
        """The pure functions of the update that ``compile: full`` compiles whole, by name: methods of
        modules (``worldmodels.training.compile``). None, this default: the agent's update cannot be
        compiled whole, and a run that asks for it is refused."""
        return None

    @property
    def discount(self) -> float | None:
        """The discount per env step of the agent's returns, which the health diagnostics' Monte-Carlo
        return uses. Default: the ``gamma`` hyperparameter (saved by ``save_hyperparameters``), which
        every shipped agent takes; None when there is none, and then the health check cannot run."""
        gamma = self.hparams.get("gamma")
        return None if gamma is None else float(gamma)

    def health(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor | float]:
        """Training-health metrics (``worldmodels.diagnostics.signals``) on a held batch, named without
        the ``health/`` prefix; an empty dict means the agent computes none.

        ``batch`` is what ``replay_view().sample`` returns, drawn by the ``Health`` callback (more
        samples than a training batch, redrawn rarely) and extended with ``mc_return`` (discounted
        Monte-Carlo return-to-go of each sampled state, from the stored rewards of its episode) and
        ``mc_valid`` (True where that return is complete: see ``worldmodels.training.health``).
        Called between training steps with the random generators forked and reseeded, so it must
        not change parameters or optimizer state; gradients it needs go through
        ``torch.autograd.grad`` rather than ``backward``."""
        return {}

    # -------------------------------------------------------------- shared helpers
    def attach_loop(self, clock: RunClock) -> None:
        """Called by the loop: schedules (epsilon, stddev) run on its clock."""
        self.clock = clock

    @property
    def counters(self) -> Counters:
        """The run's counters (``clock.counters``): env steps for exploration schedules, updates for
        target syncs and logging cadences."""
        return self.clock.counters

    @property
    def warmup_steps(self) -> int:
        """The loop's random warm-up: exploration schedules start after it."""
        return self.clock.warmup_steps

    @contextmanager
    def acting(self):
        """No gradients and evaluation mode (A-LIX mixing, dropout off) while the agent acts."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            self.train(was_training)

    def begin_update(self) -> None:
        """Marks a new update for CUDA graphs (``--compile full`` on a GPU): the last update's graph
        outputs may be overwritten from here on. A no-op elsewhere, where it is skipped: the first call of
        ``torch.compiler.cudagraph_mark_step_begin`` imports torch's inductor (about 1.3 s of a core)."""
        if self.device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()

    def logs_now(self) -> bool:
        """Whether this training step's metrics are written (``logs_this_step``; outside a Trainer,
        always): an update can skip computing what only its metrics would show."""
        return self._trainer is None or logs_this_step(self.trainer)

    def log_scalars(self, metrics: dict[str, float | torch.Tensor]) -> None:
        """Log training metrics, on the steps whose metrics Lightning writes (``logs_this_step``); on
        every step, fold their finiteness into the numerical guard's flags (``training/guard.py``)."""
        self.finite_watch.observe(metrics, self.counters.updates)
        if not self.logs_now():
            return
        self.log_dict({k: v.detach() if torch.is_tensor(v) else v for k, v in metrics.items()}, on_step=True, on_epoch=False)

    def _generators(self) -> dict[str, torch.Generator | DeviceStream]:
        return {name: g for name, g in vars(self).items() if isinstance(g, (torch.Generator, DeviceStream))}

    @contextmanager
    def generators_forked(self):
        """The agent's own generators as they were before the block: draws made inside (health
        diagnostics) leave training's random streams untouched."""
        states = {name: g.get_state() for name, g in self._generators().items()}
        try:
            yield
        finally:
            for name, generator in self._generators().items():
                generator.set_state(states[name])

    def setup(self, stage: str) -> None:
        """On several processes the agent's own generators (exploration, augmentation) take this rank's
        seed, as the loop's do: the ranks must not explore alike. (A resume then restores them.)"""
        if self._trainer is not None and self.trainer.world_size > 1:
            for generator in self._generators().values():
                generator.manual_seed(rank_seed(generator.initial_seed(), self.trainer.global_rank))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        states = {name: g.get_state() for name, g in self._generators().items()}
        # Lightning writes rank 0's checkpoint: every rank's generators go into it.
        several = self._trainer is not None and self.trainer.world_size > 1
        checkpoint["agent_generators"] = {"ranks": gather_objects(states)} if several else states

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Restore the agent's own random generators (exploration); refuse a checkpoint made for other networks with one sentence naming the first mismatch."""
        saved, ours = checkpoint.get("state_dict", {}), self.state_dict()
        for key, value in ours.items():
            if key not in saved:
                raise ConfigError(f"the checkpoint has no '{key}': it was made by another agent or configuration; "
                                  "resume with the config it was trained with.")
            if tuple(saved[key].shape) != tuple(value.shape):
                raise ConfigError(f"the checkpoint's '{key}' has shape {tuple(saved[key].shape)} but this agent's has "
                                  f"{tuple(value.shape)}; resume with the config it was trained with.")
        saved = checkpoint.get("agent_generators", {})
        if "ranks" in saved:  # the data module refuses a checkpoint of another number of processes
            saved = saved["ranks"][rank()] if rank() < len(saved["ranks"]) else {}
        for name, generator in self._generators().items():
            if name in saved:
                generator.set_state(saved[name])
