"""Prioritized replay (Schaul et al. 2016) over the transition view, as Dopamine's Rainbow and DER use it.

    P(i) = p_i^alpha / sum_j p_j^alpha          sampling, with replacement
    w_i  = P(i)^-beta / max_batch P(j)^-beta      importance weights, normalised by the batch's largest
    p_i  <- loss_i + 1e-10 after each update; rows written since the last sample get the largest p seen so far

Dopamine stores sqrt(loss) and samples in proportion to it, with weights 1/sqrt(P): alpha = beta = 0.5
here, with p the loss, gives the same distribution and weights (the ``Rainbow`` defaults). beta can be
annealed linearly to 1 (the PER and DER papers) with ``beta_steps``.

Why not TorchRL's PrioritizedSampler: its sum tree is a C++ extension built for another torch than
the CPU build of torch this project installs. Why no sum tree of our own: a vectorised pass
over the priorities (power, mask, multinomial) costs well under a millisecond at Atari 100k's
100k rows, a small fraction of an update, and has nothing to keep consistent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from worldmodels.errors import ConfigError
from worldmodels.replay.storage import Replay
from worldmodels.replay.views import NotEnoughData, TransitionView


@dataclass
class PrioritizedTransitionView(TransitionView):
    """``TransitionView`` batches drawn by priority, with ``weight`` (B,) importance weights and
    ``index`` (2, B): the logical time and column of each transition, for ``update_priorities``.

    Args (beyond TransitionView's):
        alpha: priority exponent in [0, 1] (0: uniform).
        beta: importance-weight exponent in [0, 1] (at the start, when annealed).
        beta_steps: samples over which beta rises linearly to 1 (0: beta stays constant).
    """

    alpha: float = 0.5
    beta: float = 0.5
    beta_steps: int = 0
    priority: torch.Tensor | None = field(default=None, repr=False)  # (rows, envs) float64, by physical row
    max_priority: float = 1.0
    admitted: int = 0  # logical time up to which rows have been given a priority
    samples: int = 0

    def __post_init__(self):
        for name in ("alpha", "beta"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"model.priority_{name} is {getattr(self, name)}; it must lie in [0, 1].")

    def current_beta(self) -> float:
        if self.beta_steps <= 0:
            return self.beta
        return min(1.0, self.beta + (1.0 - self.beta) * self.samples / self.beta_steps)

    def admit_new_rows(self, replay: Replay) -> None:
        """Rows written since the last call start at the largest priority seen, except an episode's
        final row, which starts no transition."""
        replay.flush()
        if self.priority is None:
            self.priority = torch.zeros(replay.rows, replay.num_envs, dtype=torch.float64)
        start = max(self.admitted, replay.time - replay.rows)
        if start < replay.time:
            t = torch.arange(start, replay.time)
            env = torch.arange(replay.num_envs)
            last = replay.steps(t[:, None].expand(-1, replay.num_envs), env.expand(len(t), -1))["last"]
            self.priority[t % replay.rows] = torch.where(last, 0.0, self.max_priority).double()
        self.admitted = replay.time

    def sample_indexed(self, replay: Replay, generator: torch.Generator | None = None
                       ) -> tuple[dict[str, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        replay.flush()
        self.admit_new_rows(replay)
        lo, hi = self.start_range(replay)
        if hi < lo:
            raise NotEnoughData(f"the replay holds {replay.time} steps per environment, too few to sample from; "
                                "raise the warm-up steps.")
        in_range = torch.zeros(replay.rows, dtype=torch.bool)
        in_range[torch.arange(lo, hi + 1) % replay.rows] = True
        weights = self.priority.pow(self.alpha) * in_range[:, None]
        total = weights.sum()
        if total <= 0:
            raise NotEnoughData("no stored transition has a positive priority to sample it by.")
        probs = (weights / total).flatten()
        flat = torch.multinomial(probs, self.batch_size, replacement=True,
                                 generator=replay.generator if generator is None else generator)
        row, env = flat // replay.num_envs, flat % replay.num_envs
        t = (replay.time - 1) - ((replay.time - 1 - row) % replay.rows)  # newest logical time stored in each row
        batch = self.transitions_at(replay, t, env)
        inverse = probs[flat].pow(-self.current_beta())
        batch["weight"] = (inverse / inverse.max()).float()
        batch["index"] = torch.stack([t, env])
        self.samples += 1
        return batch, (t, env)

    def update_priorities(self, index: torch.Tensor, loss: torch.Tensor) -> None:
        """New priorities ``loss + 1e-10`` for the transitions ``index`` (2, B) of a batch. Rows that
        were overwritten since that batch was drawn (Lightning draws one batch ahead) keep theirs."""
        index, p = index.cpu(), loss.detach().double().cpu() + 1e-10
        t, env = index[0], index[1]
        resident = t >= self.admitted - self.priority.shape[0]
        self.priority[t[resident] % self.priority.shape[0], env[resident]] = p[resident]
        self.max_priority = max(self.max_priority, float(p.max()))

    def state_dict(self) -> dict:
        return {"priority": self.priority, "max_priority": self.max_priority, "admitted": self.admitted,
                "samples": self.samples}

    def load_state_dict(self, state: dict) -> None:
        """A resumed replay marks its newest row as an episode's end (``Replay.load_state_dict``):
        admitting that row again gives it priority 0, so no transition starts there."""
        self.priority, self.max_priority = state["priority"], state["max_priority"]
        self.admitted, self.samples = max(0, state["admitted"] - 1), state["samples"]
