"""Distributions shared by the agents: symlog and the symlog squared error, two-hot regression, unimix
categoricals with straight-through samples (one, or one per sub-action of a MultiDiscrete space),
DreamerV3's bounded actor Normal and DrQ-v2's truncated exploration Normal.

Every function works on any leading batch shape; the event (bins, classes, action dims) is the last axis.

Every ``torch.distributions`` object here is built with ``validate_args=False``. torch's default
(``Distribution._validate_args`` True, unless an import such as torchrl's switches it off globally) checks
parameters and sampled values on every construction and ``log_prob``: one host sync per check on a GPU,
a graph break under ``torch.compile``, and an error on a straight-through sample, which is one-hot only
up to float rounding (1 + p - p). The update's own draws do not go through these objects at all: they
use the functions below on noise drawn in advance (``gumbel_from_uniform``, ``straight_through_one_hot``,
``categorical_log_prob``, ``categorical_entropy``, ``normal_entropy``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import distributions as D

# ---------------------------------------------------------------------------------------------- symlog


def symlog(x: torch.Tensor) -> torch.Tensor:
    """sign(x) ln(|x| + 1): squashes large magnitudes yet is the identity near 0, so targets of any
    scale (rewards, returns, vector observations) give well-sized losses (DreamerV3)."""
    return torch.sign(x) * torch.log1p(torch.abs(x))


def symexp(x: torch.Tensor) -> torch.Tensor:
    """sign(x) (exp(|x|) - 1), the inverse of :func:`symlog`."""
    return torch.sign(x) * torch.expm1(torch.abs(x))


def symlog_squared_error(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """sum_d (prediction_d - symlog(target_d))^2 over the last axis: the prediction lives in symlog
    space, so a target of any scale gives a well-sized loss (Hafner et al. 2023, arXiv 2301.04104v1,
    Eq. 1). As the 2023 code's vector decoder, ``SymlogDist(out, 1, 'mse', 'sum')`` (danijar/dreamerv3
    8fa35f8, dreamerv3/jaxutils.py lines 124-157): summed over the dimensions and without the paper's
    1/2; its zeroing of distances below 1e-8 is left out (it changes nothing above float rounding).
    In float32 when the prediction is bf16 (autocast), as the reference casts its outputs (nets.py line 473)."""
    prediction = prediction.to(at_least_float32(prediction.dtype))
    return ((prediction - symlog(target.to(prediction.dtype))) ** 2).sum(-1)


# --------------------------------------------------------------------------------------------- two-hot

SPACES = ("symlog", "raw")


def at_least_float32(dtype: torch.dtype) -> torch.dtype:
    """float32 for half-precision inputs (bf16 heads under autocast), the input's own dtype above it."""
    return torch.promote_types(dtype, torch.float32)


def make_bins(num_bins: int = 255, low: float = -20.0, high: float = 20.0, space: str = "symlog",
              device=None, dtype=torch.float32) -> torch.Tensor:
    """Bin centres for two-hot regression.

    ``space="symlog"`` (default, the 2023 reference code and sheeprl): linspace(low, high) and values are
    symlog'ed before encoding. ``space="raw"`` (the paper's formula and the 2024 code): symexp of that grid,
    values encoded as they are. The two agree on the bins' positions but interpolate differently between
    them; the default is the 2023 code's form (danijar/dreamerv3 v1, 2023), whose Atari 100k result independent ports
    reproduce.
    """
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    grid = torch.linspace(low, high, num_bins, device=device, dtype=dtype)
    return grid if space == "symlog" else symexp(grid)


def two_hot(values: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """Weights (..., K) spreading each value over its two neighbouring bins so that sum_k w_k b_k = value.

    For b_k <= x < b_{k+1}: (b_{k+1} - x)/(b_{k+1} - b_k) on k and (x - b_k)/(b_{k+1} - b_k) on k+1.
    Values beyond the ends put all their weight on the end bin. No transform is applied here. Always in
    float32: under bf16 the bins near the ends would be rounded by up to 6% of the value they decode to.
    """
    values = values.to(at_least_float32(values.dtype))
    bins = bins.to(device=values.device, dtype=values.dtype)
    num_bins = bins.shape[-1]
    x = values.clamp(bins[0], bins[-1])
    k = (torch.searchsorted(bins, x.contiguous(), right=True) - 1).clamp(0, num_bins - 2)
    lo, hi = bins[k], bins[k + 1]
    w_hi = (x - lo) / (hi - lo)
    weights = torch.zeros(*values.shape, num_bins, device=values.device, dtype=values.dtype)
    weights.scatter_add_(-1, k.unsqueeze(-1), (1.0 - w_hi).unsqueeze(-1))
    weights.scatter_add_(-1, (k + 1).unsqueeze(-1), w_hi.unsqueeze(-1))
    return weights


def two_hot_decode(logits: torch.Tensor, bins: torch.Tensor, space: str = "symlog") -> torch.Tensor:
    """Expected bin under softmax(logits), mapped back through symexp in symlog space: shape (...).
    In float32 whatever the logits' precision (a bf16 head under autocast): see ``two_hot``."""
    logits = logits.to(at_least_float32(logits.dtype))
    bins = bins.to(device=logits.device, dtype=logits.dtype)
    expected = (torch.softmax(logits, dim=-1) * bins).sum(-1)
    return symexp(expected) if space == "symlog" else expected


def two_hot_loss(logits: torch.Tensor, target_values: torch.Tensor, bins: torch.Tensor,
                 space: str = "symlog") -> torch.Tensor:
    """Cross-entropy -sum_k two_hot(target)_k log softmax(logits)_k per element (no reduction).

    The target is symlog'ed first in symlog space. It is treated as a constant (detached)."""
    target = target_values.detach()
    logits = logits.to(at_least_float32(logits.dtype))  # as two_hot: float32 under bf16
    weights = two_hot(symlog(target) if space == "symlog" else target, bins).to(logits.dtype)
    return -(weights * torch.log_softmax(logits, dim=-1)).sum(-1)


class TwoHotDist:
    """A distribution-like view of two-hot logits, as the reward head and critic use it.

    ``mean``/``mode`` decode the prediction, ``log_prob(y)`` is minus the two-hot cross-entropy, so a
    head's loss is ``-dist.log_prob(target)``. Default ``space="symlog"`` (see :func:`make_bins`).
    """

    def __init__(self, logits: torch.Tensor, bins: torch.Tensor | None = None, space: str = "symlog",
                 low: float = -20.0, high: float = 20.0):
        if space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {space!r}")
        if bins is None:
            bins = make_bins(logits.shape[-1], low, high, space, logits.device, at_least_float32(logits.dtype))
        self.logits, self.bins, self.space = logits, bins, space

    @property
    def probs(self) -> torch.Tensor:
        return torch.softmax(self.logits, dim=-1)

    @property
    def mean(self) -> torch.Tensor:
        return two_hot_decode(self.logits, self.bins, self.space)

    mode = mean  # the reference code's mode is also the decoded expectation

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return -two_hot_loss(self.logits, value, self.bins, self.space)


DiscreteRegression = TwoHotDist

# -------------------------------------------------------------------------------- unimix categoricals


def unimix_logits(logits: torch.Tensor, unimix: float = 0.01) -> torch.Tensor:
    """log((1 - unimix) softmax(logits) + unimix / K): a floor of unimix/K on every class keeps KL terms
    and log-probs finite and the policy exploring (RSSM latents and the discrete actor, 1%)."""
    probs = torch.softmax(logits, dim=-1)
    if unimix > 0.0:
        probs = (1.0 - unimix) * probs + unimix / logits.shape[-1]
    return torch.log(probs)


def gumbel_from_uniform(uniform: torch.Tensor) -> torch.Tensor:
    """Standard Gumbel noise G = -log(-log(u)) from uniforms u ~ U(0, 1), in float32 or wider; u is
    clamped into [tiny, 1 - eps] so that G stays finite."""
    dtype = at_least_float32(uniform.dtype)
    finfo = torch.finfo(dtype)
    return -torch.log(-torch.log(uniform.to(dtype).clamp(finfo.tiny, 1.0 - finfo.eps)))


def gumbel_one_hot(logits: torch.Tensor, gumbel: torch.Tensor) -> torch.Tensor:
    """The one-hot of argmax_k(logits_k + G_k): a draw from softmax(logits) by the Gumbel-max trick,
    the sum taken in float32 or wider; in the logits' dtype."""
    index = (logits.to(gumbel.dtype) + gumbel).argmax(-1, keepdim=True)
    return torch.zeros_like(logits).scatter_(-1, index, 1.0)


def straight_through_one_hot(logits: torch.Tensor, gumbel: torch.Tensor) -> torch.Tensor:
    """A one-hot draw (``gumbel_one_hot``) whose gradient flows as if it were softmax(logits):
    sample + p - sg(p), DreamerV3's straight-through latents and discrete actions."""
    probs = torch.softmax(logits, -1)
    return gumbel_one_hot(logits, gumbel) + (probs - probs.detach())


def categorical_log_prob(logits: torch.Tensor, one_hot: torch.Tensor) -> torch.Tensor:
    """log softmax(logits) at the class of ``one_hot`` (its argmax, as ``OneHotCategorical.log_prob``
    reads a value, so a straight-through sample's rounding plays no part): shape (...)."""
    log_p = torch.log_softmax(logits, -1)
    return log_p.gather(-1, one_hot.argmax(-1, keepdim=True)).squeeze(-1)


def categorical_entropy(logits: torch.Tensor) -> torch.Tensor:
    """-sum_k p_k log p_k of softmax(logits): shape (...)."""
    log_p = torch.log_softmax(logits, -1)
    return -(log_p.exp() * log_p).sum(-1)


class OneHotStraightThrough(D.OneHotCategorical):
    """OneHotCategorical whose ``rsample`` is sample + probs - sg(probs): the forward value is an exact
    one-hot while gradients flow as if it were ``probs`` (straight-through, DreamerV3's latents).

    ``unimix`` > 0 mixes a uniform distribution in at construction (see :func:`unimix_logits`).
    KL divergences from torch's registry apply since this is a OneHotCategorical subclass.
    """

    has_rsample = True

    def __init__(self, logits: torch.Tensor | None = None, probs: torch.Tensor | None = None,
                 unimix: float = 0.0, validate_args: bool = False):
        if unimix > 0.0:
            if logits is not None:
                logits = unimix_logits(logits, unimix)
            else:
                probs = (1.0 - unimix) * probs + unimix / probs.shape[-1]
        super().__init__(probs=probs, logits=logits, validate_args=validate_args)
        self._from_probs = logits is None

    @torch.no_grad()
    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        """One-hot draws by the Gumbel-max trick, argmax_k(logits_k + G_k) with G = -log(-log(u)) and
        u ~ U(0, 1) from ``torch.rand`` on the logits' device: torch's sampler (``torch.multinomial``)
        syncs with the host on a GPU, this does not. u is clamped into [tiny, 1 - eps] so that G stays
        finite; the sum is taken in float32 or wider. Shape ``sample_shape + batch_shape + event_shape``
        and the logits' dtype, as torch's ``sample``."""
        shape = self._extended_shape(torch.Size(sample_shape))
        # log(probs) keeps a class of probability 0 impossible; torch's logits from probs clamp it to eps.
        logits = torch.log(self.probs) if self._from_probs else self.logits
        u = torch.rand(shape, dtype=at_least_float32(logits.dtype), device=logits.device)
        return gumbel_one_hot(logits.expand(shape), gumbel_from_uniform(u))

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        sample = self.sample(sample_shape)
        probs = self.probs.expand_as(sample)
        return sample + probs - probs.detach()

    @property
    def mode(self) -> torch.Tensor:
        """One-hot of the most likely class, with the same straight-through gradient."""
        probs = self.probs
        onehot = F.one_hot(probs.argmax(-1), probs.shape[-1]).to(probs.dtype)
        return onehot + probs - probs.detach()


# -------------------------------------------------------------------------- multi-discrete actions


def concatenated_one_hots(indices: torch.Tensor, nvec: tuple[int, ...]) -> torch.Tensor:
    """Sub-action indices (..., len(nvec)) as one-hots of sizes ``nvec`` side by side (..., sum(nvec)),
    float32: how a MultiDiscrete action enters the world model and the critic."""
    return torch.cat([F.one_hot(indices[..., i].long(), n) for i, n in enumerate(nvec)], -1).float()


def one_hot_indices(one_hots: torch.Tensor, nvec: tuple[int, ...]) -> torch.Tensor:
    """The inverse of :func:`concatenated_one_hots`: (..., sum(nvec)) -> int64 (..., len(nvec))."""
    return torch.stack([part.argmax(-1) for part in one_hots.split(list(nvec), -1)], -1)


class MultiOneHot:
    """Independent unimix categoricals, one per sub-action of a MultiDiscrete space, read from the
    consecutive slices of sizes ``nvec`` of the last axis; samples and values are their one-hots side by
    side (..., sum(nvec)).

    The 2023 reference code's actor for an action of several categorical parts, ``tfd.Independent`` over
    its unimix ``OneHotDist`` (danijar/dreamerv3 8fa35f8, dreamerv3/nets.py lines 495-506, the actor of
    its ``DiscretizeAction`` wrapper, embodied/core/wrappers.py lines 244-268): each part takes the uniform
    mix on its own classes and draws its own straight-through one-hot; the log-probability and the
    entropy are the sums over the parts, so the actor's one entropy bonus (``actent``, agent.py line 297)
    weighs the sum. The reference's parts all have the same number of classes; here each has its own."""

    def __init__(self, logits: torch.Tensor, nvec: tuple[int, ...], unimix: float = 0.0):
        self.nvec = tuple(nvec)
        # validate_args off: a straight-through sample is one-hot only up to float rounding (1 + p - p).
        self.parts = [OneHotStraightThrough(logits=chunk, unimix=unimix, validate_args=False)
                      for chunk in logits.split(list(self.nvec), -1)]

    def _split(self, value: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return value.split(list(self.nvec), -1)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        return torch.cat([part.sample(sample_shape) for part in self.parts], -1)

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        return torch.cat([part.rsample(sample_shape) for part in self.parts], -1)

    @property
    def mode(self) -> torch.Tensor:
        return torch.cat([part.mode for part in self.parts], -1)

    @property
    def probs(self) -> torch.Tensor:
        return torch.cat([part.probs for part in self.parts], -1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """log pi(a) = sum_i log pi_i(a_i) of concatenated one-hots ``value``."""
        return sum(part.log_prob(v) for part, v in zip(self.parts, self._split(value)))

    def entropy(self) -> torch.Tensor:
        """H = sum_i H_i: the parts are independent."""
        return sum(part.entropy() for part in self.parts)


# ------------------------------------------------------------------------------ continuous actions


def bounded_normal(mean_raw: torch.Tensor, std_raw: torch.Tensor, min_std: float = 0.1,
                   max_std: float = 1.0, std_offset: float = 2.0) -> D.Independent:
    """DreamerV3's continuous actor distribution: Independent(Normal(tanh(mean_raw), std), 1) with
    std = (max_std - min_std) sigmoid(std_raw + std_offset) + min_std, in [min_std, max_std].

    The 2023 reference code (nets.Dist, ``dist='normal'``, minstd 0.1, maxstd 1.0) does exactly this:
    the mean is squashed by tanh but the Normal itself is not, so samples can leave [-1, 1] and the
    environment side clips them. We keep that choice (no tanh-transformed Normal, so ``log_prob`` and
    ``entropy`` stay analytic); ``mode`` is tanh(mean_raw), inside [-1, 1]. Callers clip samples to the
    action range before stepping the environment. The +2 offset starts std near its upper bound.
    """
    mean, std = bounded_normal_parameters(mean_raw, std_raw, min_std, max_std, std_offset)
    return D.Independent(D.Normal(mean, std, validate_args=False), 1, validate_args=False)


def bounded_normal_parameters(mean_raw: torch.Tensor, std_raw: torch.Tensor, min_std: float = 0.1,
                              max_std: float = 1.0, std_offset: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(tanh(mean_raw), std) of :func:`bounded_normal`, for the update's draws without a distribution
    object: a sample is mean + std * N(0, 1)."""
    return torch.tanh(mean_raw), (max_std - min_std) * torch.sigmoid(std_raw + std_offset) + min_std


def normal_entropy(std: torch.Tensor) -> torch.Tensor:
    """Entropy of independent Normals of standard deviations ``std``, summed over the last axis:
    sum_i (0.5 + 0.5 log(2 pi) + log std_i), as ``Independent(Normal(., std), 1).entropy()``."""
    return (0.5 + 0.5 * math.log(2 * math.pi) + torch.log(std)).sum(-1)


class TruncatedNormal(D.Normal):
    """DrQ-v2's exploration noise (facebookresearch/drqv2 utils.TruncatedNormal).

    ``sample(clip)`` returns loc + clamp(scale * N(0, 1), -clip, clip), then clamps into
    [low + eps, high - eps]; the clamp is straight-through (x - sg(x) + sg(clamp(x))) so the actor's
    gradient reaches ``loc`` even where the action was clamped. Not a true truncated Normal:
    ``log_prob``/``entropy`` are the plain Normal's, which DrQ-v2 only logs.
    """

    has_rsample = True

    def __init__(self, loc: torch.Tensor, scale, low: float = -1.0, high: float = 1.0, eps: float = 1e-6):
        super().__init__(loc, scale, validate_args=False)
        self.low, self.high, self.eps = low, high, eps

    def _clamp(self, x: torch.Tensor) -> torch.Tensor:
        clamped = x.clamp(self.low + self.eps, self.high - self.eps)
        return x - x.detach() + clamped.detach()

    def sample(self, clip: float | None = None, sample_shape=torch.Size(),
               standard: torch.Tensor | None = None) -> torch.Tensor:
        """``standard``: the N(0, 1) draws to use, drawn before (a compiled update draws nothing); drawn
        here when None."""
        shape = self._extended_shape(sample_shape)
        if standard is None:
            standard = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        noise = standard.to(self.loc.dtype) * self.scale
        if clip is not None:
            noise = noise.clamp(-clip, clip)
        return self._clamp(self.loc + noise)

    def rsample(self, sample_shape=torch.Size(), clip: float | None = None) -> torch.Tensor:
        return self.sample(clip, sample_shape)


def linear_schedule(start: float, end: float, duration: float, step: float) -> float:
    """start + (end - start) min(step / duration, 1): DrQ-v2's ``linear(start, end, duration)`` stddev
    schedule, held at ``end`` after ``duration`` steps."""
    mix = min(max(step / duration, 0.0), 1.0)
    return start + (end - start) * mix
