"""One value-based learner for Atari from pixels, configured the way Dopamine's JAX FullRainbowAgent is
(google/dopamine, dopamine/jax/agents/full_rainbow/full_rainbow_agent.py, with the gin presets of
dopamine/labs/atari_100k/configs behind the published Atari 100k numbers). Each published
agent is a config of it: DQN (Nature), NDDQN, DrQ(eps), DER and A-LIX-Atari (configs/*_atari.yaml).

    for each env step:   act epsilon-greedily (noisy nets: with fresh weight noise, epsilon 0); store the frame
    for each update:     sample (s, a, R^(n), gamma^n, s') with frame stack 4    [prioritized: by p^alpha]
                         [DrQ: augment s and s' independently: edge pad 4 + crop + intensity]
                         a* = argmax_a Q(s', a)           [double: online net; else target net]
                         target = R + gamma^n Q_target(s', a*)         (Huber loss)
                                  [C51: project R + gamma^n Z_target(s', a*) onto the support; cross-entropy]
                                  [QR-DQN: R + gamma^n theta_j(s', a*) for each target quantile j;
                                   quantile Huber loss, Q = the quantiles' mean]
                         minimise mean(w * loss) [+ dr3_coef * phi(s) . phi(s')]   [w: importance weights]
                                  [+ cql_alpha * (logsumexp_a Q(s, a) - Q(s, a))]
                                  [+ vib_beta * KL(N(phi_m(s), phi_Sigma(s)) || N(0, I))]  with Adam
                         [prioritized: p <- loss]   [A-LIX: one dual step on the mixing strength S]
                         every `target_update_period` env steps of updates: Q_target <- Q

Network (Dopamine's FullRainbowNetwork): encoder -> Dense(hidden) + ReLU -> advantage (A x atoms)
[and value (atoms): dueling] -> logits (B, A, atoms); the Dense layers noisy when ``noisy``. Under QR-DQN
the "atoms" are the ``num_quantiles`` quantiles themselves (returns, not logits of probabilities).

The encoder reads what the environment gives (``make_encoder``): images a CNN, vectors the first layer
of Dopamine's classic-control network (``worldmodels.nets.vector.VectorTorso``: [rescale to [-1, 1]]
Dense(hidden) + ReLU, so that with the Dense(hidden) + ReLU above it a vector-only learner has Dopamine's
two hidden layers of 512), a dict both side by side (``worldmodels.nets.keyed``). The torso is an
encoder as the CNN is: never noisy (Dopamine's noisy layers are the Dense layers after the encoder;
its classic-control networks have none). The heads sit on top unchanged. DrQ's augmentation touches the
image keys only (none on a vector-only task); A-LIX mixes a conv feature map, so it takes image keys only.
"""

from __future__ import annotations

import copy
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from model_free.critic_health import critic_health, nd_under, training_mode
from model_free.exploration import linearly_decaying_epsilon
from model_free.obs_batches import on_images, one_tensor, rows_of
from worldmodels.diagnostics import augmentation_gap
from worldmodels.errors import ConfigError
from worldmodels.nets.draws import DeviceStream
from worldmodels.nets.keyed import image_input, layout_encoder, vector_width
from worldmodels.nets.vector import VectorTorso
from worldmodels.nets import (ALIXAtariEncoder, NatureCNN, NoisyLinear, categorical_projection, make_support,
                              noise_forced, quantile_huber_loss)
from worldmodels.regularizers import (AdaptiveStrength, GaussianBottleneck, LocalSignalMixing, LossTerms,
                                      alix_dual_step, cql_penalty, dr3_penalty, drq_atari_augment, gradient_recording_off, random_shift)
from worldmodels.replay import PrioritizedTransitionView, TransitionView
from worldmodels.training import Agent, EnvSpec
from worldmodels.training.optim import TFRMSprop

ENCODERS = ("nature_same", "nature_valid", "alix")


def make_image_encoder(name: str, channels: int, size: int, feature_dim: int, mixing: nn.Module | None) -> nn.Module:
    """``nature_same``: Dopamine's Nature CNN (SAME padding, 7744 features at 84x84), the default;
    ``nature_valid``: the original Nature CNN (3136); ``alix``: A-LIX's Atari encoder."""
    if name == "alix":
        return ALIXAtariEncoder(channels, size, feature_dim, mixing)
    return NatureCNN(channels, size, name.removeprefix("nature_"), mixing)


def make_encoder(name: str, spec: EnvSpec, feature_dim: int, mixing: nn.Module | None, hidden: int = 512,
                 vector_min: list[float] | None = None, vector_max: list[float] | None = None) -> nn.Module:
    """The image encoder ``name`` for image keys, Dopamine's classic-control first layer (``hidden`` units,
    inputs rescaled from [vector_min, vector_max] to [-1, 1] when given) for vector keys; a dict's
    features [CNN features, torso features] (``worldmodels.nets.keyed.layout_encoder``)."""
    image = partial(make_image_encoder, name, feature_dim=feature_dim, mixing=mixing)
    vector = partial(VectorTorso, hidden=hidden, low=vector_min, high=vector_max)
    return layout_encoder(spec.obs_keys, image, vector)


def check_vector_bounds(low: list[float] | None, high: list[float] | None, width: int | None = None) -> None:
    """Refuse in one sentence vector bounds that are not one (min, max) pair per vector value with the max
    above the min (``width``: how many values the environment's vector keys hold, once it is known)."""
    if low is None and high is None:
        return
    if low is None or high is None or len(low) != len(high) or any(b <= a for a, b in zip(low, high)):
        raise ConfigError(f"model.vector_min is {low} and model.vector_max {high}; give both or neither, as equally "
                          "long lists with every max above its min.")
    if width is not None and len(low) != width:
        raise ConfigError(f"model.vector_min and vector_max bound {len(low)} values, and this environment's vector keys "
                          f"hold {width}; give one bound per value (a frame stack counts each frame), or none.")


def dense(in_dim: int, out_dim: int, noisy: bool, sigma0: float) -> nn.Module:
    """A Dense layer as Dopamine builds it: NoisyLinear, or Linear with Xavier-uniform weights and zero bias."""
    if noisy:
        return NoisyLinear(in_dim, out_dim, sigma0)
    layer = nn.Linear(in_dim, out_dim)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class QNetwork(nn.Module):
    def __init__(self, encoder: nn.Module, num_actions: int, hidden: int, num_atoms: int, dueling: bool,
                 noisy: bool, sigma0: float, bottleneck: bool = False):
        super().__init__()
        self.encoder = encoder
        self.num_actions, self.num_atoms = num_actions, num_atoms
        layer = partial(dense, noisy=noisy, sigma0=sigma0)
        self.hidden = layer(encoder.out_dim, hidden)
        self.advantage = layer(hidden, num_actions * num_atoms)
        self.value = layer(hidden, num_atoms) if dueling else None
        self.bottleneck = GaussianBottleneck(hidden) if bottleneck else None

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        """Penultimate features phi(s) (B, hidden), shared by every action (DR3's discrete phi(s, a))."""
        return self.features_from_encoded(self.encoder(obs))

    def features_from_encoded(self, encoded: torch.Tensor) -> torch.Tensor:
        return self.features_and_kl(encoded)[0]

    def features_and_kl(self, encoded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """phi and, with the bottleneck, its KL to N(0, I) per row (None without). The bottleneck's phi is
        a sample of N(phi_m, phi_Sigma) in training mode (the target net's too, as noisy nets sample
        their noise there), its mean when acting."""
        phi = F.relu(self.hidden(encoded))
        return self.bottleneck(phi) if self.bottleneck is not None else (phi, None)

    def logits(self, phi: torch.Tensor) -> torch.Tensor:
        """(B, A, atoms) from features; dueling combines the streams before the softmax, as Dopamine does."""
        advantage = self.advantage(phi).view(-1, self.num_actions, self.num_atoms)
        if self.value is None:
            return advantage
        return self.value(phi)[:, None, :] + advantage - advantage.mean(dim=1, keepdim=True)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.logits(self.features(obs))


class Rainbow(Agent):
    """Args (defaults: Dopamine's DER.gin, the full agent; each config says what differs):
        batch_size, n_step, gamma: transitions per update, multi-step return length, discount.
        optimizer: ``adam`` (Dopamine's Atari 100k agents: lr 1e-4, eps ``adam_eps`` 1.5e-4) or
            ``rmsprop`` (Nature DQN: TensorFlow's centred RMSProp, ``TFRMSprop``, decay 0.95, eps 1e-5).
        lr, adam_eps: learning rate; Adam's epsilon.
        max_grad_norm: clip the gradient's global norm to this (None: no clipping, as Dopamine).
        encoder: ``nature_same`` (Dopamine's), ``nature_valid`` (Nature DQN's) or ``alix`` (A-LIX-Atari's).
        hidden: units of the Dense layer before the heads. feature_dim: the ``alix`` encoder's output size.
        double: choose a* with the online net (double DQN); else with the target net.
        dueling: value and advantage streams.
        num_atoms, v_min, v_max: C51's support (num_atoms 1: a plain Q-value with the Huber loss).
        num_quantiles: QR-DQN's head (Dabney et al. 2018) with this many quantiles per action in place of
            C51's (0: off; num_atoms, v_min and v_max are then unused). Q(s, a) is the quantiles' mean; each
            is regressed on r + gamma^n times every quantile of the target net at a* (chosen as ``double``
            says) by ``worldmodels.nets.quantile_huber_loss`` (kappa 1, summed over the online quantiles,
            averaged over the target's), which is also the priority under ``prioritized``.
        noisy, noisy_sigma0: noisy Dense layers (factorised; sigma = sigma0 / sqrt(fan in), Dopamine's 0.1).
        prioritized, priority_alpha, priority_beta, priority_beta_steps: prioritized replay (see
            ``PrioritizedTransitionView``; Dopamine's effective alpha = beta = 0.5, beta constant).
        target_update_period: env steps between copies of the online net into the target net,
            counted in updates (period x updates per env step); 1 makes the target the online net
            as it was before this env step's updates.
        epsilon_train, epsilon_eval, epsilon_decay_steps: epsilon-greedy exploration, from 1 to
            ``epsilon_train`` over the decay steps after warm-up (noisy nets: 0 while training);
            ``epsilon_eval`` for the evaluation policy.
        updates_per_env_step, update_period: gradient updates per round, and env steps between rounds
            (Dopamine's ``num_updates_per_train_step`` and ``update_period``: Nature DQN updates once
            every 4 env steps, A-LIX-Atari twice every env step).
        augment: DrQ's Atari augmentation of s and s' (edge pad 4, random crop, intensity x(1 + 0.05 N)).
        augment_crop: ``batch`` (one crop offset for the whole batch, as Dopamine's 2021 code that produced
            the published DrQ(eps) runs) or ``sample`` (one per image); see ``drq_atari_augment``.
        random_warmup: act uniformly at random during the warm-up (None: unless noisy, as Dopamine, whose
            noisy agents act with their own noisy policy from the first step; A-LIX-Atari's Table 7 lists
            1600 random exploration steps, so its config sets true).
        alix, alix_init, alix_target_nd, alix_lr, alix_betas, alix_max_shift: one A-LIX layer after the
            encoder's last conv + ReLU, its strength S tuned toward the ND target by its own Adam.
        dr3_coef: weight of DR3's phi(s) . phi(s') on the online net's penultimate features (0: off).
        cql_alpha: weight of CQL(H)'s logsumexp_a Q(s, a) - Q(s, a_data) (0: off), for offline training.
            Under C51 and QR-DQN the Q-values are the distributions' means (CQL's own Atari agent was
            QR-DQN with 200 quantiles: its loss, a sum over them, pulls on Q up to N/2 = 100 times as hard as
            the scalar Huber loss, so an alpha there weighs that much less against the TD loss).
        vib_beta: weight of a variational information bottleneck on the penultimate features (0: none):
            the heads read a Gaussian sample of them (its mean when acting), beta x its KL to N(0, I) is
            added to the loss (``worldmodels.regularizers.vib``; against overfitting: Kumar et al. 2021,
            arXiv:2109.10813).
        vector_min, vector_max: Dopamine's ``min_vals`` / ``max_vals``: bounds of each value of the vector
            keys (concatenated in key order; frame stacks count each frame), rescaled to [-1, 1] before
            the torso's Dense layer (CartPole's: [-2.4, -5, -pi/12, -2pi] and [2.4, 5, pi/12, 2pi]); None:
            the values as they are (Dopamine's LunarLander). The vector torso's width is ``hidden``.
    """

    def __init__(self, batch_size: int = 32, n_step: int = 10, gamma: float = 0.99, optimizer: str = "adam",
                 lr: float = 1e-4, adam_eps: float = 1.5e-4, max_grad_norm: float | None = None, encoder: str = "nature_same",
                 hidden: int = 512, feature_dim: int = 50, double: bool = True, dueling: bool = True,
                 num_atoms: int = 51, v_min: float = -10.0, v_max: float = 10.0, num_quantiles: int = 0, noisy: bool = True,
                 noisy_sigma0: float = 0.1, prioritized: bool = True, priority_alpha: float = 0.5,
                 priority_beta: float = 0.5, priority_beta_steps: int = 0, target_update_period: int = 2000,
                 epsilon_train: float = 0.01, epsilon_eval: float = 0.001, epsilon_decay_steps: int = 2000,
                 updates_per_env_step: float = 1.0, update_period: int = 1, augment: bool = False,
                 augment_crop: str = "batch", random_warmup: bool | None = None, alix: bool = False,
                 alix_init: float = 1.0, alix_target_nd: float = 0.75, alix_lr: float = 1e-4,
                 alix_betas: tuple[float, float] = (0.5, 0.999), alix_max_shift: float = 2.5, dr3_coef: float = 0.0,
                 cql_alpha: float = 0.0, vib_beta: float = 0.0, vector_min: list[float] | None = None,
                 vector_max: list[float] | None = None):
        if update_period < 1 or updates_per_env_step <= 0:
            raise ConfigError(f"model.update_period is {update_period} and model.updates_per_env_step "
                              f"{updates_per_env_step}; update at least once every update_period >= 1 env steps.")
        super().__init__(updates_per_env_step / update_period)
        self.save_hyperparameters()
        if optimizer not in ("adam", "rmsprop"):
            raise ConfigError(f"model.optimizer is '{optimizer}'; choose adam or rmsprop.")
        if augment_crop not in ("batch", "sample"):
            raise ConfigError(f"model.augment_crop is '{augment_crop}'; choose batch or sample.")
        if encoder not in ENCODERS:
            raise ConfigError(f"model.encoder is '{encoder}'; choose one of {', '.join(ENCODERS)}.")
        if num_atoms < 1:
            raise ConfigError(f"model.num_atoms is {num_atoms}; use 1 (a plain Q-value) or at least 2 (C51).")
        if num_quantiles < 0:
            raise ConfigError(f"model.num_quantiles is {num_quantiles}; use 0 (no quantile head) or at least 1 (QR-DQN).")
        # What the N outputs per action are: QR-DQN's quantiles, C51's logits on the support, or one Q-value.
        self.head = "quantile" if num_quantiles > 0 else "c51" if num_atoms > 1 else "scalar"
        if self.head == "c51":
            self.register_buffer("support", make_support(num_atoms, v_min, v_max), persistent=False)
        check_vector_bounds(vector_min, vector_max)
        if batch_size < 1 or lr <= 0 or n_step < 1 or target_update_period < 1:
            raise ConfigError("model.batch_size, n_step and target_update_period must be at least 1 and model.lr positive.")
        if prioritized:
            self.view = PrioritizedTransitionView(batch_size, n_step, gamma, priority_alpha, priority_beta,
                                                  priority_beta_steps)
        else:
            self.view = TransitionView(batch_size, n_step, gamma)
        self.random_warmup = (not noisy) if random_warmup is None else random_warmup
        # Updates between target syncs; 1: the target net IS the online net before each update, so none is kept.
        self.sync_every = max(1, round(target_update_period * self.updates_per_env_step))
        self.explore_generator = torch.Generator().manual_seed(torch.initial_seed())  # seed_everything ran before
        # Weight noise and A-LIX shifts: drawn on the device of the batch, from a stream the two passes over
        # s' replay (next_state_logits) and the checkpoint keeps, whatever the device.
        self.noise_stream = DeviceStream(torch.initial_seed() + 1)
        self.target_equals_online = False  # the target net holds the online weights (next_state_logits)

    # ------------------------------------------------------------------ networks
    def build(self, spec: EnvSpec) -> None:
        super().build(spec)
        h = self.hparams
        spec.require(type(self).__name__, actions=("discrete",))
        if h.alix:  # its mixing layer shifts a conv feature map
            spec.require("A-LIX (model.alix)", actions=("discrete",), kinds=("image",))
        check_vector_bounds(h.vector_min, h.vector_max, vector_width(spec.obs_keys))
        mixing = None
        if h.alix:
            self.alix_strength = AdaptiveStrength(h.alix_init, h.alix_target_nd, h.alix_lr, tuple(h.alix_betas))
            mixing = LocalSignalMixing(self.alix_strength, h.alix_max_shift)
        encoder = make_encoder(h.encoder, spec, h.feature_dim, mixing, h.hidden, h.vector_min, h.vector_max)
        if h.alix and min(encoder.feature_shape[1:]) < 3:
            raise ConfigError(f"model.alix needs a conv feature map of at least 3x3 to mix, but encoder '{h.encoder}' "
                              f"ends in {encoder.feature_shape[1]}x{encoder.feature_shape[2]} at "
                              f"{image_input(spec.obs_keys)[1]} px; use larger images or another encoder.")
        outputs = h.num_quantiles if self.head == "quantile" else h.num_atoms
        self.q = QNetwork(encoder, spec.num_actions, h.hidden, outputs, h.dueling, h.noisy, h.noisy_sigma0,
                          bottleneck=h.vib_beta > 0)
        if self.sync_every > 1:
            self.q_target = copy.deepcopy(self.q).requires_grad_(False)
            self.target_equals_online = True
            for layer in self.q_target.modules():  # the target's mixing shares the online S (reference code)
                if isinstance(layer, LocalSignalMixing):
                    layer.strength, layer.record_gradient = self.alix_strength, False
        for layer in self.modules():
            if isinstance(layer, (NoisyLinear, LocalSignalMixing)):
                layer.stream = self.noise_stream

    def replay_view(self) -> TransitionView:
        return self.view

    def compiled_modules(self) -> dict:
        """What ``worldmodels.training.compile.compile_agent`` compiles: of the online and target nets,
        the encoder unless it mixes (A-LIX: random shifts, gradient hooks), and the Dense layers and
        heads when they are plain (noisy nets and the information bottleneck draw noise in their
        forward); a net of which both are pure is compiled whole (s' through it), the online net's parts
        also one by one (the update calls them so). DER and A-LIX-Atari, noisy and mixing, leave nothing."""
        heads = not self.hparams.noisy and self.q.bottleneck is None
        nets = {"q": self.q, **({"q_target": self.q_target} if self.sync_every > 1 else {})}
        out = {}
        for name, net in nets.items():
            encoder = not any(isinstance(m, LocalSignalMixing) for m in net.encoder.modules())
            parts = {**({f"{name}.encoder": net.encoder} if encoder else {}),
                     **({f"{name}.features_and_kl": net.features_and_kl, f"{name}.logits": net.logits} if heads else {})}
            if not (encoder and heads):
                out |= parts
                continue
            if name == "q":  # the update calls the online net's parts one by one
                out |= parts
            out[name] = net  # pure throughout: compiled whole (s' goes through it whole)
        return out

    def configure_optimizers(self):
        h = self.hparams
        if h.optimizer == "rmsprop":
            optimizer = TFRMSprop(self.q.parameters(), lr=h.lr)
        else:
            # On the CPU torch's fused Adam: one pass over each tensor instead of seven (3-4x faster, a fifth
            # of a DER update); the same formula, rounded in another order (~1 ulp on a few weights per step).
            on_cpu = all(p.device.type == "cpu" for p in self.q.parameters())
            optimizer = torch.optim.Adam(self.q.parameters(), lr=h.lr, eps=h.adam_eps, fused=True if on_cpu else None)
        # S's Adam goes with it so that Lightning checkpoints its moments; only AdaptiveStrength.update steps it.
        return [optimizer, self.alix_strength.make_optimizer()] if h.alix else optimizer

    def q_values(self, logits: torch.Tensor) -> torch.Tensor:
        """Q(s, a) from logits (..., atoms): the expected return under C51, the quantiles' mean under
        QR-DQN, else the single logit."""
        if self.head == "c51":
            return (logits.softmax(-1) * self.support).sum(-1)
        if self.head == "quantile":
            return logits.mean(-1)
        return logits[..., 0]

    # ------------------------------------------------------------------ acting
    def epsilon(self, explore: bool) -> float:
        h = self.hparams
        if not explore:
            return h.epsilon_eval
        if h.noisy:  # Dopamine's zero_epsilon: the noise explores
            return 0.0
        return linearly_decaying_epsilon(self.counters.env_steps, self.warmup_steps, h.epsilon_decay_steps, h.epsilon_train)

    def act(self, obs, state, first, explore):
        with noise_forced(self.q, explore and self.hparams.noisy):
            greedy = self.q_values(self.q(obs)).argmax(dim=-1)
        n = rows_of(obs)
        random = torch.randint(0, self.spec.num_actions, (n,), generator=self.explore_generator).to(greedy.device)
        explore_mask = (torch.rand(n, generator=self.explore_generator) < self.epsilon(explore)).to(greedy.device)
        return torch.where(explore_mask, random, greedy), None

    # ------------------------------------------------------------------ learning
    def training_step(self, batch, batch_idx):
        h = self.hparams
        obs, next_obs = self.update_input(batch["obs"]), self.update_input(batch["next_obs"])
        action = batch["action"]
        phi, kl = self.q.features_and_kl(self.q.encoder(obs))
        logits = self.q.logits(phi)  # (B, A, atoms)
        chosen = logits[torch.arange(len(action), device=action.device), action]  # (B, atoms)
        next_online, next_target, phi_next = self.next_state_logits(next_obs)
        loss_per_sample, target_value = self.td_loss(chosen, next_online, next_target, batch["reward"], batch["discount"])
        weight = batch.get("weight")
        td_loss = loss_per_sample.mean() if weight is None else (weight * loss_per_sample).mean()
        terms = LossTerms(td_loss)  # the regularisers the options switch on, in the order they join the loss
        terms.add("dr3_dot", h.dr3_coef, lambda: dr3_penalty(phi, phi_next))
        terms.add("cql_penalty", h.cql_alpha, lambda: cql_penalty(self.q_values(logits), action))
        terms.add("vib_kl", h.vib_beta, lambda: kl.mean())
        loss = terms.loss

        optimizers = self.optimizers()
        optimizer = optimizers[0] if isinstance(optimizers, list) else optimizers
        optimizer.zero_grad()
        self.manual_backward(loss)
        grad_norm = self.clip_gradient()
        optimizer.step()
        self.target_equals_online = False
        if weight is not None:
            self.view.update_priorities(batch["index"], loss_per_sample)
        self.sync_target()

        metrics = {"train/td_loss": td_loss, "train/q_mean": self.q_values(chosen.detach()).mean(),
                   "train/target_mean": target_value.mean(), "train/epsilon": self.epsilon(True)}
        if grad_norm is not None:
            metrics["train/grad_norm"] = grad_norm
        if weight is not None:
            metrics["train/is_weight_mean"] = weight.mean()
        metrics.update(terms.metrics)
        if h.alix:  # one dual step on S from the A-LIX layer's recorded gradient of the TD loss
            metrics.update(alix_dual_step(self.alix_strength, self.q.encoder))
        self.log_scalars(metrics)

    def update_input(self, obs):
        """s or s' as the update reads it: under ``augment``, DrQ's augmentation of each image key, each
        call drawing its own crop and intensity (so s and s' are augmented independently); else as it is."""
        if not self.hparams.augment:
            return obs
        return on_images(partial(drq_atari_augment, crop=self.hparams.augment_crop), self.spec.obs_keys, obs)

    def next_state_logits(self, next_obs: torch.Tensor):
        """Logits of s' under the online net (for double Q's a*) and the target net, and the online
        features phi(s') (with gradient under DR3, else None).

        The two passes see the same random draws (weight noise, A-LIX shift), as Dopamine feeds both
        nets one noise key. Exact shortcut: when the target holds the online weights (synced before
        every update, ``sync_every`` 1; or the first update after a sync, as every other update of
        A-LIX-Atari's two per env step), the target pass would repeat the online one bit for bit, so
        one pass serves both."""
        shared = self.sync_every == 1 or self.target_equals_online
        device = one_tensor(next_obs).device
        draws = None if shared else self.noise_stream.on(device).get_state()
        if self.hparams.dr3_coef > 0:  # s' also through the online net with gradient: DR3 regularizes its features
            with gradient_recording_off(self.q):
                phi_next = self.q.features(next_obs)
            next_online = self.q.logits(phi_next).detach()
        else:
            phi_next = None
            with torch.no_grad():
                next_online = self.q(next_obs)
        if shared:
            return next_online, next_online, phi_next
        self.noise_stream.on(device).set_state(draws)
        with torch.no_grad():
            return next_online, self.q_target(next_obs), phi_next

    @torch.no_grad()
    def next_actions(self, next_online: torch.Tensor, next_target: torch.Tensor) -> torch.Tensor:
        """a* = argmax_a Q(s', a): by the online net (double DQN, van Hasselt et al. 2016) or the target net."""
        return self.q_values(next_online if self.hparams.double else next_target).argmax(-1)

    def td_loss(self, chosen: torch.Tensor, next_online: torch.Tensor, next_target: torch.Tensor,
                reward: torch.Tensor, discount: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample loss of the chosen logits (B, atoms), and the target's expected value (B,).
        ``discount`` is gamma^n, or 0 past a terminal (TransitionView)."""
        rows = torch.arange(len(reward), device=reward.device)
        with torch.no_grad():
            target_logits = next_target[rows, self.next_actions(next_online, next_target)]  # (B, atoms)
            if self.head == "c51":
                target = categorical_projection(self.support, target_logits.softmax(-1), reward, discount)
                target_value = (target * self.support).sum(-1)
            elif self.head == "quantile":  # every target quantile shifted and scaled: (B, N')
                target = reward[:, None] + discount[:, None] * target_logits
                target_value = target.mean(-1)
            else:
                target = target_value = reward + discount * target_logits[:, 0]
        if self.head == "c51":
            return -(target * chosen.log_softmax(-1)).sum(-1), target_value
        if self.head == "quantile":
            return quantile_huber_loss(chosen, target), target_value
        return F.smooth_l1_loss(chosen[:, 0], target, reduction="none"), target_value

    def clip_gradient(self) -> torch.Tensor | None:
        if self.hparams.max_grad_norm is None:
            return None
        return torch.nn.utils.clip_grad_norm_(self.q.parameters(), self.hparams.max_grad_norm)

    def sync_target(self) -> None:
        """Copy the online net into the target every ``sync_every`` updates (``counters.updates``
        counts this update already)."""
        if self.sync_every > 1 and self.counters.updates % self.sync_every == 0:
            self.q_target.load_state_dict(self.q.state_dict())
            self.target_equals_online = True

    # ------------------------------------------------------------------ checkpoint
    # The priorities are the view's state, saved by the loop beside each process's replay (Experience).
    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self.target_equals_online = False  # the loaded target may be older than the online net: pass it
        if isinstance(self.view, PrioritizedTransitionView) and "replay_priorities" in checkpoint:
            self.view.load_state_dict(checkpoint["replay_priorities"])  # written before the loop kept them

    # ------------------------------------------------------------------ health
    def health_augmentation(self, obs):
        """The augmentation health compares Q under, on the image keys: DrQ's own, else DrQ-v2's random
        shift (pad 4), the common yardstick for agents trained without one."""
        if self.hparams.augment:
            return self.update_input(obs)
        return on_images(partial(random_shift, pad=4), self.spec.obs_keys, obs)

    def health(self, batch) -> dict[str, torch.Tensor | float]:
        """See ``model_free.critic_health``. Q, features and the augmentation gap in evaluation mode (no
        noise, no A-LIX mixing); the TD loss and its ND score as in training (augmentation, noise, mixing).
        Without image keys there is no augmentation gap (nothing is augmented) and no ND score (no conv
        feature map)."""
        action = batch["action"]
        rows = torch.arange(len(action), device=action.device)
        q_of = lambda obs: self.q_values(self.q(obs))[rows, action]
        with self.acting():
            encoded = self.q.encoder(batch["obs"])
            phi = self.q.features_from_encoded(encoded)
            q = self.q_values(self.q.logits(phi))[rows, action]
            out = critic_health(q, phi, self.q.features(batch["next_obs"]), encoded, batch)
            if self.spec.image_keys:
                shifted = lambda: self.health_augmentation(batch["obs"])
                out["augmentation_gap"] = augmentation_gap(q_of(shifted()), q_of(shifted()))
        with training_mode(self):
            obs, next_obs = self.update_input(batch["obs"]), self.update_input(batch["next_obs"])
            encoded, feature_map = self.q.encoder.encode_with_map(obs)
            phi = self.q.features_from_encoded(encoded)
            chosen = self.q.logits(phi)[rows, action]
            next_online, next_target, _ = self.next_state_logits(next_obs)
            loss, _ = self.td_loss(chosen, next_online, next_target, batch["reward"], batch["discount"])
            td_loss = loss.mean()
            out["td_loss"] = td_loss.detach()
            if feature_map is not None:
                out["nd_score"] = nd_under(td_loss, feature_map)
        return out
