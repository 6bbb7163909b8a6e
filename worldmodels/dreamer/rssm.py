"""The recurrent state-space model of DreamerV3 (2023 spec).

    deterministic  h_t = GRU(h_{t-1}, MLP([z_{t-1}, a_{t-1}]))
    prior          z_t ~ p(z_t | h_t)          32 categoricals x 32 classes, 1% uniform mix
    posterior      z_t ~ q(z_t | h_t, e_t)     e_t the image embedding
    features       [h_t, flatten(z_t)]

Samples are one-hot with straight-through gradients. At an episode start (``first``) the previous
state and action are replaced by the learned initial state and a zero action, so nothing of the
previous episode leaks into the new one, inside replayed sequences as while acting.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from worldmodels.nets.distributions import OneHotStraightThrough, unimix_logits
from worldmodels.nets.dreamer_blocks import NormGRUCell, mlp


class State(NamedTuple):
    deter: torch.Tensor  # (..., D)
    stoch: torch.Tensor  # (..., S, K) one-hot sample
    logits: torch.Tensor  # (..., S, K) unimix logits of the distribution it was drawn from

    def features(self) -> torch.Tensor:
        return torch.cat([self.deter, self.stoch.flatten(-2)], -1)


def stack_states(states: list[State], dim: int) -> State:
    return State(*(torch.stack(parts, dim) for parts in zip(*states)))


class RSSM(nn.Module):
    def __init__(self, embed_dim: int, action_dim: int, deter: int, hidden: int, stoch: int = 32,
                 classes: int = 32, unimix: float = 0.01):
        super().__init__()
        self.deter_dim, self.stoch, self.classes, self.unimix = deter, stoch, classes, unimix
        self.img_in = mlp(stoch * classes + action_dim, hidden, 1)
        self.gru = NormGRUCell(hidden, deter)
        self.prior_net = mlp(deter, hidden, 1, stoch * classes)
        self.post_net = mlp(deter + embed_dim, hidden, 1, stoch * classes)
        # Learned initial deterministic state (tanh of a parameter), as the 2023 code's `initial: learned`.
        self.initial_deter = nn.Parameter(torch.zeros(deter))

    @property
    def feat_dim(self) -> int:
        return self.deter_dim + self.stoch * self.classes

    def _dist(self, raw: torch.Tensor) -> tuple[torch.Tensor, OneHotStraightThrough]:
        logits = unimix_logits(raw.reshape(*raw.shape[:-1], self.stoch, self.classes), self.unimix)
        return logits, OneHotStraightThrough(logits=logits)

    def initial(self, batch: int) -> State:
        deter = torch.tanh(self.initial_deter).expand(batch, -1)
        logits, dist = self._dist(self.prior_net(deter))
        return State(deter, dist.mode, logits)

    def reset_where(self, state: State, action: torch.Tensor, first: torch.Tensor) -> tuple[State, torch.Tensor]:
        """Replace the state by the initial one and the action by zeros where ``first``."""
        keep = (~first).float()
        init = self.initial(first.shape[0])
        mixed = State(*(keep.view(-1, *[1] * (s.dim() - 1)) * s + (1 - keep).view(-1, *[1] * (s.dim() - 1)) * i
                        for s, i in zip(state, init)))
        return mixed, action * keep.view(-1, *[1] * (action.dim() - 1))

    def img_step(self, prev: State, action: torch.Tensor) -> State:
        """Prior step: from the previous state and action to h_t and z_t ~ p(z_t | h_t)."""
        x = self.img_in(torch.cat([prev.stoch.flatten(-2), action], -1))
        deter = self.gru(x, prev.deter)
        logits, dist = self._dist(self.prior_net(deter))
        return State(deter, dist.rsample(), logits)

    def obs_step(self, prev: State, action: torch.Tensor, embed: torch.Tensor, first: torch.Tensor) -> tuple[State, State]:
        """Posterior step: (posterior, prior) at t from the state and action at t-1 and the embedding at t."""
        prev, action = self.reset_where(prev, action, first)
        prior = self.img_step(prev, action)
        logits, dist = self._dist(self.post_net(torch.cat([prior.deter, embed], -1)))
        return State(prior.deter, dist.rsample(), logits), prior

    def observe(self, embed: torch.Tensor, action: torch.Tensor, first: torch.Tensor,
                state: State | None = None) -> tuple[State, State]:
        """Posterior and prior states over a (B, T) sequence; ``action[:, t]`` is the action that led
        to step t (the replay's convention)."""
        state = self.initial(embed.shape[0]) if state is None else state
        posts, priors = [], []
        for t in range(embed.shape[1]):
            state, prior = self.obs_step(state, action[:, t], embed[:, t], first[:, t])
            posts.append(state)
            priors.append(prior)
        return stack_states(posts, 1), stack_states(priors, 1)

    def imagine_with_actions(self, state: State, actions: torch.Tensor) -> State:
        """Prior rollout along recorded actions (B, T, A): the open-loop prediction."""
        states = []
        for t in range(actions.shape[1]):
            state = self.img_step(state, actions[:, t])
            states.append(state)
        return stack_states(states, 1)
