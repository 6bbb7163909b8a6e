"""The recurrent state-space model of DreamerV3 (2023 spec).

    deterministic  h_t = GRU(h_{t-1}, MLP([z_{t-1}, a_{t-1}]))
    prior          z_t ~ p(z_t | h_t)          32 categoricals x 32 classes, 1% uniform mix
    posterior      z_t ~ q(z_t | h_t, e_t)     e_t the image embedding
    features       [h_t, flatten(z_t)]

Samples are one-hot with straight-through gradients. At an episode start (``first``) the previous
state and action are replaced by the learned initial state (h_0 = tanh(w), z_0 the prior's mode at
h_0, a one-hot without gradient: see ``RSSM.initial``) and a zero action, so nothing of the previous
episode leaks into the new one, inside replayed sequences as while acting.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from worldmodels.nets.distributions import (at_least_float32, gumbel_from_uniform, straight_through_one_hot,
                                            unimix_logits)
from worldmodels.nets.dreamer_blocks import NormGRUCell, init_weights_, mlp, norm_layer


class State(NamedTuple):
    deter: torch.Tensor  # (..., D)
    stoch: torch.Tensor  # (..., S, K) one-hot sample
    logits: torch.Tensor  # (..., S, K) unimix logits of the distribution it was drawn from

    def features(self) -> torch.Tensor:
        return torch.cat([self.deter, self.stoch.flatten(-2)], -1)


def stack_states(states: list[State], dim: int) -> State:
    return State(*(torch.stack(parts, dim) for parts in zip(*states)))


def bounded_action(action: torch.Tensor) -> torch.Tensor:
    """Each action component scaled to magnitude at most 1, a * sg(1 / max(1, |a|)), as the 2023
    reference code does wherever an action enters the dynamics: imagined continuous actions are
    unbounded Normal samples while the world model trains on clipped ones, so without it the
    backprop actor would learn from the model's extrapolation outside [-1, 1]. The scale is a
    constant to autograd: the gradient reaches the action through its direction. One-hot and
    clipped actions pass unchanged."""
    return action * (1.0 / action.detach().abs().clamp(min=1.0))


class RSSM(nn.Module):
    def __init__(self, embed_dim: int, action_dim: int, deter: int, hidden: int, stoch: int = 32,
                 classes: int = 32, unimix: float = 0.01, norm: str = "layer"):
        super().__init__()
        self.deter_dim, self.stoch, self.classes, self.unimix = deter, stoch, classes, unimix
        self.img_in = mlp(stoch * classes + action_dim, hidden, 1, norm=norm)
        self.gru = NormGRUCell(hidden, deter, norm)
        # img_out then the prior's logit layer; the logit layer is uniform-initialised (mlp's output), as
        # the reference's '_stats' Linear, built without the config's winit (danijar/dreamerv3 8fa35f8,
        # dreamerv3/nets.py line 144: 'img_stats').
        self.prior_net = mlp(deter, hidden, 1, stoch * classes, norm=norm)
        # The posterior's first layer reads [h_t, e_t]; it is split in two Linears so that the
        # embedding half runs once for a whole sequence instead of once per step.
        joint_fans = (deter + embed_dim, hidden)  # initialised as the one layer of the reference
        self.post_deter = init_weights_(nn.Linear(deter, hidden, bias=False), fans=joint_fans)
        self.post_embed = init_weights_(nn.Linear(embed_dim, hidden, bias=False), fans=joint_fans)
        # The posterior's logit layer: uniform, as the reference's 'obs_stats' (nets.py line 144, as above).
        self.post_out = nn.Sequential(norm_layer(hidden, norm), nn.SiLU(),
                                      init_weights_(nn.Linear(hidden, stoch * classes), dist="uniform"))
        # Learned initial deterministic state (tanh of a parameter), as the 2023 code's `initial: learned`.
        self.initial_deter = nn.Parameter(torch.zeros(deter))

    @property
    def feat_dim(self) -> int:
        return self.deter_dim + self.stoch * self.classes

    # The step is split in two: its deterministic part (``posterior_step``, ``prior_step``: the
    # recurrence and the latent logits), which ``worldmodels.training.compile`` compiles as one graph
    # each (``--compile parts``), and the draw from the logits (``sample``). The update passes its draws
    # in, Gumbel noise drawn before it (``gumbel``), so that the whole update is one pure function that
    # ``--compile full`` compiles and a compiled and an eager update draw the same numbers; acting and the
    # health checks draw theirs here.
    def _logits(self, raw: torch.Tensor) -> torch.Tensor:
        """Unimix logits (..., S, K) from a head's raw output (..., S * K), in float32 when the head ran
        in bf16 (autocast), as the reference code's distributions: the draws, the KL losses and the
        entropies are then float32 too (bf16 would round a 4-nat KL to 1/64 of a nat)."""
        raw = raw.to(at_least_float32(raw.dtype))
        return unimix_logits(raw.reshape(*raw.shape[:-1], self.stoch, self.classes), self.unimix)

    @staticmethod
    def sample(logits: torch.Tensor, gumbel: torch.Tensor | None = None) -> torch.Tensor:
        """A one-hot draw of every latent variable, with straight-through gradients, by the Gumbel-max
        trick on ``gumbel`` (standard Gumbel noise shaped as the logits) or on noise drawn here from the
        default generator of the logits' device."""
        if gumbel is None:
            gumbel = gumbel_from_uniform(torch.rand(logits.shape, dtype=at_least_float32(logits.dtype),
                                                    device=logits.device))
        return straight_through_one_hot(logits, gumbel)

    def prior_logits(self, deter: torch.Tensor) -> torch.Tensor:
        """Logits of p(z_t | h_t)."""
        return self._logits(self.prior_net(deter))

    def initial(self, batch: int) -> State:
        """The learned initial state, the same for every row: computed once and expanded to ``batch``.

        As the reference's ``RSSM.initial`` with ``initial: learned`` (danijar/dreamerv3 8fa35f8,
        dreamerv3/nets.py lines 45-48 and ``get_stoch``, lines 125-129): h_0 = tanh(w), w a learned vector
        that starts at zero, and z_0 the mode of the prior p(z | h_0), a one-hot of its argmax. That mode
        has no gradient (``dist.mode()``, not a straight-through sample): a loss downstream of an episode
        start reaches w only through h_0 itself, and the prior network only where it reads a later h.
        The logits are kept for reference only (no step reads a previous state's logits) and are stopped too."""
        deter = torch.tanh(self.initial_deter)[None]
        logits = self.prior_logits(deter).detach()
        stoch = F.one_hot(logits.argmax(-1), self.classes).to(logits.dtype)
        return State(*(x.expand(batch, *x.shape[1:]) for x in (deter, stoch, logits)))

    def reset_where(self, state: State, action: torch.Tensor, first: torch.Tensor,
                    init: State | None = None) -> tuple[State, torch.Tensor]:
        """Replace the state by the initial one and the action by zeros where ``first`` (B,). ``init``:
        the initial state of the batch, when the caller made it once for a whole sequence.

        One ``torch.where`` per tensor (the values of keep * s + (1 - keep) * init with keep in {0, 1},
        and its gradients: to ``state`` where kept, to ``init`` where reset). The logits are passed
        through: no step reads a previous state's logits (``recurrent_step`` reads h and z)."""
        init = self.initial(first.shape[0]) if init is None else init
        reset = first.view(-1, 1)
        mixed = State(torch.where(reset, init.deter, state.deter),
                      torch.where(reset[..., None], init.stoch, state.stoch), state.logits)
        return mixed, torch.where(reset, 0.0, action)

    def recurrent_step(self, prev: State, action: torch.Tensor) -> torch.Tensor:
        """h_t from the state and action at t-1."""
        return self.gru(self.img_in(torch.cat([prev.stoch.flatten(-2), bounded_action(action)], -1)), prev.deter)

    def prior_step(self, prev: State, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(h_t, logits of p(z_t | h_t)) from the state and action at t-1."""
        deter = self.recurrent_step(prev, action)
        return deter, self.prior_logits(deter)

    def posterior_step(self, prev: State, action: torch.Tensor,
                       projected_embed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(h_t, logits of q(z_t | h_t, e_t)) from the state and action at t-1 and ``projected_embed``
        = post_embed(e_t)."""
        deter = self.recurrent_step(prev, action)
        return deter, self._logits(self.post_out(self.post_deter(deter) + projected_embed))

    def img_step(self, prev: State, action: torch.Tensor, gumbel: torch.Tensor | None = None) -> State:
        """Prior step: from the previous state and action to h_t and z_t ~ p(z_t | h_t) (``sample``)."""
        deter, logits = self.prior_step(prev, action)
        return State(deter, self.sample(logits, gumbel), logits)

    def obs_step(self, prev: State, action: torch.Tensor, embed: torch.Tensor, first: torch.Tensor) -> State:
        """Posterior state at t from the state and action at t-1 and the embedding at t (acting)."""
        prev, action = self.reset_where(prev, action, first)
        deter, logits = self.posterior_step(prev, action, self.post_embed(embed))
        return State(deter, self.sample(logits), logits)

    def observe(self, embed: torch.Tensor, action: torch.Tensor, first: torch.Tensor,
                state: State | None = None, gumbel: torch.Tensor | None = None) -> tuple[State, torch.Tensor]:
        """Posterior states over a (B, T) sequence and the prior logits at the same steps;
        ``action[:, t]`` is the action that led to step t (the replay's convention); ``gumbel``
        (B, T, S, K): the draws' noise (``sample``). Only the recurrence runs step by step: the
        embedding projection before it and the prior (which the posterior rollout does not need)
        after it run once on the whole sequence."""
        init = self.initial(embed.shape[0])  # once per sequence, not at every step's reset
        state = init if state is None else state
        projected = self.post_embed(embed)
        posts = []
        for t in range(embed.shape[1]):
            prev, prev_action = self.reset_where(state, action[:, t], first[:, t], init)
            deter, logits = self.posterior_step(prev, prev_action, projected[:, t])
            state = State(deter, self.sample(logits, None if gumbel is None else gumbel[:, t]), logits)
            posts.append(state)
        posts = stack_states(posts, 1)
        return posts, self.prior_logits(posts.deter)

    def imagine_with_actions(self, state: State, actions: torch.Tensor, first: torch.Tensor | None = None) -> State:
        """Prior rollout along recorded actions (B, T, A): the open-loop prediction. Where ``first``
        (B, T) marks an episode start the rollout restarts from the initial state, as ``observe``
        does, so a replayed window that crosses episodes is predicted as the model would see it."""
        states, init = [], None if first is None else self.initial(actions.shape[0])
        for t in range(actions.shape[1]):
            prev, action = (state, actions[:, t]) if first is None else self.reset_where(state, actions[:, t], first[:, t],
                                                                                          init)
            state = self.img_step(prev, action)
            states.append(state)
        return stack_states(states, 1)
