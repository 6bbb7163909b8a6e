"""Regularisers as named loss terms: an agent declares each term with its coefficient, and ``LossTerms``
adds it to the loss and logs it, the same way for every agent:

    terms = LossTerms(td_loss)
    terms.add("dr3_dot", dr3_coef, lambda: dr3_penalty(phi, phi_next))     # off (never computed) at 0
    terms.add("cql_penalty", cql_alpha, lambda: cql_penalty(q, action))
    terms.loss      # td_loss + dr3_coef * dot + cql_alpha * penalty, added left to right
    terms.metrics   # {"train/dr3_dot": dot, "train/cql_penalty": penalty}, the unweighted values

Each term is computed and added where it is declared, one after the other: the forward ops (and so
the autograd graph and its floating-point sums) come in the order the declarations are written.
"""

from __future__ import annotations

from typing import Callable

import torch


class LossTerms:
    """A base loss and the regularisers added to it, each logged under ``prefix + name``."""

    def __init__(self, base: torch.Tensor, prefix: str = "train/"):
        self.loss = base
        self.prefix = prefix
        self.metrics: dict[str, torch.Tensor] = {}

    def add(self, name: str, coef: float, value: Callable[[], torch.Tensor]) -> None:
        """``coef * value()`` joins the loss, ``value()`` the log; a coefficient of 0 or less switches
        the term off, and ``value`` is then not computed."""
        if coef > 0:
            penalty = value()
            self.add_weighted(name, penalty, coef * penalty)

    def add_weighted(self, name: str, value: torch.Tensor, in_loss: torch.Tensor) -> None:
        """A term whose share of the loss is not a constant times what is logged (CQL's Lagrange form,
        ``cql_lagrange_terms``: a learned weight on the penalty less a threshold)."""
        self.loss = self.loss + in_loss
        self.metrics[self.prefix + name] = value
