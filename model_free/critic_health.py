"""The training-health figures the model-free critics share (``Agent.health``; the ``Health``
callback logs them as ``health/<name>``):

    q_mean               Q of the replayed (s, a) of the held batch, as the agent bootstraps it
    mc_return_mean       their discounted Monte-Carlo return, over the states whose return is known
    mc_return_ms         its mean square: the scale of the values the critic fits (the offline workflow's
                         TD error is read against it)
    q_overestimation     mean Q - Monte-Carlo return over those states
    critic_srank         srank (delta 0.01) of the critic's penultimate features
    encoder_srank        srank of the encoder's output (conv features; a dict's [conv, vector] features;
                         the value-based learner's vector torso); not reported for an encoder without
                         weights (the actor-critics on states), whose output is the states themselves
    critic_feature_dot   DR3's quantity phi(s, a) . phi(s', a') (mean over twin heads)
    td_loss              the critic's TD loss on the held batch, as in training (augmentation, mixing)
    nd_score             A-LIX's ND score of dTD_loss / d(last conv feature map); not reported
                         without image keys: it measures how jagged a gradient is across pixels
    augmentation_gap     mean squared difference of Q under two independent augmentations of s (of its
                         image keys); not reported without image keys, which nothing augments

The replayed actions come from older policies, so Q - return compares the critic with the
behaviour that filled the replay, as Kumar et al. 2021 (arXiv 2109.10813) read it; SAC's soft Q also counts entropy
bonuses the returns do not, which shifts DrQ's gap by a small constant.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager

import torch
from torch import nn

from worldmodels.diagnostics import nd_score, overestimation, srank
from worldmodels.regularizers import dr3_penalty


def critic_health(q: torch.Tensor, phi: torch.Tensor | Sequence[torch.Tensor],
                  phi_next: torch.Tensor | Sequence[torch.Tensor], encoded: torch.Tensor | None,
                  batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor | float]:
    """The value figures from one evaluation-mode pass. ``phi``: penultimate features of (s, a), a
    tensor or one per twin head (srank reads the first head); ``phi_next``: of (s', a'); ``encoded``:
    the encoder's output (None: no encoder_srank)."""
    valid = batch["mc_valid"]
    known = valid.any()
    out = {
        "q_mean": q.mean(),
        "mc_return_mean": batch["mc_return"][valid].float().mean() if known else float("nan"),
        "mc_return_ms": batch["mc_return"][valid].float().pow(2).mean() if known else float("nan"),
        "q_overestimation": overestimation(q, batch["mc_return"], valid),
        "critic_srank": srank(phi if torch.is_tensor(phi) else phi[0]),
        "encoder_srank": srank(encoded.flatten(1)) if encoded is not None else None,
        "critic_feature_dot": dr3_penalty(phi, phi_next),
    }
    return {name: value for name, value in out.items() if value is not None}


def learned(module: nn.Module) -> bool:
    """Whether ``module`` has weights that training changes (a state encoder passes states through)."""
    return any(p.requires_grad for p in module.parameters())


def nd_under(loss: torch.Tensor, feature_map: torch.Tensor) -> torch.Tensor:
    """ND score of d loss / d feature_map, without touching any parameter's ``.grad``."""
    (grad,) = torch.autograd.grad(loss, feature_map)
    return nd_score(grad)


@contextmanager
def training_mode(module: nn.Module):
    """Training mode (A-LIX mixing on) with gradients enabled, for the loss the ND score reads."""
    was_training = module.training
    module.train()
    try:
        with torch.enable_grad():
            yield
    finally:
        module.train(was_training)
