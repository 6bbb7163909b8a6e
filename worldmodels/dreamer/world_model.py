"""DreamerV3's world model: encoder, RSSM, decoder, reward and continue heads, and its loss.

    L = mean_{b,t} [ L_image + L_reward + L_continue ]                        (prediction, scale 1)
      + 0.5 * mean max(1, KL[sg(q) || p])   (dynamics)  + 0.1 * mean max(1, KL[q || sg(p)])   (representation)

L_image is the squared error summed over pixels; L_reward the two-hot cross-entropy of the reward in
symlog space; L_continue the Bernoulli log-loss of 1 - terminal. The KL sums over the 32 latent
variables before the free-bits clip of 1 nat, as the reference code does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from worldmodels.dreamer.rssm import RSSM, State
from worldmodels.nets.distributions import make_bins, two_hot_decode, two_hot_loss
from worldmodels.nets.dreamer_blocks import ConvDecoder, ConvEncoder, mlp


@dataclass(frozen=True)
class Size:
    deter: int
    depth: int  # CNN channel multiplier
    units: int  # MLP width (also the RSSM's hidden width)
    layers: int  # MLP depth of every head
    stoch: int = 32  # categorical latent variables
    classes: int = 32  # classes per variable
    norm: str = "layer"  # after every hidden layer: "layer" (2023 spec) or "rms" (2024 spec)


# The 2023 paper's table; XS is not in the paper but common in ports (REFERENCE.md).
SIZES = {
    "XS": Size(256, 24, 256, 1),
    "S": Size(512, 32, 512, 2),
    "M": Size(1024, 48, 640, 3),
    "L": Size(2048, 64, 768, 4),
    "XL": Size(4096, 96, 1024, 5),
}


def categorical_kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL[p || q] of independent categoricals (..., S, K), summed over the S variables."""
    p_log, q_log = p_logits.log_softmax(-1), q_logits.log_softmax(-1)
    return (p_log.exp() * (p_log - q_log)).sum((-1, -2))


def kl_balance(post_logits: torch.Tensor, prior_logits: torch.Tensor, free: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dynamics loss, representation loss, raw KL), each (...,): the dynamics loss trains the prior
    toward the (stopped) posterior, the representation loss the posterior toward the (stopped) prior;
    both are clipped below at ``free`` nats, where their gradient is zero."""
    dyn = categorical_kl(post_logits.detach(), prior_logits)
    rep = categorical_kl(post_logits, prior_logits.detach())
    return dyn.clamp(min=free), rep.clamp(min=free), dyn.detach()


class WorldModel(nn.Module):
    def __init__(self, obs_shape: tuple[int, int, int], action_dim: int, size: Size, unimix: float = 0.01,
                 bins: int = 255, two_hot_space: str = "symlog"):
        super().__init__()
        channels, image = obs_shape[0], obs_shape[1]
        if image % 16:
            raise ValueError(f"DreamerV3's CNN needs an image side divisible by 16, got {image}")
        self.encoder = ConvEncoder(channels, size.depth, image, size.norm)
        self.rssm = RSSM(self.encoder.out_dim, action_dim, size.deter, size.units, size.stoch, size.classes, unimix,
                         size.norm)
        feat = self.rssm.feat_dim
        self.decoder = ConvDecoder(feat, channels, size.depth, image, size.norm)
        # Output layers as the reference's Dist 'out' (danijar/dreamerv3 8fa35f8, dreamerv3/nets.py line 472):
        # the reward's zero (outscale 0, configs.yaml line 70), the continue head's uniform with outscale 1
        # (configs.yaml line 71); see mlp.
        self.reward_head = mlp(feat, size.units, size.layers, bins, zero_out=True, norm=size.norm)
        self.continue_head = mlp(feat, size.units, size.layers, 1, norm=size.norm)
        self.space = two_hot_space  # where the reward's two-hot bins are spaced evenly (see Critic)
        self.register_buffer("bins", make_bins(bins, space=two_hot_space), persistent=False)

    def reward(self, feat: torch.Tensor) -> torch.Tensor:
        return two_hot_decode(self.reward_head(feat), self.bins, self.space)

    def decode(self, feat: torch.Tensor) -> torch.Tensor:
        """Predicted image in [-0.5, 0.5] space."""
        return self.decoder(feat)

    def imagine_open_loop(self, post: State, action: torch.Tensor, first: torch.Tensor, context: int,
                          end: int | None = None) -> State:
        """The prior's rollout along the recorded actions from the posterior state at step
        ``context - 1``: states (B, end - context) for steps context..end-1 (end: the sequence's)."""
        last = State(*(x[:, context - 1] for x in post))
        return self.rssm.imagine_with_actions(last, action[:, context:end], first[:, context:end])

    @torch.no_grad()
    def open_loop(self, obs: torch.Tensor, action: torch.Tensor, first: torch.Tensor, context: int = 5) -> torch.Tensor:
        """Predicted images (B, T, C, H, W) in [0, 1]: reconstructions of the first ``context`` steps,
        then the prior's open-loop rollout along the recorded actions."""
        post, _ = self.rssm.observe(self.encoder(obs[:, :context]), action[:, :context], first[:, :context])
        imagined = self.imagine_open_loop(post, action, first, context)
        feat = torch.cat([post.features(), imagined.features()], 1)
        return (self.decode(feat) + 0.5).clamp(0, 1)

    @torch.no_grad()
    def open_loop_errors(self, post: State, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor,
                         first: torch.Tensor, context: int = 5, steps: int | None = None) -> dict[str, torch.Tensor]:
        """How far the open-loop prediction drifts, per imagined step k = 1..steps (entry k - 1 of
        each (steps,) tensor, a mean over the B sequences). ``post`` is the posterior of the whole
        (B, T) sequence; the rollout starts from its step ``context - 1`` as in ``open_loop``.

            image_mse   squared error per pixel of the predicted image, in [0, 1] pixel units
            reward_error  |predicted - replayed reward|
            kl          KL[q(z_t | observations) || open-loop prior of z_t], nats summed over the
                        latent variables; at k = 1 it is the one-step KL the world model trains on
        """
        end = obs.shape[1] if steps is None else min(obs.shape[1], context + steps)
        imagined = self.imagine_open_loop(post, action, first, context, end)
        feat = imagined.features()
        target = obs[:, context:end].float() / 255.0 - 0.5
        return {
            "image_mse": ((self.decode(feat) - target) ** 2).mean((-3, -2, -1)).mean(0),
            "reward_error": (self.reward(feat) - reward[:, context:end]).abs().mean(0),
            "kl": categorical_kl(post.logits[:, context:end], imagined.logits).mean(0),
        }

    def loss(self, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor, terminal: torch.Tensor,
             first: torch.Tensor, free_nats: float = 1.0, dyn_scale: float = 0.5,
             rep_scale: float = 0.1, diagnostics: bool = True) -> tuple[torch.Tensor, State, dict[str, torch.Tensor]]:
        """World-model loss on a (B, T) batch; returns it, the posterior states and metrics (none
        without ``diagnostics``: on the updates whose metrics are not logged, no work is spent on them)."""
        embed = self.encoder(obs)
        post, prior_logits = self.rssm.observe(embed, action, first)
        feat = post.features()
        target = obs.float() / 255.0 - 0.5
        image = ((self.decoder(feat) - target) ** 2).sum((-3, -2, -1))
        reward_loss = two_hot_loss(self.reward_head(feat), reward, self.bins, self.space)
        cont_logits = self.continue_head(feat).squeeze(-1)
        cont_loss = F.binary_cross_entropy_with_logits(cont_logits, (~terminal).float(), reduction="none")
        dyn, rep, kl = kl_balance(post.logits, prior_logits, free_nats)
        loss = (image + reward_loss + cont_loss).mean() + dyn_scale * dyn.mean() + rep_scale * rep.mean()
        if not diagnostics:
            return loss, post, {}
        metrics = {
            "wm/image_loss": image.mean(), "wm/reward_loss": reward_loss.mean(), "wm/continue_loss": cont_loss.mean(),
            "wm/kl_dyn": dyn.mean(), "wm/kl_rep": rep.mean(), "wm/kl": kl.mean(),
            "wm/posterior_entropy": entropy(post.logits).mean(), "wm/prior_entropy": entropy(prior_logits).mean(),
        }
        return loss, post, metrics


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of independent categoricals (..., S, K), summed over the S variables."""
    log_p = logits.log_softmax(-1)
    return -(log_p.exp() * log_p).sum((-1, -2))
