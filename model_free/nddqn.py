"""NDDQN: double + dueling DQN with n-step returns, the Atari 100k baseline of the DrQ paper
(Dopamine's settings, ../shared/REFERENCE.md).

    for each env step:   act epsilon-greedily; store the frame
    for each update:     sample (s, a, R^(n), gamma^n, s') with frame stack 4 and n = 10
                         [DrQ: augment s and s' independently: edge pad 4 + crop + intensity]
                         y = R + gamma^n Q_target(s', argmax_a Q(s', a))
                         minimise Huber(Q(s, a) - y) [+ dr3_coef * phi(s) . phi(s')] with Adam
                         [A-LIX: one dual step on the mixing strength S from the ND score]
                         every `target_update_period` updates: Q_target <- Q

``DrQAtari`` and ``ALIXAtari`` below are this agent with DrQ's augmentation (and the DrQ(epsilon)
exploration rates), or with A-LIX's adaptive local signal mixing after every conv layer.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from model_free.health import critic_health, nd_under, training_mode
from model_free.targets import double_q_target, linearly_decaying_epsilon
from worldmodels.diagnostics import augmentation_gap
from worldmodels.errors import ConfigError
from worldmodels.nets import DuelingHead, NatureCNN
from worldmodels.regularizers import (AdaptiveStrength, LocalSignalMixing, dr3_penalty, drq_atari_augment,
                                      gradient_recording_off, random_shift)
from worldmodels.replay import TransitionView
from worldmodels.training import Agent, EnvSpec


class QNetwork(nn.Module):
    def __init__(self, spec: EnvSpec, hidden: int, mixing=None):
        super().__init__()
        self.encoder = NatureCNN(spec.obs_shape[0], spec.obs_shape[1], mixing)
        self.head = DuelingHead(self.encoder.out_dim, spec.num_actions, hidden)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(obs))

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        """Penultimate features phi(s), shared by every action (DR3's discrete-action phi(s, a))."""
        return self.head.features(self.encoder(obs))


class NDDQN(Agent):
    """Args:
        batch_size: transitions per update.
        n_step: steps of the multi-step return.
        gamma: discount.
        lr, adam_eps: Adam settings (Dopamine: 1e-4, 1.5e-4).
        hidden: units of the dueling streams' hidden layer.
        target_update_period: updates between copies of the online net into the target net
            (1: the target is the online net as it was before this update).
        epsilon_train, epsilon_eval: final exploration rate while training, and while evaluating.
        epsilon_decay_steps: env steps after warm-up over which epsilon falls from 1.
        updates_per_env_step: gradient updates per env step.
        augment: DrQ's Atari augmentation of s and s' (edge pad 4, random crop, intensity x(1 + 0.05 N)).
        alix: A-LIX's adaptive local signal mixing after every conv + ReLU, S tuned toward ``alix_target_nd``.
        alix_max_shift: largest mixing shift in pixels at S = 1 (the DMC reference's 2.5).
        dr3_coef: weight of the DR3 regularizer phi(s) . phi(s') of the online net's penultimate
            features (0: off; the source documents suggest about 0.03).
    """

    def __init__(self, batch_size: int = 32, n_step: int = 10, gamma: float = 0.99, lr: float = 1e-4,
                 adam_eps: float = 1.5e-4, hidden: int = 512, target_update_period: int = 1,
                 epsilon_train: float = 0.1, epsilon_eval: float = 0.05, epsilon_decay_steps: int = 5000,
                 updates_per_env_step: float = 1.0, augment: bool = False, alix: bool = False,
                 alix_target_nd: float = 0.535, alix_max_shift: float = 2.5, dr3_coef: float = 0.0):
        super().__init__(updates_per_env_step)
        self.save_hyperparameters()
        self.view = TransitionView(batch_size, n_step, gamma)
        self.explore_generator = torch.Generator().manual_seed(torch.initial_seed())  # seed_everything ran before

    def build(self, spec: EnvSpec) -> None:
        super().build(spec)
        if not spec.discrete:
            raise ConfigError("NDDQN needs a discrete action space; pick an Atari game or the catch test task.")
        mixing = None
        if self.hparams.alix:
            # One S for every layer, tuned from the last layer's gradient (the only one that records it).
            self.alix_strength = AdaptiveStrength(target_nd=self.hparams.alix_target_nd)
            layers = iter([False, False, True])
            mixing = lambda: LocalSignalMixing(self.alix_strength, self.hparams.alix_max_shift,
                                               record_gradient=next(layers))
        self.q = QNetwork(spec, self.hparams.hidden, mixing)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        if self.hparams.alix:  # the target's mixing layers share the online S, as in the reference code
            for layer in self.q_target.modules():
                if isinstance(layer, LocalSignalMixing):
                    layer.strength = self.alix_strength

    def replay_view(self) -> TransitionView:
        return self.view

    def configure_optimizers(self):
        return torch.optim.Adam(self.q.parameters(), lr=self.hparams.lr, eps=self.hparams.adam_eps)

    def epsilon(self, explore: bool) -> float:
        h = self.hparams
        if not explore:
            return h.epsilon_eval
        return linearly_decaying_epsilon(self.counters.env_steps, self.warmup_steps, h.epsilon_decay_steps, h.epsilon_train)

    def act(self, obs, state, first, explore):
        greedy = self.q(obs).argmax(dim=-1)
        n = obs.shape[0]
        random = torch.randint(0, self.spec.num_actions, (n,), generator=self.explore_generator).to(greedy.device)
        explore_mask = (torch.rand(n, generator=self.explore_generator) < self.epsilon(explore)).to(greedy.device)
        return torch.where(explore_mask, random, greedy), None

    def training_step(self, batch, batch_idx):
        if self.hparams.augment:
            batch = {**batch, "obs": drq_atari_augment(batch["obs"]), "next_obs": drq_atari_augment(batch["next_obs"])}
        dr3 = self.hparams.dr3_coef > 0
        if dr3:  # s' also through the online net with gradient: DR3 regularizes its features too
            phi = self.q.features(batch["obs"])
            q = self.q.head.from_features(phi)
            with gradient_recording_off(self.q):
                phi_next = self.q.features(batch["next_obs"])
            next_q_online = self.q.head.from_features(phi_next).detach()
        else:
            q = self.q(batch["obs"])
            with torch.no_grad():
                next_q_online = self.q(batch["next_obs"])
        q_taken = q.gather(1, batch["action"][:, None]).squeeze(1)
        with torch.no_grad():
            target = double_q_target(next_q_online, self.q_target(batch["next_obs"]), batch["reward"],
                                     batch["discount"])
        td_loss = loss = F.smooth_l1_loss(q_taken, target)
        if dr3:
            dr3_dot = dr3_penalty(phi, phi_next)
            loss = td_loss + self.hparams.dr3_coef * dr3_dot
        optimizer = self.optimizers()
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()
        if self.counters.updates % self.hparams.target_update_period == 0:
            self.q_target.load_state_dict(self.q.state_dict())
        metrics = {"train/td_loss": td_loss, "train/q_mean": q_taken.mean(), "train/target_mean": target.mean(),
                   "train/epsilon": self.epsilon(True)}
        if dr3:
            metrics["train/dr3_dot"] = dr3_dot
        if self.hparams.alix:
            last_mixing = [m for m in self.q.modules() if isinstance(m, LocalSignalMixing)][-1]
            metrics["train/nd_score"] = self.alix_strength.update_from(last_mixing)
            metrics["train/alix_s"] = self.alix_strength.value
        self.log_scalars(metrics)

    # ------------------------------------------------------------------ health
    def augment(self, obs: torch.Tensor) -> torch.Tensor:
        """The augmentation health compares Q under: DrQ's own, else DrQ-v2's random shift (pad 4),
        the common yardstick for agents trained without one (NDDQN, A-LIX)."""
        return drq_atari_augment(obs) if self.hparams.augment else random_shift(obs, 4)

    def health(self, batch) -> dict[str, torch.Tensor | float]:
        """See ``model_free.health``. Q, features and the augmentation gap in evaluation mode (no
        A-LIX mixing); the TD loss and its ND score as in training (augmentation, mixing)."""
        action = batch["action"][:, None]
        with self.acting():
            encoded = self.q.encoder(batch["obs"])
            phi = self.q.head.features(encoded)
            q = self.q.head.from_features(phi).gather(1, action).squeeze(1)
            out = critic_health(q, phi, self.q.features(batch["next_obs"]), encoded, batch)
            q_a, q_b = (self.q(self.augment(batch["obs"])).gather(1, action) for _ in range(2))
            out["augmentation_gap"] = augmentation_gap(q_a, q_b)
        with training_mode(self):
            obs, next_obs = batch["obs"], batch["next_obs"]
            if self.hparams.augment:
                obs, next_obs = drq_atari_augment(obs), drq_atari_augment(next_obs)
            feature_map = self.q.encoder.feature_map(obs)
            q_taken = self.q.head(feature_map.flatten(1)).gather(1, action).squeeze(1)
            with torch.no_grad():
                target = double_q_target(self.q(next_obs), self.q_target(next_obs), batch["reward"], batch["discount"])
            td_loss = F.smooth_l1_loss(q_taken, target)
            out["td_loss"], out["nd_score"] = td_loss.detach(), nd_under(td_loss, feature_map)
        return out


class DrQAtari(NDDQN):
    """DrQ on Atari 100k (Kostrikov et al.): NDDQN with the augmentation and DrQ(epsilon)'s
    exploration (0.01 while training, 0.001 while evaluating); K = M = 1."""

    def __init__(self, augment: bool = True, epsilon_train: float = 0.01, epsilon_eval: float = 0.001, **kwargs):
        super().__init__(augment=augment, epsilon_train=epsilon_train, epsilon_eval=epsilon_eval, **kwargs)


class ALIXAtari(NDDQN):
    """A-LIX on Atari 100k (Cetin et al.): NDDQN without image augmentation, with adaptive local
    signal mixing after every conv layer. The paper reports Atari 100k results but its public code
    covers DMC only; this follows the DMC code's layer and dual update on the Nature CNN."""

    def __init__(self, alix: bool = True, **kwargs):
        super().__init__(alix=alix, **kwargs)
