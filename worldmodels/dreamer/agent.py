"""DreamerV3 (Hafner et al., 2023) as an agent of the shared pipeline.

    each update, on B x T replayed sequences:
        world model:  observe the sequence with the RSSM; minimise image + vector + reward + continue + KL
                      losses
        behaviour:    imagine H steps from every posterior state; train the actor on normalised
                      lambda-return advantages and the two-hot critic on the returns
    acting: carry (h, z, a) across env steps; reset it at episode starts

Observations: images, vectors, or a dict of both (world_model.py says how each is read). Actions:
Discrete, MultiDiscrete (one categorical per sub-action; the world model and the critic read their
one-hots side by side) or Box.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
import torch.nn.functional as F

from worldmodels.diagnostics.signals import feature_dot, overestimation, srank
from worldmodels.diagnostics.open_loop import open_loop_video
from worldmodels.dreamer.behavior import Actor, BehaviorConfig, Critic, ImaginationNoise, ReturnScale, behavior_losses
from worldmodels.dreamer.rssm import State
from worldmodels.dreamer.world_model import SIZES, Size, WorldModel, observation_batch
from worldmodels.envs.observations import map_obs
from worldmodels.errors import ConfigError
from worldmodels.nets.distributions import SPACES, concatenated_one_hots, gumbel_from_uniform, one_hot_indices
from worldmodels.nets.draws import DeviceStream
from worldmodels.nets.dreamer_blocks import NORMS
from worldmodels.replay import SequenceView
from worldmodels.training import Agent, EnvSpec
from worldmodels.training.optim import OPTIMIZERS, adaptive_clip_grad_


class DreamerV3(Agent):
    """Args (defaults: the 2023 paper, arXiv 2301.04104, and its code, danijar/dreamerv3 at 8fa35f8):
        size: XS, S, M, L or XL (deterministic state, CNN depth, MLP width and depth).
        deter, cnn_depth, mlp_units, mlp_layers: override one dimension of the size (tests, ablations).
        vector_units, vector_layers: override the width and depth of the MLP encoder and decoder of vector
            observations (every size: 1024 x 5, the 2023 code's; see world_model.Size).
        stoch, classes: latent variables and classes per variable (32 x 32).
        batch_size, seq_len: replayed sequences per update and their length.
        train_ratio: replayed steps per env step; updates per env step = train_ratio / (B x T).
        horizon, gamma, lam: imagination length, discount, lambda of the returns. gamma is 1 - 1/333
            = 0.996997, the reference's ``horizon: 333`` (danijar/dreamerv3 8fa35f8, dreamerv3/configs.yaml
            line 89) turned into a discount as its ``discount = 1 - 1 / self.config.horizon`` does
            (dreamerv3/agent.py lines 196 and 363), not the rounded 0.997.
        free_nats, dyn_scale, rep_scale: KL balancing.
        entropy_coef: actor entropy bonus.
        slow_critic_fraction, slow_reg: EMA rate of the slow critic, weight of its regulariser.
        model_lr, model_eps, model_clip: world-model Adam and gradient-norm clip.
        ac_lr, ac_eps, ac_clip: actor and critic Adam and clip.
        unimix: uniform mix of every categorical (latents and discrete actor).
        video_every: log an open-loop video every this many updates (the first update included).
        dr3_coef: weight of the DR3 regulariser on the critic (0: off, the 2023 spec); see behavior.py.
        The 2024 spec's changes (configs/dreamer_2024.yaml sets them together; the defaults are 2023):
        norm: "layer" (LayerNorm) or "rms" (RMSNorm) after every hidden layer.
        optimizer: "adam", or "laprop" (2024: LaProp, with ``*_eps`` its epsilon).
        agc: adaptive gradient clipping of every parameter tensor to agc x its norm (0: off, clip the
            global gradient norm at ``*_clip`` instead).
        repval_scale: weight of the critic's loss on the replayed states' lambda-returns (0: off).
        two_hot_space: "symlog" (2023 code) or "raw" (2024 code): where the reward and critic bins are
            spaced evenly and their two-hot weights interpolate (worldmodels.nets.distributions).
        eval_policy: "sample" (the reference code: its evaluation policy samples from the actor) or
            "mode" (the most likely action).
    """

    def __init__(self, size: str = "S", deter: int | None = None, cnn_depth: int | None = None,
                 mlp_units: int | None = None, mlp_layers: int | None = None, vector_units: int | None = None,
                 vector_layers: int | None = None, stoch: int = 32, classes: int = 32,
                 batch_size: int = 16, seq_len: int = 64, train_ratio: float = 1024,
                 horizon: int = 15, gamma: float = 1 - 1 / 333, lam: float = 0.95, free_nats: float = 1.0,
                 dyn_scale: float = 0.5, rep_scale: float = 0.1, entropy_coef: float = 3e-4,
                 slow_critic_fraction: float = 0.02, slow_reg: float = 1.0, model_lr: float = 1e-4,
                 model_eps: float = 1e-8, model_clip: float = 1000.0, ac_lr: float = 3e-5, ac_eps: float = 1e-5,
                 ac_clip: float = 100.0, unimix: float = 0.01, video_every: int = 1000, dr3_coef: float = 0.0,
                 norm: str = "layer", optimizer: str = "adam", agc: float = 0.0, repval_scale: float = 0.0,
                 two_hot_space: str = "symlog", eval_policy: str = "sample"):
        if eval_policy not in ("sample", "mode"):
            raise ConfigError(f"model.init_args.eval_policy is '{eval_policy}'; choose sample or mode.")
        if size not in SIZES:
            raise ConfigError(f"model.init_args.size is '{size}'; choose one of {', '.join(SIZES)}.")
        if norm not in NORMS:
            raise ConfigError(f"model.init_args.norm is '{norm}'; choose one of {', '.join(NORMS)}.")
        if two_hot_space not in SPACES:
            raise ConfigError(f"model.init_args.two_hot_space is '{two_hot_space}'; choose one of {', '.join(SPACES)}.")
        if optimizer not in OPTIMIZERS:
            raise ConfigError(f"model.init_args.optimizer is '{optimizer}'; choose one of {', '.join(OPTIMIZERS)}.")
        super().__init__(updates_per_env_step=train_ratio / (batch_size * seq_len))
        self.save_hyperparameters()
        self.view = SequenceView(batch_size, seq_len)
        # The update's random draws (latents of the replayed sequences and of imagination, imagined
        # actions): drawn at the start of each update on the batch's device, from this stream, which the
        # checkpoint keeps (``update_noise``). Acting draws from the device's default generator.
        self.update_stream = DeviceStream(torch.initial_seed() + 2)  # seed_everything ran before

    def build(self, spec: EnvSpec) -> None:
        super().build(spec)
        spec.require("DreamerV3", actions=("discrete", "multi_discrete", "continuous"), kinds=("image", "vector"))
        if spec.frame_stack != 1:
            raise ConfigError("DreamerV3 remembers the past in its RSSM: set data.env.frame_stack to 1.")
        h, size = self.hparams, self.model_size()
        self.action_dim = action_width(spec)
        self.world_model = WorldModel(spec.obs_keys, self.action_dim, size, h.unimix, two_hot_space=h.two_hot_space)
        feat = self.world_model.rssm.feat_dim
        self.actor = Actor(feat, self.action_dim, spec.action_kind != "continuous", size.units, size.layers,
                           h.unimix, norm=h.norm, nvec=spec.action_nvec)
        self.critic = Critic(feat, size.units, size.layers, norm=h.norm, space=h.two_hot_space)
        self.returns_scale = ReturnScale()

    def model_size(self) -> Size:
        """The size preset with this agent's overrides."""
        h, table = self.hparams, SIZES[self.hparams.size]
        return Size(h.deter or table.deter, h.cnn_depth or table.depth, h.mlp_units or table.units,
                    table.layers if h.mlp_layers is None else h.mlp_layers, h.stoch, h.classes, h.norm,
                    h.vector_units or table.vector_units,
                    table.vector_layers if h.vector_layers is None else h.vector_layers)

    def replay_view(self) -> SequenceView:
        return self.view

    def configure_optimizers(self):
        h = self.hparams
        make = OPTIMIZERS[h.optimizer]
        return [make(self.world_model.parameters(), lr=h.model_lr, eps=h.model_eps),
                make(self.actor.parameters(), lr=h.ac_lr, eps=h.ac_eps),
                make(self.critic.net.parameters(), lr=h.ac_lr, eps=h.ac_eps)]

    def clip_gradients_(self, params, max_norm: float) -> torch.Tensor:
        """Clip by ``agc`` per tensor (2024) or by the global norm (2023); returns the global norm before."""
        if self.hparams.agc:
            return adaptive_clip_grad_(params, self.hparams.agc)
        return torch.nn.utils.clip_grad_norm_(params, max_norm)

    def compiled_modules(self) -> dict:
        """What ``worldmodels.training.compile.compile_agent`` compiles: the convolutional encoder and
        decoder (once per update on B x T frames), the RSSM's two step cells (recurrence and latent
        logits: T steps of ``observe``, H steps of imagination) and its batched prior, the reward and
        continue heads, the actor's network (H steps of imagination) and the critic's features, fast
        and slow networks. The latent and action draws stay in eager mode (see rssm.py).
        ``update_regions`` names what ``--compile full`` compiles instead: the whole update."""
        wm, rssm = self.world_model, self.world_model.rssm
        observation_nets = {f"world_model.{name}": getattr(wm, name)
                            for name in ("encoder", "vector_encoder", "decoder", "vector_decoder")
                            if getattr(wm, name) is not None}  # those the observation's keys call for
        return {**observation_nets,
                "world_model.rssm.posterior_step": rssm.posterior_step, "world_model.rssm.prior_step": rssm.prior_step,
                "world_model.rssm.prior_logits": rssm.prior_logits,
                "world_model.reward_head": wm.reward_head, "world_model.continue_head": wm.continue_head,
                "actor.net": self.actor.net, "critic.features": self.critic.features, "critic.net": self.critic.net,
                "critic.slow": self.critic.slow}

    def action_vectors(self, action: torch.Tensor) -> torch.Tensor:
        """Replay actions as RSSM inputs: one-hot for discrete spaces, the one-hots of the sub-actions side
        by side for MultiDiscrete ones ((B, T, len(nvec)) int64 -> (B, T, sum(nvec)), as the reference's RSSM
        flattens an action of several one-hots, danijar/dreamerv3 8fa35f8, dreamerv3/nets.py lines 112-114),
        as stored for continuous ones."""
        if self.spec.discrete:
            return F.one_hot(action.long(), self.action_dim).float()
        if self.spec.multi_discrete:
            return concatenated_one_hots(action, self.spec.action_nvec)
        return action.float()

    # ------------------------------------------------------------------ acting
    def initial_state(self, num_envs: int):
        return None  # made on the first call, on the right device

    def act(self, obs, state, first, explore):
        """Actions for ``obs`` (N, ...) or a dict of such tensors: int64 (N,) for Discrete spaces, int64
        (N, len(nvec)) for MultiDiscrete ones, float (N, A) in [-1, 1] for Box ones."""
        some = observation_batch(obs)
        n = some.shape[0]
        rssm = self.world_model.rssm
        if state is None:
            state = (rssm.initial(n), torch.zeros(n, self.action_dim, device=some.device))
            first = torch.ones_like(first)
        latent, prev_action = state
        embed = self.world_model.embed(obs)
        latent = rssm.obs_step(latent, prev_action, embed, first)
        policy = self.actor(latent.features())
        action = policy.mode if not explore and self.hparams.eval_policy == "mode" else policy.sample()
        if self.spec.discrete:
            return action.argmax(-1), (latent, action)
        if self.spec.multi_discrete:
            return one_hot_indices(action, self.spec.action_nvec), (latent, action)
        action = action.clamp(-1, 1)
        return action, (latent, action)

    # ------------------------------------------------------------------ learning
    @property
    def behavior_config(self) -> BehaviorConfig:
        h = self.hparams
        return BehaviorConfig(h.horizon, h.gamma, h.lam, h.entropy_coef, h.slow_reg, h.dr3_coef, h.repval_scale)

    def sequence_inputs(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(first, action vectors) of a replayed (B, T) batch as the RSSM reads them."""
        first = batch["first"].clone()
        first[:, 0] = True  # a sampled window starts from the initial state, whatever preceded it
        return first, self.action_vectors(batch["action"])

    def update_noise(self, batch) -> dict[str, torch.Tensor]:
        """Every random number one update draws, drawn at once on the batch's device from
        ``update_stream``: uniforms for the posterior latents of the (B, T) sequences (B, T, S, K), and
        the imagination's from the N = B x T starts (``ImaginationNoise``: latents (H, N, S, K) and the
        actor's noise (H, N, A)). Drawn outside the compiled update (a generator is no graph input), so
        that a compiled and an eager update draw the same numbers."""
        rssm, h = self.world_model.rssm, self.hparams
        b, t = batch["reward"].shape
        device = batch["reward"].device
        generator = self.update_stream.on(device)
        posterior = torch.rand((b, t, rssm.stoch, rssm.classes), generator=generator, device=device)
        imagination = ImaginationNoise.draw(rssm, self.actor, b * t, h.horizon, device, generator)
        return {"posterior": posterior, "imagined_latent": imagination.latent, "imagined_action": imagination.action}

    def update_regions(self) -> dict:
        """What ``--compile full`` compiles (``worldmodels.training.compile``): the update's two pure
        functions, the world model's loss and the actor's and critic's losses, in the 2023 spec's order
        (the behaviour imagines with the world model as its step left it). Batch and noise in, losses,
        start states and metrics (device tensors) out; the backward passes, clipping and optimizer
        steps run between and after them, on the graphs the compiled functions recorded."""
        return {"world_model_region": self.world_model_region, "behavior_region": self.behavior_region}

    def world_model_region(self, batch, noise: dict[str, torch.Tensor],
                           diagnostics: bool) -> tuple[torch.Tensor, State, torch.Tensor, dict]:
        """(world-model loss, the stopped posterior states as N = B x T imagination starts, their
        continue flags, metrics) of a replayed batch."""
        h = self.hparams
        first, action = self.sequence_inputs(batch)
        loss, post, metrics = self.world_model.loss(batch["obs"], action, batch["reward"], batch["terminal"], first,
                                                    h.free_nats, h.dyn_scale, h.rep_scale, diagnostics=diagnostics,
                                                    gumbel=gumbel_from_uniform(noise["posterior"]))
        start = State(*(x.detach().flatten(0, 1) for x in post))
        return loss, start, (~batch["terminal"]).float().flatten(), metrics

    def behavior_region(self, batch, start: State, start_cont: torch.Tensor, noise: dict[str, torch.Tensor],
                        diagnostics: bool) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """(actor loss, critic loss, metrics) of the rollouts imagined from ``start``."""
        imagination = ImaginationNoise(noise["imagined_action"], noise["imagined_latent"])
        return behavior_losses(self.world_model, self.actor, self.critic, self.returns_scale, start, start_cont,
                               self.behavior_config, batch, diagnostics=diagnostics, noise=imagination)

    def training_step(self, batch, batch_idx):
        h = self.hparams
        model_opt, actor_opt, critic_opt = self.optimizers()
        self.begin_update()
        noise = self.update_noise(batch)
        diagnostics = self.logs_now()

        model_loss, start, start_cont, metrics = self.world_model_region(batch, noise, diagnostics)
        model_opt.zero_grad()
        self.manual_backward(model_loss)
        metrics["wm/grad_norm"] = self.clip_gradients_(self.world_model.parameters(), h.model_clip)
        model_opt.step()

        actor_loss, critic_loss, behavior_metrics = self.behavior_region(batch, start, start_cont, noise, diagnostics)
        actor_opt.zero_grad()
        critic_opt.zero_grad()
        # One backward pass: the two losses reach disjoint weights (behavior_losses); what the actor's loss
        # leaves on the world model (continuous actions) is dropped by the next update's zero_grad.
        self.manual_backward(actor_loss + critic_loss)
        metrics["actor/grad_norm"] = self.clip_gradients_(self.actor.parameters(), h.ac_clip)
        actor_opt.step()
        metrics["critic/grad_norm"] = self.clip_gradients_(self.critic.net.parameters(), h.ac_clip)
        critic_opt.step()
        self.critic.update_slow(h.slow_critic_fraction)

        metrics["wm/loss"] = model_loss
        self.log_scalars({**metrics, **behavior_metrics})
        if h.video_every and (self.counters.updates - 1) % h.video_every == 0:
            first, action = self.sequence_inputs(batch)
            self.log_open_loop_video(batch, action, first)

    # ------------------------------------------------------------------ health
    HEALTH_CONTEXT = 5  # observed steps before the open-loop rollout, as the video's
    HEALTH_STEPS = (1, 5, 10, 15)  # imagined steps whose open-loop errors are logged (15: the horizon)

    @torch.no_grad()
    def health(self, batch) -> dict[str, torch.Tensor | float]:
        """Training-health figures on a held replay batch (B, T); the Health callback logs them as
        ``health/<name>``:

            open_loop_image_mse_step{k}      image squared error per pixel ([0, 1] units), with image keys,
            open_loop_vector_symlog_mse_step{k}  vector squared error per dimension (symlog space), with
                                             vector keys,
            open_loop_reward_error_step{k}   |predicted - replayed reward|,
            open_loop_kl_step{k}             KL[posterior || open-loop prior] (nats),
                for k in HEALTH_STEPS imagined steps after HEALTH_CONTEXT observed ones, along the
                recorded actions (WorldModel.open_loop_errors); steps past the sequence are left out
            value_mean, mc_return_mean       critic value of the replayed posterior states and their
                                             discounted Monte-Carlo return (gamma), over the states
                                             whose return is known
            value_overestimation             their mean difference (value - return)
            critic_srank, encoder_srank      srank (delta 0.01) of the critic's penultimate features
                                             and of the encoder output, over all B x T steps
            critic_feature_dot               DR3's quantity: mean phi(s_t) . phi(s_{t+1}) of the
                                             critic's penultimate features, over consecutive steps
                                             of one episode
            td_loss                          the critic's loss against the lambda-returns of
                                             trajectories imagined from these posterior states, as
                                             in training (``critic/td_loss``)
        """
        first, action = self.sequence_inputs(batch)
        embed = self.world_model.embed(batch["obs"])
        post, _ = self.world_model.rssm.observe(embed, action, first)
        out: dict[str, torch.Tensor | float] = {}

        errors = self.world_model.open_loop_errors(post, batch["obs"], action, batch["reward"], first,
                                                   self.HEALTH_CONTEXT, max(self.HEALTH_STEPS))
        for name, per_step in errors.items():
            for k in self.HEALTH_STEPS:
                if k <= per_step.shape[0]:
                    out[f"open_loop_{name}_step{k}"] = per_step[k - 1]

        feat = post.features()
        phi = self.critic.features(feat)  # (B, T, units)
        value = self.critic.decode(self.critic.head(phi))
        returned = batch["mc_valid"]  # states whose return is complete (worldmodels.training.health)
        out["value_mean"] = value[returned].mean()
        out["mc_return_mean"] = batch["mc_return"][returned].float().mean()
        out["value_overestimation"] = overestimation(value, batch["mc_return"], returned)
        out["critic_srank"] = srank(phi.flatten(0, 1))
        out["encoder_srank"] = srank(embed.flatten(0, 1))
        same_episode = ~batch["first"][:, 1:]  # pairs (t, t+1) that do not cross an episode start
        out["critic_feature_dot"] = feature_dot(phi[:, :-1][same_episode], phi[:, 1:][same_episode])

        start = State(*(x.flatten(0, 1) for x in post))
        # A copy of the return normaliser: its EMA would otherwise move with every check. The critic's extra
        # terms (DR3, the replay-value loss) are off: td_loss does not depend on them.
        _, _, imagined = behavior_losses(self.world_model, self.actor, self.critic, copy.deepcopy(self.returns_scale),
                                         start, (~batch["terminal"]).float().flatten(),
                                         dataclasses.replace(self.behavior_config, dr3_coef=0.0, repval_scale=0.0))
        out["td_loss"] = imagined["critic/td_loss"]
        return out

    @torch.no_grad()
    def open_loop_videos(self, batch, action, first, sequences: int = 6, context: int = 5) -> dict[str, torch.Tensor]:
        """The open-loop video (``worldmodels.diagnostics.open_loop``) of each image key of 1 or 3 channels
        (others are no picture to draw), by log name: ``wm/open_loop`` when the observation is one image,
        ``wm/open_loop_<key>`` for each image key of a dict, as the reference logs ``openl_<key>`` per image
        key (danijar/dreamerv3 8fa35f8, dreamerv3/agent.py lines 211-216). Empty without image keys: vectors
        make no video; their open-loop error is ``health``'s open_loop_vector_symlog_mse."""
        wm = self.world_model
        if wm.decoder is None:
            return {}
        obs = map_obs(lambda x: x[:sequences], batch["obs"])
        pred = wm.parts.split_images(wm.open_loop(obs, action[:sequences], first[:sequences], context))
        videos = {}
        for key in wm.parts.images:
            if key.shape[0] not in (1, 3):
                continue
            truth = obs[key.name] if isinstance(obs, dict) else obs
            name = f"wm/open_loop_{key.name}" if isinstance(obs, dict) else "wm/open_loop"
            videos[name] = open_loop_video(truth, pred[key.name], context)
        return videos

    def log_open_loop_video(self, batch, action, first) -> None:
        for name, video in self.open_loop_videos(batch, action, first).items():
            for logger in self.trainer.loggers:
                if hasattr(logger, "log_video"):
                    logger.log_video(name, [video.numpy()], step=self.trainer.global_step, fps=[10], format=["mp4"])


def action_width(spec: EnvSpec) -> int:
    """An action's width as the RSSM and the actor's output read it: the number of actions (one-hot), the
    sum of the sub-actions' choices (their one-hots side by side), or the Box's dimension."""
    if spec.discrete:
        return spec.num_actions
    if spec.multi_discrete:
        return sum(spec.action_nvec)
    return spec.action_dim
