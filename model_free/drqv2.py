"""DrQ-v2 (Yarats et al. 2021, "Mastering Visual Continuous Control: Improved Data-Augmented Reinforcement
Learning", arXiv:2107.09645): DDPG from pixels with random-shift augmentation, as facebookresearch/drqv2
(drqv2.py) does it.

    for each env step:   a = clamp(mu(f(s)) + N(0, sigma(t)^2)), sigma(t) = linear(1.0, 0.1, 500k); store the frame
    every 2 env steps:   sample (s, a, R^(3), gamma^m, s') with frame stack 3
                         augment s and s' (replicate pad 4, random shift); h = f(s), h' = sg(f(s'))
                         a' = mu(h') + clip(N(0, sigma(t)^2), -0.3, 0.3)
                         y = R + gamma^m min(Q1', Q2')(h', a')
                         critic and encoder f: minimise (Q1(h, a) - y)^2 + (Q2(h, a) - y)^2
                                               [+ dr3_coef * phi(h, a) . phi(f(s'), a'), penultimate Q-MLP features]
                         actor: maximise min(Q1, Q2)(sg(h), mu(sg(h)) + clip(noise))
                         Q' <- (1 - tau) Q' + tau Q
The target critic has its own trunk and Q heads but no encoder: s' goes through the online encoder.

On states (vector keys) the state goes straight into the actor's and critics' MLPs, as pytorch_sac
feeds them (Yarats and Kostrikov, denisyarats/pytorch_sac at commit
81c5b536d3a1c5616b2531e446450df412a064fb, agent/critic.py and agent/actor.py): no encoder, no trunk
(``worldmodels.nets.vector.VectorInput``), so no encoder optimizer. A dict of image and vector keys:
the conv features through each trunk, the vector beside it (``worldmodels.nets.drq_encoder.SplitTrunk``).
The random shift augments the image keys only.
"""

from __future__ import annotations

import copy
import re
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from model_free.critic_health import critic_health, learned, nd_under, training_mode
from model_free.obs_batches import on_images
from worldmodels.diagnostics import augmentation_gap
from worldmodels.envs.observations import map_obs_keys
from worldmodels.errors import ConfigError
from worldmodels.nets.distributions import TruncatedNormal, linear_schedule
from worldmodels.nets.drq_encoder import DrQEncoder, make_trunk, orthogonal_init, trunk_width
from worldmodels.nets.keyed import layout_encoder, vector_columns
from worldmodels.nets.ema import ema_update_
from worldmodels.nets.twin_q import TwinQ, mlp
from worldmodels.nets.vector import VectorInput
from worldmodels.regularizers import (LocalSignalMixing, LossTerms, dr3_penalty, gradient_recording_off, random_shift,
                                      sample_shifts)
from worldmodels.replay import TransitionView
from worldmodels.training import Agent, EnvSpec


def drqv2_critic_target(reward: torch.Tensor, discount: torch.Tensor, next_q1: torch.Tensor,
                        next_q2: torch.Tensor) -> torch.Tensor:
    """y = R + discount * min(Q1', Q2'): ``reward`` is the n-step return and ``discount`` gamma^m,
    0 past a terminal (TransitionView)."""
    return reward + discount * torch.minimum(next_q1, next_q2)


def stddev_at(schedule: str | float | list[float], step: float) -> float:
    """DrQ-v2's utils.schedule: a constant, ``'linear(start, end, duration)'`` or [start, end, duration]."""
    if isinstance(schedule, (list, tuple)) and len(schedule) == 3:
        return linear_schedule(*map(float, schedule), step)
    try:
        return float(schedule)
    except (TypeError, ValueError):
        match = re.fullmatch(r"\s*linear\(([^,]+),([^,]+),([^,]+)\)\s*", str(schedule))
        if match is None:
            raise ConfigError(f"stddev_schedule is {schedule!r}; write a number, 'linear(start, end, duration)' "
                              "or [start, end, duration].") from None
        return linear_schedule(*map(float, match.groups()), step)


class Actor(nn.Module):
    """Own trunk on h (the last ``vector_dim`` columns, vector keys, beside it), MLP to the mean action."""

    def __init__(self, repr_dim: int, action_dim: int, feature_dim: int, hidden: int, vector_dim: int = 0):
        super().__init__()
        self.trunk = make_trunk(repr_dim, vector_dim, feature_dim)
        self.policy = mlp(trunk_width(repr_dim, vector_dim, feature_dim), hidden, 2, action_dim, orthogonal_init)

    def forward(self, h: torch.Tensor, stddev: float | torch.Tensor) -> TruncatedNormal:
        """The policy at h with the exploration std ``stddev`` (a number, or a 0-d tensor: what a compiled
        update takes, so that the schedule's next value is no new constant to compile for)."""
        mu = self.mean_action(h)
        return TruncatedNormal(mu, torch.as_tensor(stddev, dtype=mu.dtype, device=mu.device).expand_as(mu))

    def mean_action(self, h: torch.Tensor) -> torch.Tensor:
        """mu(h) in [-1, 1], the policy's deterministic part."""
        return torch.tanh(self.policy(self.trunk(h)))


class DrQv2(Agent):
    """Args (defaults: facebookresearch/drqv2, medium tasks):
        batch_size, n_step, gamma: replayed transitions per update, steps of the return, discount.
        lr: Adam learning rate of the encoder, the actor and the critic.
        feature_dim: width of the actor's and the critic's trunks (Linear + LayerNorm + tanh).
        hidden: units of the two hidden layers of the policy and of each Q network.
        critic_tau: rate of the target critic's exponential moving average, every update.
        stddev_schedule: exploration std over env steps: a number, 'linear(start, end, duration)'
            or [start, end, duration] (easy tasks 'linear(1.0,0.1,100000)', hard 2000000).
        stddev_clip: bound on the target and actor-loss action noise.
        augment, pad: random-shift augmentation of s and s' (replicate pad, random crop).
        updates_per_env_step: gradient updates per env step (0.5: one every 2 steps).
        dr3_coef: weight of the DR3 regularizer phi(s, a) . phi(s', a') of the Q MLPs' penultimate
            features, a' the target's next action; s' then goes through the encoder with gradient (0: off).
    """

    def __init__(self, batch_size: int = 256, n_step: int = 3, gamma: float = 0.99, lr: float = 1e-4,
                 feature_dim: int = 50, hidden: int = 1024, critic_tau: float = 0.01,
                 stddev_schedule: str | float | list[float] = "linear(1.0,0.1,500000)", stddev_clip: float = 0.3,
                 augment: bool = True, pad: int = 4, updates_per_env_step: float = 0.5, dr3_coef: float = 0.0):
        super().__init__(updates_per_env_step)
        self.save_hyperparameters()
        self.view = TransitionView(batch_size, n_step, gamma)
        stddev_at(stddev_schedule, 0)  # refuse a malformed schedule now, not mid-run

    def mixing_factory(self):
        """Makes the layer put after every conv + ReLU of the encoder (A-LIX's); none here."""
        return None

    def build(self, spec: EnvSpec) -> None:
        super().build(spec)
        spec.require("DrQ-v2", actions=("continuous",))
        h = self.hparams
        image = partial(DrQEncoder, shift=-0.5, mixing=self.mixing_factory())
        self.encoder = layout_encoder(spec.obs_keys, image, VectorInput)
        vector_dim = vector_columns(self.encoder)
        self.actor = Actor(self.encoder.out_dim, spec.action_dim, h.feature_dim, h.hidden, vector_dim)
        self.critic = TwinQ(self.encoder.out_dim, spec.action_dim, h.feature_dim, h.hidden, init_heads="both",
                            vector_dim=vector_dim)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)

    def replay_view(self) -> TransitionView:
        return self.view

    def compiled_modules(self) -> dict:
        """What ``worldmodels.training.compile.compile_agent`` compiles: the encoder (s and s', every
        update), the actor's mean, the critic's features and its forward, the target critic. Not the
        encoder when it mixes (A-LIX: random shifts and gradient hooks); the exploration and target
        noise stay in eager mode. A state encoder, which only passes the state on, is left out too."""
        mixes = any(isinstance(m, LocalSignalMixing) for m in self.encoder.modules())
        pure = not mixes and learned(self.encoder)
        return {**({"encoder": self.encoder} if pure else {}), "actor.mean_action": self.actor.mean_action,
                "critic.features": self.critic.features, "critic": self.critic, "critic_target": self.critic_target}

    def configure_optimizers(self):
        """Adam for the encoder (none for a state encoder, which has no weights), the actor and the critic."""
        lr = self.hparams.lr
        encoder_params = [p for p in self.encoder.parameters() if p.requires_grad]
        encoder = [torch.optim.Adam(encoder_params, lr=lr)] if encoder_params else []
        return [*encoder, torch.optim.Adam(self.actor.parameters(), lr=lr), torch.optim.Adam(self.critic.parameters(), lr=lr)]

    def update_optimizers(self) -> tuple:
        """(encoder's or None, actor's, critic's), from ``configure_optimizers``' list."""
        optimizers = self.optimizers()
        if not learned(self.encoder):
            return None, *optimizers[:2]
        return tuple(optimizers[:3])

    def stddev(self) -> float:
        return stddev_at(self.hparams.stddev_schedule, self.counters.env_steps)

    def act(self, obs, state, first, explore):
        policy = self.actor(self.encoder(obs), self.stddev())
        return (policy.sample() if explore else policy.mean), None

    def next_action(self, next_h: torch.Tensor, stddev, standard: torch.Tensor | None = None) -> torch.Tensor:
        """a' of the target: the policy's mean plus noise clipped to +-stddev_clip (``standard``: its
        N(0, 1) draws, drawn now when None)."""
        return self.actor(next_h, stddev).sample(clip=self.hparams.stddev_clip, standard=standard)

    def training_step(self, batch, batch_idx):
        self.begin_update()
        encoder_opt, actor_opt, critic_opt = self.update_optimizers()
        stddev = self.stddev()
        noise = self.update_noise(batch)
        std = torch.tensor(stddev, device=batch["reward"].device)
        critic_loss, h, metrics = self.critic_region(batch, noise, std)
        metrics.update(self.update_critic(critic_loss, encoder_opt, critic_opt))
        actor_loss, actor_metrics = self.actor_region(h, std, noise)
        self.update_actor(actor_loss, actor_opt)
        ema_update_(self.critic_target.parameters(), self.critic.parameters(), self.hparams.critic_tau)
        self.log_scalars({**metrics, **actor_metrics, "train/stddev": stddev})

    # ------------------------------------------------------------------ the update's pure parts
    def encoder_mixes(self) -> bool:
        return any(isinstance(m, LocalSignalMixing) for m in self.encoder.modules())

    def update_noise(self, batch) -> dict | None:
        """Every random number one update draws, drawn at once from the global generator on the batch's
        device, in the order an update drawing them as it goes would draw them (so the same numbers):
        the random shifts of s's image keys, then of s''s (``augment``), the N(0, 1) noise of the
        target's action a', then of the actor loss's action. None where the encoder mixes (A-LIX): its
        layers draw their shifts inside the encoder, between these, so that update draws as it goes."""
        if self.encoder_mixes():
            return None
        h = self.hparams
        noise = {}
        if h.augment:
            for name in ("obs", "next_obs"):
                noise[f"{name}_shifts"] = {key.name: sample_shifts(rows, h.pad, device=device)
                                           for key, rows, device in self.image_rows(batch[name])}
        b, device = batch["reward"].shape[0], batch["reward"].device
        noise["target_action"] = torch.randn(b, self.spec.action_dim, device=device)
        noise["actor_action"] = torch.randn(b, self.spec.action_dim, device=device)
        return noise

    def image_rows(self, obs) -> list[tuple]:
        """(key, B, device) of each image key of an observation batch, in key order."""
        return [(key, (obs[key.name] if isinstance(obs, dict) else obs).shape[0],
                 (obs[key.name] if isinstance(obs, dict) else obs).device) for key in self.spec.image_keys]

    def update_regions(self) -> dict | None:
        """What ``--compile full`` compiles (``worldmodels.training.compile``): the critic's loss (with the
        encoder's) and the actor's, batch and drawn noise in, losses and metrics out; the backward passes
        and optimizer steps run between them. None with A-LIX's mixing layers, which draw inside."""
        if self.encoder_mixes():
            return None
        return {"critic_region": self.critic_region, "actor_region": self.actor_region}

    def critic_region(self, batch, noise: dict | None, stddev) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """(critic loss with its regularisers, f(s) stopped for the actor, metrics) of a batch."""
        noise = noise or {}
        obs = self.update_input(batch["obs"], noise.get("obs_shifts"))
        next_obs = self.update_input(batch["next_obs"], noise.get("next_obs_shifts"))
        h = self.encoder(obs)
        next_h_grad = None
        if self.hparams.dr3_coef > 0:  # DR3 also regularizes the encoder through phi(s', a')
            with gradient_recording_off(self.encoder):
                next_h_grad = self.encoder(next_obs)
            next_h = next_h_grad.detach()
        else:
            with torch.no_grad():
                next_h = self.encoder(next_obs)
        critic_loss, parts = self.critic_loss(h, batch["action"], batch["reward"], batch["discount"], next_h, stddev,
                                              noise.get("target_action"))
        terms = LossTerms(critic_loss)  # the regularisers the options switch on
        next_h_dr3 = next_h if next_h_grad is None else next_h_grad
        terms.add("dr3_dot", self.hparams.dr3_coef,
                  lambda: dr3_penalty(parts["phi"], self.critic.features(next_h_dr3, parts["next_action"])))
        metrics = {"train/critic_loss": critic_loss, "train/q1_mean": parts["q1"].mean(),
                   "train/q2_mean": parts["q2"].mean(), "train/target_q_mean": parts["target"].mean(), **terms.metrics}
        return terms.loss, h.detach(), metrics

    def actor_region(self, h, stddev, noise: dict | None) -> tuple[torch.Tensor, dict]:
        """The actor's loss at the stopped f(s): it trains the actor alone (its gradient on the critic
        is cleared before the critic's next step)."""
        action = self.actor(h, stddev).sample(clip=self.hparams.stddev_clip, standard=(noise or {}).get("actor_action"))
        q1, q2 = self.critic(h, action)
        loss = -torch.minimum(q1, q2).mean()
        return loss, {"train/actor_loss": loss}

    def update_input(self, obs, shifts: dict[str, torch.Tensor] | None = None):
        """s or s' as the update reads it: under ``augment``, a random shift of each image key (by
        ``shifts``, per key, where drawn before; drawn now otherwise)."""
        if not self.hparams.augment:
            return obs
        if shifts is None:
            return on_images(partial(random_shift, pad=self.hparams.pad), self.spec.obs_keys, obs)
        return map_obs_keys(lambda key, x: random_shift(x, self.hparams.pad, shifts=shifts[key.name])
                            if key.kind == "image" else x, self.spec.obs_keys, obs)

    def update_critic(self, loss: torch.Tensor, encoder_opt, critic_opt) -> dict:
        """The critic's (and encoder's) step on its loss. ``encoder_opt`` None: a state encoder. Returns
        metrics of the step (none here; A-LIX adds its dual step's)."""
        optimizers = [opt for opt in (encoder_opt, critic_opt) if opt is not None]
        for opt in optimizers:
            opt.zero_grad()
        self.manual_backward(loss)
        for opt in reversed(optimizers):  # the critic's step first, as DrQ-v2's code
            opt.step()
        return {}

    def update_actor(self, loss: torch.Tensor, actor_opt) -> None:
        actor_opt.zero_grad()
        self.manual_backward(loss)
        actor_opt.step()

    def critic_loss(self, h, action, reward, discount, next_h, stddev, target_noise: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """MSE of both Q heads to y = R + gamma^m min(Q1', Q2')(h', a'); also the parts the update logs
        and DR3 needs (the heads' penultimate features and a'). ``target_noise``: a''s N(0, 1) draws."""
        with torch.no_grad():
            next_action = self.next_action(next_h, stddev, target_noise)
            target = drqv2_critic_target(reward, discount, *self.critic_target(next_h, next_action))
        phi = self.critic.features(h, action)
        q1, q2 = self.critic.values(phi)
        loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
        return loss, {"q1": q1, "q2": q2, "target": target, "phi": phi, "next_action": next_action}

    # ------------------------------------------------------------------ health
    def health(self, batch) -> dict[str, torch.Tensor | float]:
        """See ``model_free.critic_health``. Q is min(Q1, Q2) as the targets use it; srank reads Q1's
        features; the DR3 dot pairs (s, a) with (s', a'), a' the target's clipped-noise action.
        Q, features and the augmentation gap (DrQ-v2's random shift, also for A-LIX, which trains
        without it) in evaluation mode (no A-LIX mixing); the TD loss and its ND score as in
        training (augmentation or mixing on). Without image keys: no augmentation gap and no ND score
        (nothing to shift, no conv map), and with a state encoder no encoder srank
        (``model_free.critic_health``)."""
        stddev, action = self.stddev(), batch["action"]
        with self.acting():
            encoded = self.encoder(batch["obs"])
            phi = self.critic.features(encoded, action)
            next_h = self.encoder(batch["next_obs"])
            out = critic_health(torch.min(*self.critic.values(phi)), phi,
                                self.critic.features(next_h, self.next_action(next_h, stddev)),
                                encoded if learned(self.encoder) else None, batch)
            if self.spec.image_keys:
                shift = partial(random_shift, pad=self.hparams.pad)
                q_a, q_b = (torch.min(*self.critic(self.encoder(on_images(shift, self.spec.obs_keys, batch["obs"])), action))
                            for _ in range(2))
                out["augmentation_gap"] = augmentation_gap(q_a, q_b)
        with training_mode(self):
            obs, next_obs = self.update_input(batch["obs"]), self.update_input(batch["next_obs"])
            h, feature_map = self.encoder.encode_with_map(obs)
            with torch.no_grad():
                next_h = self.encoder(next_obs)
            td_loss, _ = self.critic_loss(h, action, batch["reward"], batch["discount"], next_h, stddev)
            out["td_loss"] = td_loss.detach()
            if feature_map is not None:
                out["nd_score"] = nd_under(td_loss, feature_map)
        return out
