"""The per-batch (``torch._foreach_*``) updates against straightforward per-parameter loops written here:
LaProp, adaptive gradient clipping and the target networks' EMA."""

import copy
import math

import pytest
import torch
from torch import nn

from worldmodels.dreamer.behavior import Critic
from worldmodels.nets.ema import ema_update_
from worldmodels.training.optim import LaProp, adaptive_clip_grad_

SHAPES = [(5,), (3, 4), (2, 3, 4), (7,), (1,)]


class ReferenceLaProp:
    """The module docstring's formulas, one parameter at a time:
        v <- b2 v + (1 - b2) g^2
        m <- b1 m + (1 - b1) g / (sqrt(v / (1 - b2^t)) + eps)
        p <- p - lr_t m / (1 - b1^t),   lr_t = lr min(1, t / warmup)
    with t counted per parameter (a step without a gradient leaves the parameter and its t alone)."""

    def __init__(self, params, lr, betas, eps, warmup):
        self.params, self.lr, self.betas, self.eps, self.warmup = list(params), lr, betas, eps, warmup
        self.t = [0] * len(self.params)
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self):
        b1, b2 = self.betas
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            self.t[i] += 1
            t, g = self.t[i], p.grad
            self.v[i] = b2 * self.v[i] + (1 - b2) * g * g
            rms = torch.sqrt(self.v[i] / (1 - b2 ** t)) + self.eps
            self.m[i] = b1 * self.m[i] + (1 - b1) * (g / rms)
            lr_t = self.lr * min(1.0, t / self.warmup) if self.warmup else self.lr
            p -= lr_t * self.m[i] / (1 - b1 ** t)


def random_parameters(seed: int, dtypes=(torch.float32,)) -> list[nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [nn.Parameter(torch.randn(shape, generator=g).to(dtypes[i % len(dtypes)]))
            for i, shape in enumerate(SHAPES)]


def set_gradients(params, step: int, g: torch.Generator, missing=lambda i, step: False) -> None:
    for i, p in enumerate(params):
        p.grad = None if missing(i, step) else (torch.randn(p.shape, generator=g) * (i + 1)).to(p.dtype)


def test_foreach_laprop_equals_a_per_parameter_loop_over_20_steps_with_a_gradient_sometimes_missing():
    hparams = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, warmup=7)
    params = random_parameters(0, dtypes=(torch.float32, torch.float64))  # two dtypes: two foreach groups
    reference_params = [nn.Parameter(p.detach().clone()) for p in params]
    optimizer, reference = LaProp(params, **hparams), ReferenceLaProp(reference_params, **hparams)
    # Parameter 2 has no gradient on every third step, parameter 4 none before step 5: their step
    # counts fall behind the others', so their bias corrections and lr_t differ within one update.
    missing = lambda i, step: (i == 2 and step % 3 == 1) or (i == 4 and step < 5)
    g = torch.Generator().manual_seed(1)
    for step in range(20):
        set_gradients(params, step, g, missing)
        for p, r in zip(params, reference_params):
            r.grad = None if p.grad is None else p.grad.clone()
        optimizer.step()
        reference.step()
        for p, r in zip(params, reference_params):
            torch.testing.assert_close(p, r, rtol=1e-6, atol=0.0)
    for i, p in enumerate(params):
        state = optimizer.state[p]
        assert state["step"] == reference.t[i] and isinstance(state["step"], int)
        # m is a sum of terms of either sign: an entry near 0 is compared to the tensor's scale.
        for mine, theirs in ((state["exp_avg"], reference.m[i]), (state["exp_avg_sq"], reference.v[i])):
            torch.testing.assert_close(mine, theirs, rtol=1e-6, atol=1e-6 * theirs.abs().max().item())
    assert reference.t == [20, 20, 13, 20, 15]  # the missing gradients did skip steps


def test_foreach_laprop_steps_each_param_group_with_its_own_hyperparameters():
    params = random_parameters(2)
    first, second = params[:2], params[2:]
    reference_params = [nn.Parameter(p.detach().clone()) for p in params]
    optimizer = LaProp([dict(params=first), dict(params=second, lr=3e-2, warmup=0)], lr=1e-2, eps=1e-8, warmup=4)
    references = [ReferenceLaProp(reference_params[:2], lr=1e-2, betas=(0.9, 0.999), eps=1e-8, warmup=4),
                  ReferenceLaProp(reference_params[2:], lr=3e-2, betas=(0.9, 0.999), eps=1e-8, warmup=0)]
    g = torch.Generator().manual_seed(3)
    for step in range(10):
        set_gradients(params, step, g)
        for p, r in zip(params, reference_params):
            r.grad = p.grad.clone()
        optimizer.step()
        for reference in references:
            reference.step()
    for p, r in zip(params, reference_params):
        torch.testing.assert_close(p, r, rtol=1e-6, atol=0.0)


def test_laprop_state_dict_round_trips_into_a_fresh_optimizer():
    params = random_parameters(4)
    optimizer = LaProp(params, lr=1e-2, eps=1e-8, warmup=3)
    g = torch.Generator().manual_seed(5)
    for step in range(6):
        set_gradients(params, step, g, missing=lambda i, step: i == 1 and step < 2)
        optimizer.step()
    saved = copy.deepcopy(optimizer.state_dict())
    assert {key for state in saved["state"].values() for key in state} == {"step", "exp_avg", "exp_avg_sq"}
    assert sorted(state["step"] for state in saved["state"].values()) == [4, 6, 6, 6, 6]

    restored_params = [nn.Parameter(p.detach().clone()) for p in params]
    restored = LaProp(restored_params, lr=1e-2, eps=1e-8, warmup=3)
    restored.load_state_dict(saved)
    set_gradients(params, 6, g)
    for p, r in zip(params, restored_params):
        r.grad = p.grad.clone()
    optimizer.step()
    restored.step()
    for p, r in zip(params, restored_params):
        torch.testing.assert_close(r, p, rtol=0.0, atol=0.0)
    for p, r in zip(params, restored_params):
        assert restored.state[r]["step"] == optimizer.state[p]["step"]
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(restored.state[r][key], optimizer.state[p][key], rtol=0.0, atol=0.0)


@torch.no_grad()
def reference_adaptive_clip(params, clip: float, pmin: float = 1e-3) -> float:
    """Per tensor: g <- g / max(1, |g| / (clip max(pmin, |p|))); returns sqrt(sum |g|^2) before clipping."""
    total = 0.0
    for p in params:
        if p.grad is None:
            continue
        grad_norm = p.grad.double().pow(2).sum().sqrt().item()
        upper = clip * max(pmin, p.double().pow(2).sum().sqrt().item())
        total += grad_norm ** 2
        p.grad.mul_(1.0 / max(1.0, grad_norm / upper))
    return math.sqrt(total)


def test_foreach_adaptive_clipping_equals_a_per_tensor_loop_and_returns_the_norm_before_clipping():
    params = random_parameters(6)
    with torch.no_grad():
        params[3].zero_()  # below pmin: bound clip x pmin
    g = torch.Generator().manual_seed(7)
    set_gradients(params, 0, g, missing=lambda i, step: i == 4)
    with torch.no_grad():
        params[0].grad.mul_(1e-4)  # small enough to pass untouched
    reference_params = [nn.Parameter(p.detach().clone()) for p in params]
    for p, r in zip(params, reference_params):
        r.grad = None if p.grad is None else p.grad.clone()
    total = adaptive_clip_grad_(params, clip=0.3)
    expected = reference_adaptive_clip(reference_params, clip=0.3)
    assert total.item() == pytest.approx(expected, rel=1e-6)
    assert params[4].grad is None
    for p, r in zip(params, reference_params):
        if p.grad is not None:
            torch.testing.assert_close(p.grad, r.grad, rtol=1e-6, atol=0.0)
    # Some were clipped and one was not: both branches ran.
    assert torch.equal(params[0].grad, reference_params[0].grad)
    assert params[1].grad.norm().item() == pytest.approx(0.3 * params[1].norm().item(), rel=1e-5)


def test_ema_update_moves_each_target_the_fraction_of_the_way_to_its_source():
    targets = [torch.tensor([0.0, 10.0]), torch.tensor([[4.0], [-4.0]])]
    sources = [torch.tensor([1.0, 0.0]), torch.tensor([[0.0], [0.0]])]
    ema_update_(targets, sources, 0.25)
    # t + 0.25 (s - t): 0 + 0.25, 10 - 2.5; 4 - 1, -4 + 1
    torch.testing.assert_close(targets[0], torch.tensor([0.25, 7.5]))
    torch.testing.assert_close(targets[1], torch.tensor([[3.0], [-3.0]]))
    torch.testing.assert_close(sources[0], torch.tensor([1.0, 0.0]))  # sources untouched
    ema_update_([], [], 0.5)  # nothing to update is no error
    with pytest.raises(ValueError):
        ema_update_(targets, sources[:1], 0.5)


def test_ema_update_of_parameters_needs_no_no_grad_block_and_builds_no_graph():
    target, source = nn.Parameter(torch.zeros(3)), nn.Parameter(torch.full((3,), 2.0))
    ema_update_([target], [source], 0.1)
    torch.testing.assert_close(target.detach(), torch.full((3,), 0.2))
    assert target.grad_fn is None


def test_dreamer_slow_critic_trails_the_critic_by_the_fraction():
    torch.manual_seed(0)
    critic = Critic(feat_dim=6, units=8, layers=1, bins=5)
    with torch.no_grad():
        for p in critic.net.parameters():
            p.add_(torch.randn_like(p))
    before = {name: p.clone() for name, p in critic.slow.named_parameters()}
    critic.update_slow(0.02)
    for (name, slow), fast in zip(critic.slow.named_parameters(), critic.net.parameters()):
        torch.testing.assert_close(slow, before[name] + 0.02 * (fast.detach() - before[name]))
