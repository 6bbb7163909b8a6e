"""Training health: every N updates, the agent's diagnostics on a held replay batch, logged as
``health/<name>``, and one-line warnings when a signal crosses a threshold from the papers cited in
``worldmodels.diagnostics.signals``.

The held batch is drawn from the agent's own replay view with a generator of its own (training
batches are unchanged), with ``HELD_TRANSITIONS`` transitions for a transition view (srank can
never exceed the number of rows) or the view's own B x T for a sequence view. It is kept for
``refresh_every`` checks, so consecutive checks compare the network on the same states, then
redrawn so it follows the replay as it fills (and picks up episodes that have ended since).

Each state of the held batch gets its discounted Monte-Carlo return-to-go from the stored rewards
of its episode (``return_to_go``). ``mc_valid`` marks the states whose return is known: the
episode ended inside the replay (terminal or truncated: a time limit cuts the return there, which
makes Q - return too high by at most gamma^m V for a state m steps before the limit; the warning
watches the growth of the gap, not its level), or it ran on for ``effective_horizon(gamma)``
stored steps, after which the remaining discount weight is below 1e-3. States of episodes still
running at the write head are left out rather than compared with a partial return.
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path

import torch

from worldmodels import run_files
from worldmodels.diagnostics.signals import discounted_returns, effective_horizon
from worldmodels.envs.observations import map_obs
from worldmodels.errors import ConfigError
from worldmodels.replay import Replay, TransitionView
from worldmodels.training.agent import Agent
from worldmodels.training.clock import LoopCallback
from worldmodels.training.distributed import this_process_only
from worldmodels.training.guard import check_finite_first

HELD_TRANSITIONS = 256

# Warning thresholds: rank collapse (Kumar et al. 2021, arXiv 2010.14498), the ND score (Cetin et al. 2022,
# "Stabilizing Off-Policy Deep Reinforcement Learning from Pixels", arXiv 2207.00986, its DMC code's target).
RANK_COLLAPSE_FRACTION = 0.5  # srank below this fraction of its peak in the run (Kumar et al.)
ND_TARGET = 0.535  # A-LIX's target ND score of the last conv layer's feature gradient, for agents without one
ND_STRETCH_CHECKS = 10  # consecutive checks above the target that count as "a long stretch"
OVERESTIMATION_GROWTH_CHECKS = 5  # consecutive checks of a positive, rising Q - Monte-Carlo return
TREND_WINDOW = 5  # td_loss_trend: mean of the last 5 checks relative to the 5 before

SUGGESTIONS = {
    "rank": "implicit under-parameterization (Kumar et al.): lower the replay ratio (updates_per_env_step) "
            "or add the DR3 regularizer (model.init_args.dr3_coef, about 0.03)",
    "nd": "A-LIX (Cetin et al.): the critic is overfitting its TD targets through a discontinuous encoder "
          "gradient; use image augmentation (DrQ/DrQ-v2 random shift) or A-LIX's adaptive local signal mixing",
    "nd_alix": "A-LIX (Cetin et al.): its dual step raises the mixing strength S while this lasts; if S stays "
               "at its clamp of 1, the mixing cannot smooth the encoder more: add image augmentation",
    "overestimation": "Q is drifting above the returns the replayed behaviour obtained: lower the replay ratio "
                      "(updates_per_env_step), add augmentation (DrQ) or the DR3 regularizer "
                      "(model.init_args.dr3_coef)",
}


def return_to_go(replay: Replay, t: torch.Tensor, env: torch.Tensor, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Discounted Monte-Carlo return-to-go of the states stored at times ``t`` of columns ``env``
    (any matching shapes), and whether it is complete (see the module docstring). Reads at most
    ``effective_horizon(gamma)`` rows after each state."""
    replay.flush()
    horizon = effective_horizon(gamma)
    flat_t, flat_env = t.reshape(-1), env.reshape(-1)
    rows = flat_t[None, :] + torch.arange(horizon + 1)[:, None]  # (H + 1, N), time-major
    stored = rows <= replay.time - 1  # rows the write head has reached
    steps = replay.steps(rows.clamp(max=replay.time - 1), flat_env.expand_as(rows))
    reward = torch.where(stored, steps["reward"].float(), 0.0)
    last = steps["last"].bool() & stored
    returns, ended = discounted_returns(reward, last, gamma)
    whole_horizon = stored[-1]  # all H + 1 rows are stored: the missing tail weighs < 1e-3
    return returns[0].reshape(t.shape), (ended[0] | whole_horizon).reshape(t.shape)


def agent_discount(agent: Agent) -> float:
    gamma = agent.discount
    if gamma is None:
        raise ConfigError(f"{type(agent).__name__} declares no discount (hparams 'gamma'), which the health "
                          "diagnostics need for the Monte-Carlo return; set health.every_updates to 0.")
    return float(gamma)


def own_nd_target(agent) -> float | None:
    """The ND target the agent's own A-LIX dual step steers towards (A-LIX-Atari 0.75, Cetin et al. 2022,
    Table 7; A-LIX on DMC 0.535, its code's), None for an agent without A-LIX."""
    strength = getattr(agent, "alix_strength", None)
    return None if strength is None else float(strength.target_nd)


def held_batch(agent, replay: Replay, generator: torch.Generator, transitions: int = HELD_TRANSITIONS) -> dict:
    """A batch of the agent's own view with ``mc_return`` and ``mc_valid`` for every state, on the agent's device."""
    view = agent.replay_view()
    if isinstance(view, TransitionView):  # uniform, even for a prioritized learner: the replay's states as stored
        view = TransitionView(batch_size=transitions, n_step=view.n_step, gamma=view.gamma)
    batch, (t, env) = view.sample_indexed(replay, generator)
    batch["mc_return"], batch["mc_valid"] = return_to_go(replay, t, env, agent_discount(agent))
    return {k: map_obs(lambda x: x.to(agent.device), v) for k, v in batch.items()}  # obs may be a dict of keys


class HealthMonitor:
    """Watches the logged health signals and returns each warning once per run and signal.

    - rank: any ``*srank`` below RANK_COLLAPSE_FRACTION of its peak so far;
    - nd: ``nd_score`` above the agent's own A-LIX target ``alix_target`` (ND_TARGET where it has none)
      for ND_STRETCH_CHECKS consecutive checks;
    - overestimation: any ``*overestimation`` positive and rising for OVERESTIMATION_GROWTH_CHECKS
      consecutive checks.
    It also derives ``td_loss_trend`` (relative change of the TD loss over TREND_WINDOW checks)."""

    def __init__(self):
        self.alix_target: float | None = None  # the agent's own A-LIX target, set by Health before each check
        self.peaks: dict[str, float] = {}
        self.nd_stretch = 0
        self.rising: dict[str, int] = {}
        self.previous: dict[str, float] = {}
        self.td_losses: deque[float] = deque(maxlen=2 * TREND_WINDOW)
        self.warned: set[str] = set()

    def observe(self, metrics: dict[str, float]) -> tuple[dict[str, float], list[tuple[str, str]]]:
        """Derived metrics, and the warnings first crossed at this check as (kind, message)."""
        derived, warnings = {}, []
        for name, value in metrics.items():
            if value != value:  # NaN: nothing known this time
                continue
            if name.endswith("srank"):
                self.peaks[name] = max(self.peaks.get(name, 0.0), value)
                if value < RANK_COLLAPSE_FRACTION * self.peaks[name]:
                    warnings += self._once("rank", name, f"{name} fell to {value:.0f} from a peak of "
                                           f"{self.peaks[name]:.0f} (more than half lost); {SUGGESTIONS['rank']}")
            elif name.endswith("overestimation"):
                rising = value > 0 and name in self.previous and value > self.previous[name]
                self.rising[name] = self.rising.get(name, 0) + 1 if rising else 0
                self.previous[name] = value
                if self.rising[name] >= OVERESTIMATION_GROWTH_CHECKS:
                    warnings += self._once("overestimation", name,
                                           f"{name} (Q minus Monte-Carlo return) rose for {self.rising[name]} checks "
                                           f"to {value:.3g}; {SUGGESTIONS['overestimation']}")
        if "nd_score" in metrics:
            nd = metrics["nd_score"]
            target = ND_TARGET if self.alix_target is None else self.alix_target
            self.nd_stretch = self.nd_stretch + 1 if nd > target else 0
            if self.nd_stretch >= ND_STRETCH_CHECKS:
                advice = SUGGESTIONS["nd" if self.alix_target is None else "nd_alix"]
                warnings += self._once("nd", "nd_score", f"nd_score stayed above A-LIX's target {target} "
                                       f"for {self.nd_stretch} checks (now {nd:.3f}); {advice}")
        if "td_loss" in metrics and metrics["td_loss"] == metrics["td_loss"]:
            self.td_losses.append(metrics["td_loss"])
            if len(self.td_losses) == 2 * TREND_WINDOW:
                before, recent = list(self.td_losses)[:TREND_WINDOW], list(self.td_losses)[TREND_WINDOW:]
                derived["td_loss_trend"] = (sum(recent) - sum(before)) / max(abs(sum(before)), 1e-12)
        return derived, warnings

    def _once(self, kind: str, signal: str, message: str) -> list[tuple[str, str]]:
        if f"{kind}:{signal}" in self.warned:
            return []
        self.warned.add(f"{kind}:{signal}")
        return [(kind, message)]

    def state_dict(self) -> dict:
        return {"peaks": self.peaks, "nd_stretch": self.nd_stretch, "rising": self.rising, "previous": self.previous,
                "td_losses": list(self.td_losses), "warned": sorted(self.warned)}

    def load_state_dict(self, state: dict) -> None:
        self.peaks, self.nd_stretch = dict(state["peaks"]), state["nd_stretch"]
        self.rising, self.previous = dict(state["rising"]), dict(state["previous"])
        self.td_losses.extend(state["td_losses"])
        self.warned = set(state["warned"])


class Health(LoopCallback):
    """Logs the agent's ``health(batch)`` as ``health/<name>`` every ``every_updates`` updates,
    with ``health/mc_coverage`` (share of held states with a known return), ``health/td_loss_trend``
    and ``health/seconds`` (time the check took). A figure that cannot be known yet (Q - return
    before any held episode has ended) is logged as NaN, which W&B leaves out of its plots. A
    warning prints one line, is appended to ``health_warnings.txt`` in the run directory, logged as
    ``health/warning_<kind>`` = 1 and, on W&B, as a row of the ``health/warnings`` table.

    Args:
        every_updates: updates between checks (0: never). At the default the checks cost under 5% of
            training time for every shipped agent (BENCHMARKS.md, "Training-health diagnostics").
        refresh_every: checks between redraws of the held batch.
        transitions: size of the held batch for agents that learn from transitions.
        seed: seeds the held batch's sampling and the random draws inside ``health`` (augmentations,
            A-LIX shifts, target actions), so that checks on the same batch differ only by the network
            (``fit`` links it to ``seed_everything``).
    """

    def __init__(self, every_updates: int = 1000, refresh_every: int = 10, transitions: int = HELD_TRANSITIONS,
                 seed: int = 0):
        if every_updates < 0 or refresh_every < 1 or transitions < 2:
            raise ConfigError("health.every_updates must be >= 0, health.refresh_every >= 1 and "
                              "health.transitions >= 2.")
        self.every_updates, self.refresh_every, self.transitions = every_updates, refresh_every, transitions
        self.seed = seed
        self.monitor = HealthMonitor()
        self.checks = 0
        self._batch: dict | None = None
        self._done_at = -1
        self.last: tuple[int, dict[str, float]] | None = None  # (updates, figures) of the latest check

    def on_train_batch_end(self, trainer, agent, outputs, batch, batch_idx) -> None:
        updates = self.clock.counters.updates
        if trainer.global_rank != 0:  # diagnostics of the one set of weights: the first process checks them
            return
        if self.every_updates and updates % self.every_updates == 0 and updates != self._done_at:
            self._done_at = updates
            check_finite_first(trainer, agent)  # NaN weights: the guard's sentence, not eigvalsh's error
            self.check(trainer, agent)

    def check(self, trainer, agent) -> dict[str, float]:
        """Run the agent's diagnostics once, log them and any new warning; returns what was logged."""
        replay = self.loop.replay  # the loop owns the replay the held batch is drawn from
        start = time.perf_counter()
        # An offline run's dataset does not change: the same held states at every check (the workflow
        # monitor follows their Q), instead of redrawing to follow a filling replay.
        if self._batch is None or (self.checks % self.refresh_every == 0 and not self.clock.offline):
            generator = torch.Generator().manual_seed(self.seed + self.checks)
            self._batch = held_batch(agent, replay, generator, self.transitions)
        self.checks += 1
        devices = [agent.device] if agent.device.type == "cuda" else []
        # on the first process alone, with every random stream as it was: health draws change no training
        with torch.random.fork_rng(devices=devices), agent.generators_forked(), this_process_only():
            torch.manual_seed(self.seed)
            raw = agent.health(self._batch)
        if not raw:
            return {}
        metrics = {k: float(v) for k, v in raw.items()}
        metrics["mc_coverage"] = float(self._batch["mc_valid"].float().mean())
        self.monitor.alix_target = own_nd_target(agent)  # an A-LIX agent is judged against its own target
        derived, warnings = self.monitor.observe(metrics)
        metrics.update(derived, seconds=time.perf_counter() - start)
        row = {f"health/{k}": v for k, v in metrics.items()}
        row.update({f"health/warning_{kind}": 1.0 for kind, _ in warnings})
        self._log(trainer, row, [message for _, message in warnings])
        self.last = (self.clock.counters.updates, metrics)
        return metrics

    def _log(self, trainer, row: dict[str, float], warnings: list[str]) -> None:
        clock = self.clock
        counters = clock.counters
        row = {**row, "env_steps": counters.env_steps, "frames": counters.frames, "updates": counters.updates}
        for logger in trainer.loggers:
            logger.log_metrics(row, step=trainer.global_step)
        for message in warnings:
            unit = "update" if clock.offline else "env step"
            line = f"health warning at {unit} {clock.progress}: {message}"
            print(line, flush=True)
            with open(Path(trainer.default_root_dir) / run_files.HEALTH_WARNINGS, "a") as file:
                file.write(line + "\n")
            for logger in trainer.loggers:
                if hasattr(logger, "log_text"):
                    logger.log_text("health/warnings", columns=[clock.progress_key, "warning"],
                                    data=[[clock.progress, message]], step=trainer.global_step)

    def state_dict(self) -> dict:
        return {"monitor": self.monitor.state_dict(), "checks": self.checks, "done_at": self._done_at}

    def load_state_dict(self, state: dict) -> None:
        self.monitor.load_state_dict(state["monitor"])
        self.checks, self._done_at = state["checks"], state["done_at"]
