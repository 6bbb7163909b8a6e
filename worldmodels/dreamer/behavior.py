"""DreamerV3's actor-critic, trained on trajectories imagined by the world model (2023 spec).

From every posterior state of the batch, imagine H = 15 steps with the actor, then
    returns   R_t = r_{t+1} + gamma c_{t+1} ((1 - lambda) v_{t+1} + lambda R_{t+1}),  R_H = v_H
    weights   w_t = prod_{i<=t} gamma c_i / gamma      (c_0 is the true continue flag of the start)
    scale     S = EMA_0.99(perc_95(R)) - EMA_0.99(perc_5(R))
    actor     -w * [ log pi(a|s) sg((R - v) / max(1, S)) ]   discrete and multi-discrete (REINFORCE)
              -w * (R - v) / max(1, S)                        continuous (backprop through the model)
              - 3e-4 * w * H[pi]
    critic    -w * [ log p_v(sg(R)) + log p_v(sg(v_slow)) ]   two-hot; v_slow an EMA (0.02) of the critic
              + dr3 * mean_t phi(s_t) . phi(s_{t+1})          optional DR3 (off by default)
              + repval * replay-value loss                    optional, the 2024 spec's (see repl_loss)
Continue flags c are the mode of the continue head, as in the reference code. phi are the critic's
penultimate features; DR3 pairs consecutive states of the imagined trajectory, the states the critic
trains on (every pair, unweighted).

As in the reference code (danijar/dreamerv3 8fa35f8, dreamerv3/agent.py), ``imag_loss`` trains the actor
and the critic on the imagined rollout and ``repl_loss`` the critic on the replayed sequences, both
with returns from one ``lambda_return``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from worldmodels.regularizers.dr3 import dr3_penalty
from worldmodels.dreamer.rssm import RSSM, State, stack_states
from worldmodels.nets.distributions import (MultiOneHot, OneHotStraightThrough, at_least_float32, bounded_normal,
                                            bounded_normal_parameters, categorical_entropy, categorical_log_prob,
                                            gumbel_from_uniform, make_bins, normal_entropy, straight_through_one_hot,
                                            two_hot_decode, two_hot_loss, unimix_logits)
from worldmodels.nets.dreamer_blocks import mlp
from worldmodels.nets.ema import ema_update_
from worldmodels.training.distributed import cat_over_ranks


def lambda_return(reward: torch.Tensor, keep: torch.Tensor, boot: torch.Tensor, chain: float | torch.Tensor,
                  gamma: float, dim: int = 0) -> torch.Tensor:
    """The lambda-return along ``dim``, for imagined and replayed trajectories alike (danijar/dreamerv3
    8fa35f8, dreamerv3/agent.py ``lambda_return``, which serves both its ``imag_loss`` and ``repl_loss``):

        R_T = boot_T
        R_t = r_{t+1} + gamma keep_{t+1} ((1 - c_{t+1}) boot_{t+1} + c_{t+1} R_{t+1})

    reward[t] and keep[t] (the continue flag, 0 past a terminal) arrive with step t; ``boot`` is the value
    the return falls back on; ``chain`` c is lambda, or a tensor like ``reward`` that is 0 where a
    trajectory ends (the return then bootstraps from ``boot`` alone). Returns R_0..R_{T-1} along ``dim``."""
    at = lambda x, t: x.select(dim, t) if torch.is_tensor(x) else x
    ret, out = boot.select(dim, -1), []
    for t in reversed(range(reward.shape[dim] - 1)):
        c = at(chain, t + 1)
        ret = reward.select(dim, t + 1) + gamma * keep.select(dim, t + 1) * (
            (1 - c) * boot.select(dim, t + 1) + c * ret)
        out.append(ret)
    return torch.stack(out[::-1], dim)


class ReturnScale(nn.Module):
    """EMA of the 5th and 95th percentiles of the returns; ``scale`` is max(1, high - low), so large
    returns are scaled down while small ones are not scaled up (which would amplify noise)."""

    def __init__(self, decay: float = 0.99, low: float = 0.05, high: float = 0.95):
        super().__init__()
        self.decay = decay
        # A buffer, so it lives on the module's device: no host-to-device copy at every update.
        self.register_buffer("quantiles", torch.tensor([low, high]), persistent=False)
        self.register_buffer("low", torch.zeros(()))
        self.register_buffer("high", torch.zeros(()))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def update(self, returns: torch.Tensor) -> torch.Tensor:
        # Over every process's returns, so that the ranks keep one scale (DDP keeps only the weights equal).
        low, high = torch.quantile(cat_over_ranks(returns.detach().float().flatten()), self.quantiles)
        d = self.decay
        # The reference code starts its EMA from zero; so do we (no special first step).
        self.low.mul_(d).add_((1 - d) * low)
        self.high.mul_(d).add_((1 - d) * high)
        self.initialised.fill_(True)
        return self.scale

    @property
    def scale(self) -> torch.Tensor:
        return torch.clamp(self.high - self.low, min=1.0)


class Actor(nn.Module):
    """The policy: a unimix categorical (``discrete``), one unimix categorical per sub-action (``nvec``, the
    choices of each sub-action of a MultiDiscrete space: ``discrete`` with ``action_dim`` = sum(nvec)), or a
    bounded Normal."""

    def __init__(self, feat_dim: int, action_dim: int, discrete: bool, units: int, layers: int,
                 unimix: float = 0.01, min_std: float = 0.1, max_std: float = 1.0, norm: str = "layer",
                 nvec: tuple[int, ...] | None = None):
        super().__init__()
        if nvec is not None and (not discrete or sum(nvec) != action_dim):
            raise ValueError(f"a MultiDiscrete actor is discrete with action_dim = sum(nvec) = {sum(nvec)}")
        self.discrete, self.unimix, self.min_std, self.max_std = discrete, unimix, min_std, max_std
        self.nvec = nvec
        # The output layer is uniform-initialised with outscale 1 (mlp's output: the reference's Dist 'out',
        # danijar/dreamerv3 8fa35f8, dreamerv3/nets.py line 472; configs.yaml line 78). For continuous actions
        # it holds the reference's two layers, 'out' (mean) and 'std' (nets.py lines 472 and 475), side by
        # side, each of fans (inputs, action_dim): initialised with those fans. For MultiDiscrete
        # actions it is one layer of sum(nvec) outputs, as the reference's one 'out' Linear of prod(shape)
        # outputs for an action of several categorical parts (nets.py lines 471-472).
        fan_in = units if layers else feat_dim
        self.net = mlp(feat_dim, units, layers, action_dim if discrete else 2 * action_dim, norm=norm,
                       out_fans=None if discrete else (fan_in, action_dim))

    def dist(self, out: torch.Tensor):
        """The policy from the network's raw output: unimix categorical(s), or bounded Normal; in float32
        when the network ran in bf16 (autocast), so are its log-probabilities and entropy."""
        out = out.to(at_least_float32(out.dtype))
        if self.nvec is not None:
            return MultiOneHot(out, self.nvec, unimix=self.unimix)
        if self.discrete:
            return OneHotStraightThrough(logits=out, unimix=self.unimix)
        mean, std = out.chunk(2, -1)
        return bounded_normal(mean, std, self.min_std, self.max_std)

    def forward(self, feat: torch.Tensor):
        return self.dist(self.net(feat))

    # The update's policy, without distribution objects: the same draws, log-probabilities and entropies
    # as ``dist``'s, from the network's raw output and noise drawn before the update (``draw_noise``).
    def _logit_parts(self, out: torch.Tensor) -> list[torch.Tensor]:
        """Unimix logits of each categorical (one, or one per sub-action), in float32 or wider."""
        out = out.to(at_least_float32(out.dtype))
        return [unimix_logits(part, self.unimix) for part in (out.split(list(self.nvec), -1) if self.nvec else [out])]

    def draw_noise(self, shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
        """Noise for ``shape`` + (action_dim,) actions: uniforms for categoricals, standard Normals for
        the bounded Normal (``sampling_noise`` makes them what ``rsample`` reads)."""
        width = self.net[-1].out_features // (1 if self.discrete else 2)
        draw = torch.rand if self.discrete else torch.randn
        return draw((*shape, width), generator=generator, device=device)

    def sampling_noise(self, drawn: torch.Tensor) -> torch.Tensor:
        """``draw_noise``'s draws as ``rsample`` reads them: Gumbels for categoricals, as drawn otherwise."""
        return gumbel_from_uniform(drawn) if self.discrete else drawn

    def rsample(self, out: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """An action from the raw output and its noise (``sampling_noise``): straight-through one-hots of
        each categorical side by side, or tanh(mean) + std * noise, differentiable in ``out``."""
        if not self.discrete:
            mean, std = bounded_normal_parameters(*out.to(at_least_float32(out.dtype)).chunk(2, -1), self.min_std,
                                                  self.max_std)
            return mean + std * noise
        parts = self._logit_parts(out)
        if len(parts) == 1:
            return straight_through_one_hot(parts[0], noise)
        return torch.cat([straight_through_one_hot(logits, gumbel)
                          for logits, gumbel in zip(parts, noise.split(list(self.nvec), -1))], -1)

    def log_prob(self, out: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """log pi(a|s) of discrete (one-hot) actions, summed over the sub-actions."""
        parts = self._logit_parts(out)
        values = action.split(list(self.nvec), -1) if self.nvec else [action]
        return sum(categorical_log_prob(logits, value) for logits, value in zip(parts, values))

    def entropy(self, out: torch.Tensor) -> torch.Tensor:
        """H[pi(.|s)], summed over the sub-actions or the action's dimensions."""
        if not self.discrete:
            _, std = bounded_normal_parameters(*out.to(at_least_float32(out.dtype)).chunk(2, -1), self.min_std,
                                               self.max_std)
            return normal_entropy(std)
        return sum(categorical_entropy(logits) for logits in self._logit_parts(out))


class Critic(nn.Module):
    """Two-hot value head (zero-initialised output: outscale 0, danijar/dreamerv3 8fa35f8, dreamerv3/configs.yaml
    line 79) and its slow EMA copy; ``space`` is where the
    two-hot bins are spaced evenly, "symlog" (2023 code) or "raw" (2024 code; worldmodels.nets.distributions)."""

    def __init__(self, feat_dim: int, units: int, layers: int, bins: int = 255, norm: str = "layer",
                 space: str = "symlog"):
        super().__init__()
        self.net = mlp(feat_dim, units, layers, bins, zero_out=True, norm=norm)
        self.slow = mlp(feat_dim, units, layers, bins, zero_out=True, norm=norm).requires_grad_(False)
        self.slow.load_state_dict(self.net.state_dict())
        self.space = space
        self.register_buffer("bins", make_bins(bins, space=space), persistent=False)

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        return two_hot_decode(logits, self.bins, self.space)

    def logits_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Two-hot cross-entropy of ``logits`` against the (stopped) ``target`` values."""
        return two_hot_loss(logits, target, self.bins, self.space)

    def value(self, feat: torch.Tensor, slow: bool = False) -> torch.Tensor:
        return self.decode((self.slow if slow else self.net)(feat))

    def value_for_actor(self, feat: torch.Tensor) -> torch.Tensor:
        """The critic's value, differentiable in ``feat`` but not in the critic's weights: the actor's
        objective reads it (continuous actions) and only the actor learns from that objective, so one
        backward pass of actor + critic loss gives the critic the gradient of its own loss alone."""
        weights = {name: p.detach() for name, p in self.net.named_parameters()}
        return self.decode(torch.func.functional_call(self.net, weights, (feat,)))

    def features(self, feat: torch.Tensor) -> torch.Tensor:
        """Penultimate features: the last hidden layer's output, what srank and DR3 look at."""
        return self.net[:-1](feat)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from penultimate features: ``head(features(x))`` is ``net(x)``."""
        return self.net[-1](features)

    def loss(self, feat: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.logits_loss(self.net(feat), target)

    @torch.no_grad()
    def update_slow(self, fraction: float) -> None:
        ema_update_(self.slow.parameters(), self.net.parameters(), fraction)


@dataclass
class ImaginationNoise:
    """What an imagination of ``horizon`` steps from N states draws, drawn before it: the actor's noise
    (H, N, A) (``Actor.draw_noise``) and uniforms for the latents (H, N, S, K)."""

    action: torch.Tensor
    latent: torch.Tensor

    @staticmethod
    def draw(rssm: RSSM, actor: Actor, starts: int, horizon: int, device: torch.device,
             generator: torch.Generator | None = None) -> ImaginationNoise:
        latent = torch.rand((horizon, starts, rssm.stoch, rssm.classes), generator=generator, device=device)
        return ImaginationNoise(actor.draw_noise((horizon, starts), generator, device), latent)


def imagine(rssm: RSSM, actor: Actor, start: State, horizon: int,
            noise: ImaginationNoise | None = None) -> tuple[State, torch.Tensor, torch.Tensor]:
    """States s_0..s_H, actions a_0..a_{H-1} and the actor's raw outputs at s_0..s_{H-1}. The actor
    sees stopped features and always keeps its graph (its loss reuses these outputs); the dynamics
    keep theirs only when the caller enables gradients (continuous actions: backprop through the model).
    ``noise``: the draws, made before (drawn here from the default generator when None)."""
    if noise is None:
        noise = ImaginationNoise.draw(rssm, actor, start.deter.shape[0], horizon, start.deter.device)
    # One transform of the noise for the whole rollout, not one per step.
    latent_gumbel, action_noise = gumbel_from_uniform(noise.latent), actor.sampling_noise(noise.action)
    states, actions, outs, state = [start], [], [], start
    for t in range(horizon):
        with torch.enable_grad():
            out = actor.net(state.features().detach())
        action = actor.rsample(out, action_noise[t])
        actions.append(action)
        outs.append(out)
        state = rssm.img_step(state, action, latent_gumbel[t])
        states.append(state)
    with torch.enable_grad():
        outs = torch.stack(outs, 0)
    return stack_states(states, 0), torch.stack(actions, 0), outs


@dataclass(frozen=True)
class BehaviorConfig:
    """The actor-critic's settings (defaults: the 2023 spec, danijar/dreamerv3 8fa35f8 configs.yaml).
        horizon, gamma, lam: imagined steps, discount, lambda of the returns.
        entropy_coef: the actor's entropy bonus. slow_reg: weight of the slow critic's regulariser.
        dr3_coef: DR3 on the critic's penultimate features of consecutive imagined states (0: off).
        repval_scale: weight of the 2024 spec's replay-value loss (0: off)."""

    horizon: int = 15
    gamma: float = 1 - 1 / 333
    lam: float = 0.95
    entropy_coef: float = 3e-4
    slow_reg: float = 1.0
    dr3_coef: float = 0.0
    repval_scale: float = 0.0


@dataclass
class Imagined:
    """A rollout of the actor in the world model from N start states: features s_0..s_H (H+1, N, F),
    actions a_0..a_{H-1} and the actor's raw outputs at s_0..s_{H-1}, predicted rewards r_1..r_H (H, N)
    and continue flags c_0..c_H (H+1, N), c_0 the true flag of the start."""

    feat: torch.Tensor
    actions: torch.Tensor
    actor_out: torch.Tensor
    reward: torch.Tensor
    cont: torch.Tensor


def rollout(world_model, actor: Actor, start: State, start_cont: torch.Tensor, horizon: int,
            noise: ImaginationNoise | None = None) -> Imagined:
    """Imagine ``horizon`` steps. REINFORCE (discrete actions) needs no gradient through the imagined
    dynamics, so their graph is only built for continuous actions (backprop through the model)."""
    with torch.set_grad_enabled(not actor.discrete):
        traj, actions, actor_out = imagine(world_model.rssm, actor, start, horizon, noise)
        feat = traj.features()  # (H+1, N, F)
        reward = world_model.reward(feat[1:])  # r_{t+1} for t = 0..H-1
        cont = (world_model.continue_head(feat[1:]).squeeze(-1) > 0).float()  # mode of the Bernoulli
        cont = torch.cat([start_cont[None], cont], 0)
    return Imagined(feat, actions, actor_out, reward, cont)


def actor_objective(actor: Actor, actor_out: torch.Tensor, actions: torch.Tensor,
                    advantage: torch.Tensor) -> torch.Tensor:
    """What the actor maximises at each step: log pi(a|s) sg(advantage) for discrete actions (REINFORCE),
    the advantage itself for continuous ones (its gradient flows through the imagined dynamics)."""
    if actor.discrete:
        return actor.log_prob(actor_out, actions.detach()) * advantage.detach()
    return advantage


def imag_loss(imagined: Imagined, actor: Actor, critic: Critic, returns_scale: ReturnScale, config: BehaviorConfig,
              diagnostics: bool) -> tuple[torch.Tensor, torch.Tensor, dict, dict]:
    """The actor's and the critic's losses on an imagined rollout (the reference's ``imag_loss``), the
    tensors ``repl_loss`` reads (returns, critic logits and slow values at s_0..s_{H-1}), and metrics."""
    feat, cont, gamma = imagined.feat, imagined.cont, config.gamma
    critic_feat = feat[:-1].detach()
    critic_phi = critic.features(critic_feat)  # with gradient, for the critic's loss
    critic_logits = critic.head(critic_phi)
    dr3 = None
    if config.dr3_coef or diagnostics:
        dr3 = dr3_penalty(critic_phi[:-1].flatten(0, 1), critic_phi[1:].flatten(0, 1))
    if not actor.discrete:
        value = critic.value_for_actor(feat)  # the actor's objective differentiates it through the imagined states
    else:
        with torch.no_grad():
            value = torch.cat([critic.decode(critic_logits), critic.value(feat[-1:])], 0)
    reward = imagined.reward
    # (H, N): R_0..R_{H-1}, reward[t] read as r_t, so reward is padded at t = 0 (never read)
    returns = lambda_return(torch.cat([reward[:1], reward], 0), cont, value, config.lam, gamma)
    weight = (torch.cumprod(gamma * cont, 0) / gamma).detach()[:-1]

    scale = returns_scale.update(returns)
    advantage = (returns - value[:-1]) / scale
    entropy = actor.entropy(imagined.actor_out)
    objective = actor_objective(actor, imagined.actor_out, imagined.actions, advantage)
    actor_loss = -(weight * (objective + config.entropy_coef * entropy)).mean()

    with torch.no_grad():
        slow_target = critic.value(critic_feat, slow=True)
    td_loss = critic.logits_loss(critic_logits, returns)  # against the lambda-returns
    critic_loss = (weight * (td_loss + config.slow_reg * critic.logits_loss(critic_logits, slow_target))).mean()
    if config.dr3_coef:  # skipped at 0, so the default loss is exactly the 2023 one
        critic_loss = critic_loss + config.dr3_coef * dr3
    outs = {"returns": returns, "critic_logits": critic_logits, "slow_target": slow_target}
    if not diagnostics:
        return actor_loss, critic_loss, outs, {}
    metrics = {"actor/entropy": entropy.mean(), "actor/advantage": advantage.mean(),
               "critic/value": value.mean(), "critic/td_loss": (weight * td_loss).mean(),
               "critic/feature_dot": dr3, "imagined/return": returns.mean(),
               "imagined/reward": reward.mean(), "imagined/continue": cont[1:].mean(),
               "actor/return_scale": scale, "actor/return_low": returns_scale.low, "actor/return_high": returns_scale.high}
    return actor_loss, critic_loss, outs, metrics


def repl_loss(replay: dict[str, torch.Tensor], outs: dict, critic: Critic, config: BehaviorConfig) -> torch.Tensor:
    """The 2024 spec's replay-value loss (the reference's ``repl_loss``): the critic at the replayed (B, T)
    states learns their lambda-returns, bootstrapped from the imagined return of each state (the critic
    is not read directly) and cut at episode ends, with the slow critic's regulariser. The imagined
    rollouts started at these states, so step 0 of ``imag_loss``'s tensors is the critic there. Unlike
    the 2024 code, whose single optimizer lets this loss reach the world model, the features are
    stopped here: our world model has already taken its step."""
    shape = replay["reward"].shape
    boot = outs["returns"][0].detach().view(shape)
    target = lambda_return(replay["reward"], (~replay["terminal"]).float(), boot,
                           config.lam * (~replay["last"]).float(), config.gamma, dim=1)
    logits = outs["critic_logits"][0].view(*shape, -1)[:, :-1]
    slow = outs["slow_target"][0].view(shape)[:, :-1]
    per_step = critic.logits_loss(logits, target) + config.slow_reg * critic.logits_loss(logits, slow)
    return ((~replay["last"][:, :-1]).float() * per_step).mean()


def behavior_losses(world_model, actor: Actor, critic: Critic, returns_scale: ReturnScale, start: State,
                    start_cont: torch.Tensor, config: BehaviorConfig = BehaviorConfig(),
                    replay: dict[str, torch.Tensor] | None = None, diagnostics: bool = True,
                    noise: ImaginationNoise | None = None) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(actor loss, critic loss, metrics) from imagined rollouts that start at ``start`` (N states);
    without ``diagnostics`` the metrics are the two losses alone (updates whose metrics are not logged).
    With ``config.repval_scale`` the critic also learns the replay returns of the (B, T) sequences whose
    posterior states are the N = B x T starts: ``replay`` holds their reward, terminal and last flags.
    ``noise``: the rollout's draws, made before (``ImaginationNoise.draw``; drawn here when None).

    The critic's loss does not reach the actor's weights, nor the actor's loss the critic's
    (``Critic.value_for_actor``): one backward pass of their sum trains each on its own loss."""
    imagined = rollout(world_model, actor, start, start_cont, config.horizon, noise)
    actor_loss, critic_loss, outs, metrics = imag_loss(imagined, actor, critic, returns_scale, config, diagnostics)
    if config.repval_scale:
        repval = repl_loss(replay, outs, critic, config)
        critic_loss = critic_loss + config.repval_scale * repval
        if diagnostics:
            metrics["critic/replay_value_loss"] = repval
    return actor_loss, critic_loss, {"actor/loss": actor_loss, "critic/loss": critic_loss, **metrics}
