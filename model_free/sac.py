"""One soft actor-critic from pixels for three published agents:
- DrQ (Kostrikov, Yarats, Fergus 2020, "Image Augmentation Is All You Need", arXiv:2004.13649), SAC
  regularised by image augmentation: the defaults, configs/drq_dmc.yaml;
- SAC+AE (Yarats et al. 2019, "Improving Sample Efficiency in Model-Free Reinforcement Learning from
  Images", arXiv:1910.01741), SAC with a deterministic autoencoder on the critic's encoder and no
  augmentation: ``decoder: true``, configs/sacae_dmc.yaml;
- CQL for SAC (Kumar et al. 2020, "Conservative Q-Learning for Offline Reinforcement Learning",
  arXiv:2006.04779), offline: ``cql_alpha`` > 0, configs/cql_dmc.yaml.

    for each env step:   act with a ~ pi(.|s) (tanh-squashed Gaussian); store the frame
    for each update:     sample (s, a, R, d, s') with frame stack 3; shift-augment s M times, s' K times
                         y = 1/K sum_k [R + d (min_i Q'_i(s'_k, a'_k) - alpha log pi(a'_k|s'_k))],  a'_k ~ pi(.|s'_k)
                             [deterministic_backup: without the - alpha log pi term, as the CQL code]
                         critic: minimise 1/M sum_m [(Q_1(s_m, a) - y)^2 + (Q_2(s_m, a) - y)^2]
                                 [+ dr3_coef * phi(s_1, a) . phi(s'_1, a'_1), penultimate Q-MLP features]
                                 [+ cql_alpha * sum_i (logsumexp_a Q_i(s_1, a) - Q_i(s_1, a_data)), the
                                  logsumexp estimated from N uniform and 2N policy actions: offline;
                                  cql_target_action_gap tau: sum_i alpha' (cql_alpha * P_i - tau) instead,
                                  alpha' = clamp(exp(log alpha'), 0, 1e6) minimising
                                  -alpha' * mean_i (cql_alpha * P_i - tau)]
                         every 2 updates: actor  minimise alpha log pi(a~|s_1) - min_i Q_i(s_1, a~), a~ ~ pi(.|s_1)
                                                 [update < policy_eval_start: alpha log pi(a~|s_1) - log pi(a|s_1),
                                                  behaviour cloning of the dataset's action a]
                                          alpha  minimise alpha (-log pi(a~|s_1) - target_entropy)
                                                 [log_alpha_loss: log alpha instead of alpha, as the CQL code]
                         every 2 updates: Q' <- tau Q + (1 - tau) Q'    (the encoder at its own tau)
                         [SAC+AE: minimise MSE(decoder(h), quantised s) + latent_penalty |h|^2 / 2, h the
                          critic's 50 features of s; the decoder with weight decay]

The encoder (DrQEncoder on obs/255, then a Trunk: Linear to 50, LayerNorm, tanh) belongs to the critic.
As in the reference code, the actor shares the critic's conv layers (the same weights, "tied") and
reads their output detached, through its own Trunk: only the critic's loss trains the convolutions.
The reference code sums its M = 2 critic losses; the paper averages them (written here): with Adam
the two differ only through Adam's epsilon.

On states (vector keys) SAC is pytorch_sac (Yarats and Kostrikov, denisyarats/pytorch_sac at commit
81c5b536d3a1c5616b2531e446450df412a064fb, agent/critic.py and agent/actor.py): the state goes straight
into the actor's and critics' MLPs, no encoder, no Trunk (``worldmodels.nets.vector.VectorInput``); its
settings are a config: image_pad 0, k_aug = m_aug = 1, actor_update_every 1, critic_tau 0.005, lr 1e-4,
batch_size 1024, log_std_min -5. A dict of image and vector keys: the conv features through the Trunk,
the vector beside it, [trunk(conv), s] (``worldmodels.nets.drq_encoder.SplitTrunk``). The shift
augments the image keys only; SAC+AE's decoder reconstructs them (from the Trunk's 50 features) and is
refused without any.

The CQL code cited below is aviralkumar2907/CQL at commit d67dbe9cf5d2b96e3b462b6146f249b3d6569796
(d4rl/rlkit/torch/sac/cql.py, CQLTrainer; d4rl/examples/cql_mujoco_new.py, its D4RL MuJoCo run).
"""

from __future__ import annotations

import copy
from functools import partial

import torch
import torch.distributions as D
import torch.nn.functional as F
from torch import nn

from model_free.critic_health import critic_health, learned, nd_under, training_mode
from model_free.obs_batches import first_rows, on_images, repeated, rows_of
from worldmodels.diagnostics import augmentation_gap
from worldmodels.errors import ConfigError
from worldmodels.nets.drq_encoder import (DrQEncoder, PixelDecoder, delta_orthogonal_init, make_trunk, orthogonal_init,
                                          trunk_width)
from worldmodels.nets.keyed import KeyedEncoder, image_input, layout_encoder, stack_images, vector_columns
from worldmodels.nets.ema import ema_update_
from worldmodels.nets.twin_q import TwinQ, mlp
from worldmodels.nets.vector import VectorInput
from worldmodels.regularizers import LossTerms, cql_continuous_penalty, cql_lagrange_terms, dr3_penalty, random_shift
from worldmodels.replay import TransitionView
from worldmodels.training import Agent, EnvSpec


# ---------------------------------------------------------------------- the update's arithmetic
def soft_q_target(reward, discount, next_q1, next_q2, next_log_prob, alpha):
    """SAC's target r + d * (min(Q'_1, Q'_2) - alpha * log pi(a'|s')); d is gamma^m, 0 past a terminal."""
    return reward + discount * (torch.min(next_q1, next_q2) - alpha * next_log_prob)


def deterministic_q_target(reward, discount, next_q1, next_q2):
    """The CQL code's default backup (``deterministic_backup=True``, cql.py lines 207-217): r + d *
    min(Q'_1, Q'_2), without the entropy term, a' still drawn from pi(.|s')."""
    return reward + discount * torch.min(next_q1, next_q2)


def averaged_target(targets_k: torch.Tensor) -> torch.Tensor:
    """DrQ's target: the mean over the K augmentations of s' of their soft targets, (K, B) -> (B,)."""
    return targets_k.mean(0)


def averaged_critic_loss(q1_m: torch.Tensor, q2_m: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The mean over the M augmentations of s of MSE(Q_1, y) + MSE(Q_2, y); q: (M, B), target: (B,)."""
    per_augmentation = ((q1_m - target) ** 2).mean(1) + ((q2_m - target) ** 2).mean(1)
    return per_augmentation.mean()


def temperature_loss(log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: float,
                     on_log_alpha: bool = False) -> torch.Tensor:
    """alpha * (H - target), H estimated by -log pi: descending it raises alpha while H is below target
    (denisyarats/drq drq.py lines 286-287, commit dd040f1; denisyarats/pytorch_sac_ae sac_ae.py lines
    362-363, commit 7fa560e). ``on_log_alpha``: log alpha * (H - target), the CQL code's form
    (cql.py line 165, -(log_alpha * (log_pi + target_entropy)).mean()): the same sign, a gradient not
    scaled by alpha."""
    scale = log_alpha if on_log_alpha else log_alpha.exp()
    return (scale * (-log_prob - target_entropy).detach()).mean()


def data_log_prob(mu: torch.Tensor, std: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """log pi(a|s) of a dataset action under the tanh-squashed Gaussian N(mu, std), summed over the
    action's dimensions, as the CQL code computes it for behaviour cloning (rlkit
    TanhGaussianPolicy.log_prob, d4rl/rlkit/torch/sac/policies.py lines 15-18 and 75-93, and
    TanhNormal.log_prob, d4rl/rlkit/torch/distributions.py lines 32-45): u = atanh(a) with 1 +- a
    clamped at 1e-6 (actions at the bounds stay finite), the mean clamped to [-9, 9], and
    log N(u; mu, std) - log(1 - a^2 + 1e-6). mu, std, action: (B, d) -> (B,)."""
    u = 0.5 * torch.log((1 + action).clamp(min=1e-6) / (1 - action).clamp(min=1e-6))
    normal = D.Normal(mu.clamp(-9.0, 9.0), std, validate_args=False)
    return (normal.log_prob(u) - torch.log(1 - action * action + 1e-6)).sum(-1)


def quantised_target(obs: torch.Tensor, noise: torch.Tensor, bits: int = 5) -> torch.Tensor:
    """SAC+AE's reconstruction target: uint8 pixels quantised to ``bits`` bits, dequantised with uniform
    ``noise`` in [0, 1) of one level, centred: floor(x / 2^(8-bits)) / 2^bits + noise / 2^bits - 0.5."""
    levels = 2 ** bits
    return torch.floor(obs.float() / 2 ** (8 - bits)) / levels + noise / levels - 0.5


def latent_penalty(h: torch.Tensor) -> torch.Tensor:
    """The L2 penalty on the latent code (Ghosh et al. 2019, as SAC+AE): mean over the batch of |h|^2 / 2."""
    return (0.5 * h.pow(2).sum(1)).mean()


# ---------------------------------------------------------------------- networks
# The convolutions' initialisation (``conv_init``): DrQ's code (denisyarats/drq utils.py weight_init,
# commit dd040f1) and SAC+AE's (denisyarats/pytorch_sac_ae sac_ae.py weight_init, commit 7fa560e).
CONV_INITS = {"orthogonal": orthogonal_init, "delta_orthogonal": delta_orthogonal_init}

def encoder_convs(encoder: nn.Module) -> dict[str, nn.Module]:
    """The convolutions ``encoder`` runs, by their path under it: none for a state encoder."""
    image = encoder.image if isinstance(encoder, KeyedEncoder) else encoder
    if image is None or not hasattr(image, "convs"):
        return {}
    return {"image.convs" if image is not encoder else "convs": image.convs}


class Actor(nn.Module):
    """Own Trunk on the (detached) conv features, MLP to mean and log-std of a tanh-squashed Gaussian.
    The last ``vector_dim`` columns of the encoder's output (vector keys) pass beside the Trunk."""

    def __init__(self, conv_dim: int, action_dim: int, feature_dim: int, hidden: int, depth: int,
                 log_std_bounds: tuple[float, float], vector_dim: int = 0):
        super().__init__()
        self.trunk = make_trunk(conv_dim, vector_dim, feature_dim)
        self.net = mlp(trunk_width(conv_dim, vector_dim, feature_dim), hidden, depth, 2 * action_dim, orthogonal_init)
        self.log_std_bounds = log_std_bounds

    def forward(self, conv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, raw = self.net(self.trunk(conv.detach())).chunk(2, -1)
        low, high = self.log_std_bounds
        return mu, (low + 0.5 * (high - low) * (torch.tanh(raw) + 1)).exp()


def squashed_normal(mu: torch.Tensor, std: torch.Tensor) -> D.Distribution:
    """tanh of N(mu, std), independent over the action's dimensions. validate_args off, as every
    distribution of this repository (worldmodels.nets.distributions says why): a sample squashed to
    exactly +-1 in float32 would fail the support check of its own log_prob."""
    normal = D.Normal(mu, std, validate_args=False)
    squashed = D.TransformedDistribution(normal, [D.TanhTransform(cache_size=1)], validate_args=False)
    return D.Independent(squashed, 1, validate_args=False)


class SAC(Agent):
    """Args (defaults: DrQ's):
        batch_size: transitions per update (paper 512; the reference code's default is 128).
        n_step, gamma: multi-step return and discount (DrQ: 1-step, 0.99).
        lr: Adam learning rate of critic, actor and temperature. actor_lr: the actor's, if other (CQL's 1e-4).
        feature_dim: width of the Trunk (Linear, LayerNorm, tanh) after the convolutions.
        hidden, depth: units and hidden layers of the actor and Q MLPs.
        init_temperature: initial alpha; the target entropy is -|A|.
        log_std_min, log_std_max: bounds of the policy's log-std (tanh rescaled into them).
        critic_tau, critic_target_update_every: soft target update coefficient and period (updates).
        actor_update_every: updates between actor and temperature updates.
        k_aug, m_aug: augmentations of s' averaged in the target (K), of s averaged in the loss (M).
        image_pad: replicate padding of the random shift (pixels; 0: no augmentation, as SAC+AE).
        encoder_tau: soft target coefficient of the encoder (convs and Trunk; None: ``critic_tau``;
            SAC+AE 0.05).
        alpha_lr, alpha_beta1: the temperature's Adam (None: ``lr`` and 0.9; SAC+AE 1e-4 and 0.5).
        decoder: SAC+AE's deterministic decoder, trained with the critic's encoder to reconstruct s.
        decoder_lr, decoder_weight_decay, latent_penalty_coef, decoder_bits: its Adam and weight decay
            (on the decoder only), the weight of the latent penalty, the bits of the target.
        reconstruction_every: log a reconstruction image (truth beside prediction) every this many
            updates (0: never).
        updates_per_env_step: gradient updates per env step.
        dr3_coef: weight of the DR3 regularizer phi(s, a) . phi(s', a') of the Q MLPs' penultimate
            features, a' the target's next action (0: off).
        cql_alpha, cql_samples: CQL(H) for continuous actions (offline training; 0: off), with
            ``cql_samples`` uniform actions and as many policy actions at s and at s' per state
            (``worldmodels.regularizers.cql_continuous_penalty``; the CQL code's num_random is 10).
        cql_target_action_gap: CQL's Lagrange variant (the CQL code's ``with_lagrange`` with
            ``lagrange_thresh``; None or 0: off): each twin's weighted penalty P_i enters the critic's
            loss as alpha' (P_i - gap), alpha' = clamp(exp(log alpha'), 0, 1e6), log alpha' from 0 by its
            own Adam at ``lr`` (the CQL code's qf_lr) on -alpha' mean_i (P_i - gap): alpha' grows while
            the penalty exceeds the gap (``worldmodels.regularizers.cql_lagrange_terms``).
        deterministic_backup: drop the entropy term -alpha log pi(a'|s') from the critic's target (the
            CQL code's default; SAC's and DrQ's papers keep it: False).
        policy_eval_start: while the update count is below it, the actor is trained by behaviour cloning,
            alpha log pi(a~|s) - log pi(a_data|s) (``data_log_prob``), instead of SAC's actor loss (the
            CQL code's policy_eval_start, cql.py lines 184-191; the first update is update 1, as the
            code's counter: policy_eval_start - 1 updates clone; 0: never).
        log_alpha_loss: the temperature's loss on log alpha, as the CQL code (``temperature_loss``).
        conv_init: ``orthogonal`` (DrQ's code: whole kernels orthogonal) or ``delta_orthogonal`` (SAC+AE's
            code: only the centre tap, ``worldmodels.nets.drq_encoder.delta_orthogonal_``) for the
            critic's convolutions and the decoder's transposed convolutions.
        warmup_burst: when the warm-up ends, make as many updates at once as it had env steps (times
            ``updates_per_env_step``), then the usual ratio: SAC+AE's code makes init_steps updates at
            step init_steps (pytorch_sac_ae train.py lines 223-226, commit 7fa560e); DrQ's code does not
            (denisyarats/drq train.py lines 150-153, commit dd040f1): False.
    """

    def __init__(self, batch_size: int = 512, n_step: int = 1, gamma: float = 0.99, lr: float = 1e-3,
                 feature_dim: int = 50, hidden: int = 1024, depth: int = 2, init_temperature: float = 0.1,
                 log_std_min: float = -10.0, log_std_max: float = 2.0, critic_tau: float = 0.01,
                 critic_target_update_every: int = 2, actor_update_every: int = 2, k_aug: int = 2, m_aug: int = 2,
                 image_pad: int = 4, updates_per_env_step: float = 1.0, dr3_coef: float = 0.0,
                 encoder_tau: float | None = None, alpha_lr: float | None = None, alpha_beta1: float = 0.9,
                 decoder: bool = False, decoder_lr: float = 1e-3, decoder_weight_decay: float = 1e-7,
                 latent_penalty_coef: float = 1e-6, decoder_bits: int = 5, reconstruction_every: int = 5000,
                 actor_lr: float | None = None, cql_alpha: float = 0.0, cql_samples: int = 10,
                 cql_target_action_gap: float | None = None, deterministic_backup: bool = False,
                 policy_eval_start: int = 0, log_alpha_loss: bool = False, conv_init: str = "orthogonal",
                 warmup_burst: bool = False):
        super().__init__(updates_per_env_step)
        self.save_hyperparameters()
        if k_aug < 1 or m_aug < 1 or cql_samples < 1:
            raise ConfigError("model.init_args.k_aug, m_aug and cql_samples must be at least 1.")
        if conv_init not in CONV_INITS:
            raise ConfigError(f"model.init_args.conv_init is {conv_init!r}; it must be one of {', '.join(CONV_INITS)}.")
        if policy_eval_start < 0:
            raise ConfigError(f"model.init_args.policy_eval_start is {policy_eval_start}; it must be 0 or more.")
        if cql_target_action_gap is not None and cql_target_action_gap < 0:
            raise ConfigError(f"model.init_args.cql_target_action_gap is {cql_target_action_gap}; it must be 0 or more "
                              "(null or 0: CQL without the Lagrange variant).")
        if cql_target_action_gap and cql_alpha <= 0:
            raise ConfigError("model.init_args.cql_target_action_gap tunes CQL's penalty: set cql_alpha above 0 too "
                              "(the CQL code's Lagrange runs use min_q_weight 1 to 5).")
        self.warmup_burst = warmup_burst  # read by the loop (Experience.updates_due)
        self.view = TransitionView(batch_size, n_step, gamma)
        self.explore_generator = torch.Generator().manual_seed(torch.initial_seed())  # seed_everything ran before
        self.augment_generator = torch.Generator().manual_seed(torch.initial_seed() + 1)

    def build(self, spec: EnvSpec) -> None:
        super().build(spec)
        h = self.hparams
        spec.require("SAC+AE (model.decoder)" if h.decoder else "SAC", actions=("continuous",))
        if h.decoder and not spec.image_keys:
            raise ConfigError("SAC+AE (model.decoder) reconstructs the image keys, and this environment has none; set "
                              "model.decoder false (SAC on states has nothing to reconstruct).")
        init = CONV_INITS[h.conv_init]
        encoder = layout_encoder(spec.obs_keys, partial(DrQEncoder, shift=0.0, init=init), VectorInput)
        vector_dim = vector_columns(encoder)
        self.critic = TwinQ(encoder.out_dim, spec.action_dim, h.feature_dim, h.hidden, h.depth, encoder=encoder,
                            vector_dim=vector_dim)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor = Actor(self.critic.encoder.out_dim, spec.action_dim, h.feature_dim, h.hidden, h.depth,
                           (h.log_std_min, h.log_std_max), vector_dim)
        self.log_alpha = nn.Parameter(torch.tensor(float(h.init_temperature)).log())
        self.target_entropy = -float(spec.action_dim)
        if self.lagrange:  # the CQL code's log_alpha_prime, from 0 (cql.py lines 72-79)
            self.log_alpha_prime = nn.Parameter(torch.zeros(()))
        if h.decoder:
            channels, side = image_input(spec.obs_keys)
            if side % 2:
                raise ConfigError(f"model.decoder reconstructs even-sized images; env.image_size is {side}.")
            self.decoder = PixelDecoder(channels, self.critic.encoder.feature_shape, h.feature_dim, init)

    @property
    def lagrange(self) -> bool:
        """CQL's Lagrange variant: a target action gap is set (and CQL is on)."""
        return bool(self.hparams.cql_target_action_gap) and self.hparams.cql_alpha > 0

    def replay_view(self) -> TransitionView:
        return self.view

    def compiled_modules(self) -> dict:
        """What ``worldmodels.training.compile.compile_agent`` compiles: the convolutions of the critic
        and of its target (M + K shifted copies of the batch, every update), the actor's network, the
        critic's features and its forward, the target critic and SAC+AE's decoder. The policy's
        distribution and its draws stay in eager mode. A state encoder has no convolutions to compile."""
        convs = {f"{name}.encoder.{path}": module for name in ("critic", "critic_target")
                 for path, module in encoder_convs(getattr(self, name).encoder).items()}
        return {**convs, "actor": self.actor, "critic.features": self.critic.features,
                "critic": self.critic, "critic_target": self.critic_target,
                **({"decoder": self.decoder} if self.hparams.decoder else {})}

    def configure_optimizers(self):
        h = self.hparams
        optimizers = [torch.optim.Adam(self.critic.parameters(), lr=h.lr),
                      torch.optim.Adam(self.actor.parameters(), lr=h.actor_lr or h.lr),  # the tied convs are the critic's
                      torch.optim.Adam([self.log_alpha], lr=h.alpha_lr or h.lr, betas=(h.alpha_beta1, 0.999))]
        if h.decoder:  # SAC+AE: the decoder (with weight decay) and, for the reconstruction loss, the encoder
            optimizers += [torch.optim.Adam(self.decoder.parameters(), lr=h.decoder_lr, weight_decay=h.decoder_weight_decay),
                           torch.optim.Adam(self.encoder_parameters(), lr=h.lr)]
        if self.lagrange:  # returned here so that Lightning checkpoints its moments (cql.py lines 76-79: qf_lr)
            optimizers.append(torch.optim.Adam([self.log_alpha_prime], lr=h.lr))
        return optimizers

    def encoder_parameters(self) -> list[nn.Parameter]:
        """The critic's encoder: its convolutions and Trunk (what SAC+AE calls the encoder)."""
        return [*self.critic.encoder.parameters(), *self.critic.trunk.parameters()]

    def act(self, obs, state, first, explore):
        mu, std = self.actor(self.critic.encoder(obs))
        if not explore:
            return torch.tanh(mu), None
        noise = torch.randn(mu.shape, generator=self.explore_generator).to(mu.device)
        return torch.tanh(mu + std * noise), None

    def augmented(self, obs, copies: int, generator: torch.Generator | None = None):
        """``copies`` independent random shifts of each observation, stacked: (copies * B, C, H, W) per
        image key (vector keys copied as they are), drawn from ``generator`` (the agent's augmentation
        generator when None)."""
        copied = repeated(obs, copies)
        generator = self.augment_generator if generator is None else generator
        return on_images(lambda x: random_shift(x, self.hparams.image_pad, generator), self.spec.obs_keys, copied)

    def actor_loss(self, obs: torch.Tensor, alpha: torch.Tensor, data_action: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """E[alpha log pi(a|s) - min_i Q_i(s, a)], a ~ pi(.|s) reparameterised, and log pi(a|s). The convs
        (just updated by the critic) run without gradient: the actor's loss reaches its own Trunk and MLP only.
        With ``data_action`` (behaviour cloning, before ``policy_eval_start``), the CQL code's
        E[alpha log pi(a|s) - log pi(a_data|s)] instead (cql.py lines 184-191): no Q in it."""
        with torch.no_grad():
            conv = self.critic.encoder(obs)
        mu, std = self.actor(conv)
        policy = squashed_normal(mu, std)
        action = policy.rsample()
        log_prob = policy.log_prob(action)
        if data_action is not None:
            return (alpha * log_prob - data_log_prob(mu, std, data_action)).mean(), log_prob
        q1, q2 = self.critic(conv, action)
        return (alpha * log_prob - torch.min(q1, q2)).mean(), log_prob

    def critic_loss(self, obs: torch.Tensor, next_obs: torch.Tensor, batch: dict, alpha: torch.Tensor
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """DrQ's critic loss on M stacked shifts of s (``obs``) against the target averaged over K
        stacked shifts of s' (``next_obs``); also returns the parts the update logs and DR3 needs."""
        b = rows_of(batch["obs"])
        k, m = rows_of(next_obs) // b, rows_of(obs) // b
        with torch.no_grad():  # the target, averaged over K shifts of s'
            next_conv = self.critic.encoder(next_obs)
            next_mu, next_std = self.actor(next_conv)
            next_policy = squashed_normal(next_mu, next_std)
            next_action = next_policy.rsample()
            next_q1, next_q2 = self.critic_target(self.critic_target.encoder(next_obs), next_action)
            reward, discount = batch["reward"].repeat(k), batch["discount"].repeat(k)
            if self.hparams.deterministic_backup:
                targets = deterministic_q_target(reward, discount, next_q1, next_q2)
            else:
                targets = soft_q_target(reward, discount, next_q1, next_q2, next_policy.log_prob(next_action), alpha)
            target = averaged_target(targets.view(k, -1))
        h, feature_map = self.critic.encoder.encode_with_map(obs)  # the critic, averaged over M shifts of s
        phi = self.critic.features(h, batch["action"].float().repeat(m, 1))
        q1, q2 = self.critic.values(phi)
        loss = averaged_critic_loss(q1.view(m, -1), q2.view(m, -1), target)
        return loss, {"q1": q1, "q2": q2, "target": target, "phi": phi, "next_action": next_action,
                      "next_conv": next_conv, "h": h, "feature_map": feature_map}

    def augmented_if(self, obs, copies: int, generator: torch.Generator | None = None):
        """``augmented``, or the observations as they are without augmentation (``image_pad`` 0)."""
        if self.hparams.image_pad > 0:
            return self.augmented(obs, copies, generator)
        return repeated(obs, copies)

    def reconstruction_loss(self, obs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """SAC+AE: MSE of the decoded critic features of s against its image keys (stacked) quantised to
        ``decoder_bits`` bits, plus the latent penalty. Trains the critic's encoder (convs, Trunk) and the
        decoder. The features are the Trunk's, the first ``feature_dim`` columns of its output (the
        vector keys, beside them, are not a latent code)."""
        h = self.critic.trunk(self.critic.encoder(obs))[:, :self.hparams.feature_dim]
        reconstruction = self.decoder(h)
        images = stack_images(self.spec.obs_keys, obs)
        target = quantised_target(images, torch.rand(images.shape, device=images.device), self.hparams.decoder_bits)
        mse, penalty = F.mse_loss(reconstruction, target), latent_penalty(h)
        return mse + self.hparams.latent_penalty_coef * penalty, {"mse": mse, "latent": penalty,
                                                                  "reconstruction": reconstruction, "target": target}

    def update_decoder(self, obs: torch.Tensor, decoder_opt, encoder_opt) -> dict[str, torch.Tensor]:
        loss, parts = self.reconstruction_loss(obs)
        decoder_opt.zero_grad()
        encoder_opt.zero_grad()
        self.manual_backward(loss)
        decoder_opt.step()
        encoder_opt.step()
        every = self.hparams.reconstruction_every
        if every and (self.counters.updates - 1) % every == 0:
            self.log_reconstruction(parts["target"], parts["reconstruction"])
        return {"train/reconstruction_loss": parts["mse"], "train/latent_penalty": parts["latent"]}

    def log_reconstruction(self, target: torch.Tensor, reconstruction: torch.Tensor) -> None:
        """The newest frame of the first 4 samples, truth (top) above reconstruction (bottom), to W&B (of
        the last image key, whose channels come last in the stack)."""
        if self._trainer is None:
            return
        c = self.spec.image_keys[-1].frame_shape[0]
        pair = torch.cat([target[:4, -c:], reconstruction[:4, -c:].detach()], 2)  # (4, C, 2H, W)
        image = ((pair + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).permute(2, 0, 3, 1).flatten(1, 2).cpu().numpy()
        for logger in self.trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image("train/reconstruction", [image], step=self.trainer.global_step)

    def training_step(self, batch, batch_idx):
        h = self.hparams
        critic_opt, actor_opt, alpha_opt, *extra_opts = self.optimizers()  # then SAC+AE's two, then Lagrange's alpha'
        ae_opts = extra_opts[:2] if h.decoder else []
        alpha = self.log_alpha.exp().detach()
        k, m = h.k_aug, h.m_aug

        next_obs = self.augmented_if(batch["next_obs"], k)
        obs = self.augmented_if(batch["obs"], m)
        critic_loss, parts = self.critic_loss(obs, next_obs, batch, alpha)
        q1, q2, target = parts["q1"], parts["q2"], parts["target"]
        b = rows_of(batch["obs"])  # DR3 and CQL read the first shift of s (and of s')
        terms = LossTerms(critic_loss)  # the regularisers the options switch on, in the order they join the loss
        terms.add("dr3_dot", h.dr3_coef, lambda: self.dr3_dot(parts, first_rows(next_obs, b), b))
        if h.cql_alpha > 0:
            self.add_cql(terms, parts, b, extra_opts[-1] if self.lagrange else None)
        critic_opt.zero_grad()
        self.manual_backward(terms.loss)
        critic_opt.step()
        metrics = {"train/critic_loss": critic_loss, "train/q1_mean": q1.mean(), "train/q2_mean": q2.mean(),
                   "train/target_q_mean": target.mean(), "train/alpha": alpha}
        metrics.update(terms.metrics)

        if self.counters.updates % h.actor_update_every == 0:  # actor and temperature on the first shift of s
            cloning = self.counters.updates < h.policy_eval_start  # the loop counts update 1 before its step
            actor_loss, log_prob = self.actor_loss(first_rows(obs, b), alpha,
                                                   batch["action"].float() if cloning else None)
            actor_opt.zero_grad()
            self.manual_backward(actor_loss)  # also leaves gradients on the critic's heads: zeroed before its step
            actor_opt.step()
            alpha_loss = temperature_loss(self.log_alpha, log_prob, self.target_entropy, h.log_alpha_loss)
            alpha_opt.zero_grad()
            self.manual_backward(alpha_loss)
            alpha_opt.step()
            metrics.update({"train/actor_loss": actor_loss, "train/alpha_loss": alpha_loss,
                            "train/entropy": -log_prob.mean()})

        if self.counters.updates % h.critic_target_update_every == 0:
            self.update_critic_target()
        if h.decoder:
            metrics.update(self.update_decoder(batch["obs"], *ae_opts))
        self.log_scalars(metrics)

    def dr3_dot(self, parts: dict, next_obs: torch.Tensor, b: int) -> torch.Tensor:
        """DR3's phi(s_1, a) . phi(s'_1, a'_1): the first shift of s and of s' (``next_obs``), both
        through the online critic."""
        phi = tuple(f[:b] for f in parts["phi"])
        phi_next = self.critic.features(self.critic.encoder(next_obs), parts["next_action"][:b])
        return dr3_penalty(phi, phi_next)

    def add_cql(self, terms: LossTerms, parts: dict, b: int, alpha_prime_opt=None) -> None:
        """CQL(H) on the first shift of s: the twins' summed penalty P, logged, and cql_alpha * P in the
        critic's loss; under the Lagrange variant, sum_i alpha' (cql_alpha * P_i - tau) after alpha'
        has taken its own step, on the penalty before the critic's step (cql.py lines 270-278)."""
        h = self.hparams
        twins = self.twin_cql_penalties(parts["h"][:b], parts["next_conv"][:b],
                                        (parts["q1"][:b], parts["q2"][:b]))
        cql = sum(twins)
        if not self.lagrange:
            terms.add_weighted("cql_penalty", cql, h.cql_alpha * cql)
            return
        cql_term, alpha_prime_loss, alpha_prime = cql_lagrange_terms(
            self.log_alpha_prime, [h.cql_alpha * p for p in twins], h.cql_target_action_gap)
        alpha_prime_opt.zero_grad()
        self.manual_backward(alpha_prime_loss)
        alpha_prime_opt.step()
        terms.add_weighted("cql_penalty", cql, cql_term)
        terms.metrics.update({"train/alpha_prime": alpha_prime, "train/alpha_prime_loss": alpha_prime_loss})

    def cql_penalty(self, conv: torch.Tensor, next_conv: torch.Tensor, q_data: tuple[torch.Tensor, torch.Tensor]
                    ) -> torch.Tensor:
        """CQL(H)'s penalty summed over the twin critics (``twin_cql_penalties``)."""
        return sum(self.twin_cql_penalties(conv, next_conv, q_data))

    def twin_cql_penalties(self, conv: torch.Tensor, next_conv: torch.Tensor,
                           q_data: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """CQL(H)'s penalty of each twin critic, at states with conv features ``conv`` (B, F):
        N uniform actions, N policy actions at s and N at s' (conv features ``next_conv``), all valued
        at s. The policy's samples carry no gradient: only the critic learns from this term, as in the
        CQL code."""
        b, n, d = conv.shape[0], self.hparams.cql_samples, self.spec.action_dim
        with torch.no_grad():
            policy_s = squashed_normal(*self.actor(conv))
            policy_next = squashed_normal(*self.actor(next_conv))
            a_s, a_next = policy_s.sample((n,)), policy_next.sample((n,))  # (N, B, d)
            log_p_s, log_p_next = policy_s.log_prob(a_s).T, policy_next.log_prob(a_next).T  # (B, N)
        a_random = torch.rand(n, b, d, device=conv.device) * 2 - 1
        conv_n = conv.repeat(n, 1)  # row j * B + i: state i with its j-th action
        q_random, q_s, q_next = (self.critic(conv_n, a.reshape(n * b, d)) for a in (a_random, a_s, a_next))
        by_state = lambda q: q.view(n, b).T  # (B, N)
        return tuple(cql_continuous_penalty(by_state(q_random[i]), by_state(q_s[i]), log_p_s, by_state(q_next[i]),
                                            log_p_next, q_data[i], d) for i in range(2))  # each twin critic

    @torch.no_grad()
    def update_critic_target(self) -> None:
        """Q' <- tau Q + (1 - tau) Q', the encoder (convs, Trunk) at ``encoder_tau``."""
        h = self.hparams
        encoder = {id(p) for p in self.encoder_parameters()}
        pairs = list(zip(self.critic.parameters(), self.critic_target.parameters()))
        for in_encoder, tau in ((True, h.encoder_tau if h.encoder_tau is not None else h.critic_tau),
                                (False, h.critic_tau)):
            chosen = [(p, p_target) for p, p_target in pairs if (id(p) in encoder) == in_encoder]
            ema_update_([p_target for _, p_target in chosen], [p for p, _ in chosen], tau)

    # ------------------------------------------------------------------ health
    def health(self, batch) -> dict[str, torch.Tensor | float]:
        """See ``model_free.critic_health``. Q is min(Q1, Q2) as the targets use it; srank reads Q1's
        features; the DR3 dot pairs (s, a) with (s', a' ~ pi(s')). The figures on clean
        observations, the augmentation gap under DrQ's shift, the TD loss (K, M shifts) and its ND
        score as in training, all shifts from a generator seeded the same at every check. Without image
        keys: no augmentation gap and no ND score (nothing to shift, no conv map), and with a state
        encoder no encoder srank (``model_free.critic_health``)."""
        generator = torch.Generator().manual_seed(0)
        action = batch["action"].float()
        with self.acting():
            encoded = self.critic.encoder(batch["obs"])
            phi = self.critic.features(encoded, action)
            next_conv = self.critic.encoder(batch["next_obs"])
            next_action = squashed_normal(*self.actor(next_conv)).sample()
            out = critic_health(torch.min(*self.critic.values(phi)), phi, self.critic.features(next_conv, next_action),
                                encoded if learned(self.critic.encoder) else None, batch)
            if self.spec.image_keys:
                # The gap under DrQ's shift, pad 4 for an agent trained without augmentation (SAC+AE): the common yardstick.
                shift = lambda x: random_shift(x, self.hparams.image_pad or 4, generator)
                shifted = lambda: on_images(shift, self.spec.obs_keys, batch["obs"])
                q_a, q_b = (torch.min(*self.critic(self.critic.encoder(shifted()), action))
                            for _ in range(2))
                out["augmentation_gap"] = augmentation_gap(q_a, q_b)
        with training_mode(self):
            h = self.hparams
            next_obs = self.augmented_if(batch["next_obs"], h.k_aug, generator)
            obs = self.augmented_if(batch["obs"], h.m_aug, generator)
            td_loss, parts = self.critic_loss(obs, next_obs, batch, self.log_alpha.exp().detach())
            out["td_loss"] = td_loss.detach()
            if parts["feature_map"] is not None:
                out["nd_score"] = nd_under(td_loss, parts["feature_map"])
        return out
