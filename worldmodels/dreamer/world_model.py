"""DreamerV3's world model: encoder, RSSM, decoder, reward and continue heads, and its loss.

    L = mean_{b,t} [ L_image + L_vector + L_reward + L_continue ]               (prediction, scale 1)
      + 0.5 * mean max(1, KL[sg(q) || p])   (dynamics)  + 0.1 * mean max(1, KL[q || sg(p)])   (representation)

L_image is the squared error summed over the pixels of every image key; L_vector the squared error in
symlog space summed over the dimensions of every vector key; L_reward the two-hot cross-entropy of the
reward in symlog space; L_continue the Bernoulli log-loss of 1 - terminal. The KL sums over the 32
latent variables before the free-bits clip of 1 nat, as the reference code does.

Observations are one array named ``obs`` or a dict of keys (``worldmodels.envs.observations``). As the
2023 reference code's ``MultiEncoder``/``MultiDecoder`` (danijar/dreamerv3 8fa35f8, dreamerv3/nets.py lines
190-300): the image keys are stacked along channels, in layout order, and read by one CNN (so they must
share their height and width, which the reference's decoder asserts, line 262); the vector keys are
concatenated, in layout order, and read by one symlog MLP; the embedding is the CNN's output then the
MLP's. The decoder mirrors it: one CNN for the stacked images, one MLP trunk with an output per vector
key. An environment without images has no CNN, one without vectors no MLP.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from worldmodels.dreamer.rssm import RSSM, State
from worldmodels.envs.observations import ObsKey, map_obs
from worldmodels.errors import ConfigError
from worldmodels.nets.keyed import concat_vectors, stack_images
from worldmodels.nets.distributions import make_bins, symlog, symlog_squared_error, two_hot_decode, two_hot_loss
from worldmodels.nets.dreamer_blocks import ConvDecoder, ConvEncoder, VectorDecoder, VectorEncoder, mlp


@dataclass(frozen=True)
class Size:
    deter: int
    depth: int  # CNN channel multiplier
    units: int  # MLP width (also the RSSM's hidden width)
    layers: int  # MLP depth of every head
    stoch: int = 32  # categorical latent variables
    classes: int = 32  # classes per variable
    norm: str = "layer"  # after every hidden layer: "layer" (2023 spec) or "rms" (2024 spec)
    # The MLP encoder and decoder of vector keys, which the 2023 code sizes apart from the heads: its
    # ``encoder``/``decoder`` ``mlp_units: 1024, mlp_layers: 5`` (danijar/dreamerv3 8fa35f8, dreamerv3/configs.yaml
    # lines 68-69) are left as they are by every size preset, whose patterns ``.*\.units`` and ``.*\.layers``
    # (lines 211-233) do not match the keys ``encoder.mlp_units`` and ``encoder.mlp_layers`` (the config
    # matches them from the key's start, embodied/core/config.py line 113). So 1024 x 5 in every size.
    vector_units: int = 1024
    vector_layers: int = 5


# The 2023 paper's table (arXiv 2301.04104); XS is not in the paper: a smaller preset for tests and small tasks. The vector MLPs
# keep Size's 1024 x 5 in every row, as the 2023 code's presets do (see Size).
SIZES = {
    "XS": Size(256, 24, 256, 1),
    "S": Size(512, 32, 512, 2),
    "M": Size(1024, 48, 640, 3),
    "L": Size(2048, 64, 768, 4),
    "XL": Size(4096, 96, 1024, 5),
}


def observation_batch(obs) -> torch.Tensor:
    """One tensor of an observation, whatever its form: its leading shape and device are the batch's."""
    return next(iter(obs.values())) if isinstance(obs, dict) else obs


class ObsParts:
    """Which keys the CNN and the vector MLP read, and how each gathers them from an observation (one
    tensor, or a dict of them): the image keys stacked along channels, the vector keys concatenated, both
    in layout order."""

    def __init__(self, keys: tuple[ObsKey, ...]):
        self.layout = keys
        self.images = tuple(key for key in keys if key.kind == "image")
        self.vectors = tuple(key for key in keys if key.kind == "vector")
        sides = {key.shape[1:] for key in self.images}
        if len(sides) > 1:
            raise ConfigError("DreamerV3 stacks its image keys along channels for one CNN, as the reference code "
                              "does, so they must share one height and width; they are "
                              f"{', '.join(key.describe() for key in self.images)}: resize them to one size.")

    @property
    def image_channels(self) -> tuple[int, ...]:
        return tuple(key.shape[0] for key in self.images)

    @property
    def vector_dims(self) -> tuple[int, ...]:
        return tuple(key.shape[0] for key in self.vectors)

    def image(self, obs) -> torch.Tensor | None:
        """(..., sum C, H, W) uint8, or None without image keys."""
        return stack_images(self.layout, obs) if self.images else None

    def vector(self, obs) -> torch.Tensor | None:
        """(..., sum D) float32, or None without vector keys."""
        return concat_vectors(self.layout, obs).float() if self.vectors else None

    def split_images(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Stacked images (..., sum C, H, W) back into their keys."""
        return dict(zip((key.name for key in self.images), images.split(list(self.image_channels), -3)))


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
    """Args:
        keys: the observation's keys (``EnvSpec.obs_keys``), one frame each (no frame stack).
        action_dim: the width of an action as the RSSM reads it (one-hots side by side for discrete ones).
    """

    def __init__(self, keys: tuple[ObsKey, ...], action_dim: int, size: Size, unimix: float = 0.01,
                 bins: int = 255, two_hot_space: str = "symlog"):
        super().__init__()
        self.parts = ObsParts(keys)
        channels = sum(self.parts.image_channels)
        image = self.parts.images[0].shape[1] if self.parts.images else None
        if image is not None and image % 16:
            raise ValueError(f"DreamerV3's CNN needs an image side divisible by 16, got {image}")
        # Built in this order (CNN, vector MLP, RSSM, CNN decoder, vector decoder, heads): an image-only model
        # creates no vector layer, so a seed gives it the initial weights it gave the image-only world model.
        self.encoder = ConvEncoder(channels, size.depth, image, size.norm) if image is not None else None
        self.vector_encoder = None
        if self.parts.vectors:
            self.vector_encoder = VectorEncoder(sum(self.parts.vector_dims), size.vector_units, size.vector_layers,
                                                size.norm)
        embed_dim = sum(net.out_dim for net in (self.encoder, self.vector_encoder) if net is not None)
        self.rssm = RSSM(embed_dim, action_dim, size.deter, size.units, size.stoch, size.classes, unimix, size.norm)
        feat = self.rssm.feat_dim
        self.decoder = ConvDecoder(feat, channels, size.depth, image, size.norm) if image is not None else None
        self.vector_decoder = None
        if self.parts.vectors:
            self.vector_decoder = VectorDecoder(feat, self.parts.vector_dims, size.vector_units, size.vector_layers,
                                                size.norm)
        # Output layers as the reference's Dist 'out' (danijar/dreamerv3 8fa35f8, dreamerv3/nets.py line 472):
        # the reward's zero (outscale 0, configs.yaml line 70), the continue head's uniform with outscale 1
        # (configs.yaml line 71); see mlp.
        self.reward_head = mlp(feat, size.units, size.layers, bins, zero_out=True, norm=size.norm)
        self.continue_head = mlp(feat, size.units, size.layers, 1, norm=size.norm)
        self.space = two_hot_space  # where the reward's two-hot bins are spaced evenly (see Critic)
        self.register_buffer("bins", make_bins(bins, space=two_hot_space), persistent=False)

    def embed(self, obs) -> torch.Tensor:
        """(..., E): the CNN's embedding of the stacked images, then the MLP's of the concatenated vectors."""
        parts = []
        if self.encoder is not None:
            parts.append(self.encoder(self.parts.image(obs)))
        if self.vector_encoder is not None:
            parts.append(self.vector_encoder(self.parts.vector(obs)))
        return parts[0] if len(parts) == 1 else torch.cat(parts, -1)

    def reward(self, feat: torch.Tensor) -> torch.Tensor:
        return two_hot_decode(self.reward_head(feat), self.bins, self.space)

    def decode(self, feat: torch.Tensor) -> torch.Tensor:
        """Predicted stacked images in [-0.5, 0.5] space."""
        return self.decoder(feat)

    def reconstruction_loss(self, feat: torch.Tensor, obs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(L_image + L_vector per step (...), and each of the two (...) by name), summed over the keys: the
        squared error over every pixel of every image key (targets obs / 255 - 0.5), the squared error in
        symlog space over every dimension of every vector key (the reference's loss scales ``image: 1.0,
        vector: 1.0``, danijar/dreamerv3 8fa35f8, dreamerv3/configs.yaml line 72)."""
        terms = {}
        if self.decoder is not None:
            target = self.parts.image(obs).float() / 255.0 - 0.5
            terms["image"] = ((self.decoder(feat) - target) ** 2).sum((-3, -2, -1))
        if self.vector_decoder is not None:
            terms["vector"] = symlog_squared_error(self.vector_decoder(feat), self.parts.vector(obs))
        total = terms["image"] + terms["vector"] if len(terms) == 2 else next(iter(terms.values()))
        return total, terms

    def imagine_open_loop(self, post: State, action: torch.Tensor, first: torch.Tensor, context: int,
                          end: int | None = None) -> State:
        """The prior's rollout along the recorded actions from the posterior state at step
        ``context - 1``: states (B, end - context) for steps context..end-1 (end: the sequence's)."""
        last = State(*(x[:, context - 1] for x in post))
        return self.rssm.imagine_with_actions(last, action[:, context:end], first[:, context:end])

    @torch.no_grad()
    def open_loop(self, obs, action: torch.Tensor, first: torch.Tensor, context: int = 5) -> torch.Tensor:
        """Predicted images (B, T, sum C, H, W) in [0, 1], the image keys stacked along channels
        (``parts.split_images`` separates them): reconstructions of the first ``context`` steps, then the
        prior's open-loop rollout along the recorded actions. Only for a model with image keys."""
        observed = map_obs(lambda x: x[:, :context], obs)
        post, _ = self.rssm.observe(self.embed(observed), action[:, :context], first[:, :context])
        imagined = self.imagine_open_loop(post, action, first, context)
        feat = torch.cat([post.features(), imagined.features()], 1)
        return (self.decode(feat) + 0.5).clamp(0, 1)

    @torch.no_grad()
    def open_loop_errors(self, post: State, obs, action: torch.Tensor, reward: torch.Tensor,
                         first: torch.Tensor, context: int = 5, steps: int | None = None) -> dict[str, torch.Tensor]:
        """How far the open-loop prediction drifts, per imagined step k = 1..steps (entry k - 1 of
        each (steps,) tensor, a mean over the B sequences). ``post`` is the posterior of the whole
        (B, T) sequence; the rollout starts from its step ``context - 1`` as in ``open_loop``.

            image_mse   squared error per pixel of the predicted images, in [0, 1] pixel units (models
                        with image keys)
            vector_symlog_mse  squared error per dimension of the predicted vectors, in symlog space,
                        where the decoder predicts and is trained (models with vector keys)
            reward_error  |predicted - replayed reward|
            kl          KL[q(z_t | observations) || open-loop prior of z_t], nats summed over the
                        latent variables; at k = 1 it is the one-step KL the world model trains on
        """
        length = observation_batch(obs).shape[1]
        end = length if steps is None else min(length, context + steps)
        imagined = self.imagine_open_loop(post, action, first, context, end)
        feat = imagined.features()
        errors = {}
        if self.decoder is not None:
            target = self.parts.image(obs)[:, context:end].float() / 255.0 - 0.5
            errors["image_mse"] = ((self.decode(feat) - target) ** 2).mean((-3, -2, -1)).mean(0)
        if self.vector_decoder is not None:
            target = symlog(self.parts.vector(obs)[:, context:end])
            errors["vector_symlog_mse"] = ((self.vector_decoder(feat) - target) ** 2).mean(-1).mean(0)
        errors["reward_error"] = (self.reward(feat) - reward[:, context:end]).abs().mean(0)
        errors["kl"] = categorical_kl(post.logits[:, context:end], imagined.logits).mean(0)
        return errors

    def loss(self, obs, action: torch.Tensor, reward: torch.Tensor, terminal: torch.Tensor,
             first: torch.Tensor, free_nats: float = 1.0, dyn_scale: float = 0.5,
             rep_scale: float = 0.1, diagnostics: bool = True,
             gumbel: torch.Tensor | None = None) -> tuple[torch.Tensor, State, dict[str, torch.Tensor]]:
        """World-model loss on a (B, T) batch; returns it, the posterior states and metrics (none
        without ``diagnostics``: on the updates whose metrics are not logged, no work is spent on them).
        ``gumbel`` (B, T, S, K): the noise of the posterior draws (``RSSM.observe``)."""
        embed = self.embed(obs)
        post, prior_logits = self.rssm.observe(embed, action, first, gumbel=gumbel)
        feat = post.features()
        reconstruction, terms = self.reconstruction_loss(feat, obs)
        reward_loss = two_hot_loss(self.reward_head(feat), reward, self.bins, self.space)
        cont_logits = self.continue_head(feat).squeeze(-1)
        cont_loss = F.binary_cross_entropy_with_logits(cont_logits, (~terminal).float(), reduction="none")
        dyn, rep, kl = kl_balance(post.logits, prior_logits, free_nats)
        loss = (reconstruction + reward_loss + cont_loss).mean() + dyn_scale * dyn.mean() + rep_scale * rep.mean()
        if not diagnostics:
            return loss, post, {}
        metrics = {
            **{f"wm/{name}_loss": term.mean() for name, term in terms.items()},
            "wm/reward_loss": reward_loss.mean(), "wm/continue_loss": cont_loss.mean(),
            "wm/kl_dyn": dyn.mean(), "wm/kl_rep": rep.mean(), "wm/kl": kl.mean(),
            "wm/posterior_entropy": entropy(post.logits).mean(), "wm/prior_entropy": entropy(prior_logits).mean(),
        }
        return loss, post, metrics


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of independent categoricals (..., S, K), summed over the S variables."""
    log_p = logits.log_softmax(-1)
    return -(log_p.exp() * log_p).sum((-1, -2))
