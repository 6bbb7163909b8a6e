"""The value-based learner's faster update computes what the plain one does: bit for bit the target
pass skipped while the target holds the online weights, and one-offset shifts (A-LIX's mixing, the
batch crop) taken as index_select or, on the CPU, slice copies instead of a gather; to float rounding
the CPU's fused Adam step against the per-operation one."""

import pytest
import torch

from model_free import Rainbow
from worldmodels.regularizers import LocalSignalMixing, take_shifted
from worldmodels.training import EnvSpec

SPEC = EnvSpec((4, 44, 44), 1, num_actions=3)
ALIX_ATARI = dict(n_step=3, updates_per_env_step=2, target_update_period=1, max_grad_norm=10, adam_eps=1.5e-5,
                  encoder="alix", hidden=64, feature_dim=50, alix=True, prioritized=False)
DER = dict(target_update_period=2, hidden=64, prioritized=False)


def trained(settings: dict, plain: bool, updates: int = 6, optimizers=None) -> tuple[list, list]:
    """(losses, gradients) of ``updates`` updates on one fixed batch. ``plain`` passes s' through the
    target net at every update, as the learner did before the shortcut. ``optimizers``: a function of the
    agent that makes them in place of ``configure_optimizers``."""
    torch.manual_seed(0)
    agent = Rainbow(**settings)
    agent.build(SPEC)
    optimizers = agent.configure_optimizers() if optimizers is None else optimizers(agent)
    losses = []
    agent.optimizers = lambda: optimizers
    agent.log_scalars = lambda metrics: losses.append(metrics["train/td_loss"].detach().clone())
    agent.manual_backward = lambda loss: loss.backward()
    if plain:
        sync = agent.sync_target

        def sync_without_shortcut():
            sync()
            agent.target_equals_online = False

        agent.sync_target = sync_without_shortcut
        agent.target_equals_online = False
    g = torch.Generator().manual_seed(1)
    batch = {"obs": torch.randint(0, 256, (8, *SPEC.obs_shape), dtype=torch.uint8, generator=g),
             "next_obs": torch.randint(0, 256, (8, *SPEC.obs_shape), dtype=torch.uint8, generator=g),
             "action": torch.randint(0, 3, (8,), generator=g), "reward": torch.randn(8, generator=g),
             "discount": torch.full((8,), 0.97)}
    gradients = []
    for update in range(updates):
        agent.counters.updates = update + 1  # the loop counts the update before it runs
        agent.training_step(batch, update)
        gradients.append([p.grad.clone() for p in agent.q.parameters() if p.grad is not None])
    return losses, gradients


@pytest.mark.parametrize("settings", [ALIX_ATARI, DER], ids=["A-LIX-Atari", "DER"])
def test_skipping_the_target_pass_while_it_holds_the_online_weights_changes_no_loss_or_gradient(settings):
    fast_losses, fast_grads = trained(settings, plain=False)
    plain_losses, plain_grads = trained(settings, plain=True)
    for fast, plain in zip(fast_losses, plain_losses):
        assert torch.equal(fast, plain)
    for fast, plain in zip(fast_grads, plain_grads):
        assert len(fast) == len(plain) > 0 and all(torch.equal(f, p) for f, p in zip(fast, plain))


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("offset", [-12, -3, -1, 0, 2, 8, 11])
def test_one_offset_shift_equals_the_gather_in_values_and_gradients(dim, offset):
    x = torch.randn(4, 3, 9, 9, requires_grad=True)
    weights = torch.randn(4, 3, 9, 9)
    index = (torch.arange(9) + offset).clamp(0, 8)  # the gather written out: replicate-clamped indices
    shape = [1, 1, 1, 1]
    shape[dim] = 9
    expected = x.gather(dim, index.view(shape).expand(4, 3, 9, 9))
    (grad_expected,) = torch.autograd.grad((expected * weights).sum(), x)
    out = take_shifted(x, dim, torch.tensor([offset]))
    (grad,) = torch.autograd.grad((out * weights).sum(), x)
    assert torch.equal(out, expected) and torch.equal(grad, grad_expected)


def gather_mix(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """A-LIX's mixing as the layer first computed it: the bilinear sample at (i + dy, j + dx) of the
    replicate-padded map, each shifted map a gather with clamped indices (one shift for the batch)."""
    def shifted(t, dim, offset):
        n = t.shape[dim]
        index = (torch.arange(n) + offset).clamp(0, n - 1)
        shape = [1, 1, 1, 1]
        shape[dim] = n
        return t.gather(dim, index.view(shape).expand(t.shape))

    base = shift.floor()
    fy, fx = (shift - base)[0]
    dy, dx = base.long()[0]
    rows = (1 - fy) * shifted(x, 2, dy) + fy * shifted(x, 2, dy + 1)
    return (1 - fx) * shifted(rows, 3, dx) + fx * shifted(rows, 3, dx + 1)


def test_a_lix_atari_updates_with_the_faster_mixing_equal_those_with_the_gather_bit_for_bit(monkeypatch):
    fast_losses, fast_grads = trained(ALIX_ATARI, plain=False)
    monkeypatch.setattr(LocalSignalMixing, "mix", staticmethod(gather_mix))
    gather_losses, gather_grads = trained(ALIX_ATARI, plain=False)
    assert len(fast_losses) == len(gather_losses) == 6
    for fast, gather in zip(fast_losses, gather_losses):
        assert torch.equal(fast, gather)
    for fast, gather in zip(fast_grads, gather_grads):
        assert len(fast) == len(gather) > 0 and all(torch.equal(f, g) for f, g in zip(fast, gather))


class PerOperationAdam(torch.optim.Optimizer):
    """Adam one elementwise operation at a time, in the order of torch's per-parameter loop
    (torch/optim/adam.py, _single_tensor_adam, without weight decay or amsgrad)."""

    def __init__(self, params, lr: float, eps: float, betas=(0.9, 0.999)):
        super().__init__(params, dict(lr=lr, eps=eps, betas=betas))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state.update(step=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                state["step"] += 1
                t = state["step"]
                state["m"].lerp_(p.grad, 1 - beta1)
                state["v"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                denom = (state["v"].sqrt() / (1 - beta2 ** t) ** 0.5).add_(group["eps"])
                p.addcdiv_(state["m"], denom, value=-group["lr"] / (1 - beta1 ** t))


@pytest.mark.parametrize("settings", [ALIX_ATARI, DER], ids=["A-LIX-Atari", "DER"])
def test_the_fused_adam_step_equals_the_per_operation_one_to_rounding(settings):
    """The first update's loss and gradients do not depend on the optimizer (bit for bit); its step and the
    next updates do, to rounding only: torch's fused kernel evaluates Adam's formula in one pass, in another
    order (a last-bit difference on a few weights per step), so later losses and gradients move by rounding."""
    per_operation = lambda agent: ([PerOperationAdam(agent.q.parameters(), lr=agent.hparams.lr, eps=agent.hparams.adam_eps),
                                    agent.alix_strength.make_optimizer()] if agent.hparams.alix else
                                   PerOperationAdam(agent.q.parameters(), lr=agent.hparams.lr, eps=agent.hparams.adam_eps))
    fused_losses, fused_grads = trained(settings, plain=False, updates=3)
    reference_losses, reference_grads = trained(settings, plain=False, updates=3, optimizers=per_operation)
    assert torch.equal(fused_losses[0], reference_losses[0])
    assert all(torch.equal(f, r) for f, r in zip(fused_grads[0], reference_grads[0]))
    for fused, reference in zip(fused_losses, reference_losses):
        torch.testing.assert_close(fused, reference, rtol=1e-5, atol=0)
    for fused, reference in zip(fused_grads, reference_grads):
        for f, r in zip(fused, reference):
            torch.testing.assert_close(f, r, rtol=1e-5, atol=2e-8)  # gradients ~1e-2, their rounding ~1e-8


def test_the_learner_steps_with_torchs_fused_adam_on_the_cpu():
    agent = Rainbow(**DER)
    agent.build(SPEC)
    assert agent.configure_optimizers().defaults["fused"] is True


@pytest.mark.parametrize("side", [1, 2, 3, 6])
@pytest.mark.parametrize("shift", [(0.0, 0.0), (-2.5, 2.25), (1.0, -1.0), (-0.4, 0.7), (4.6, -7.3)])
def test_the_mixing_on_views_equals_the_gather_at_every_map_size_and_shift(side, shift):
    """Maps down to one cell and shifts past the map's side: every position an edge case somewhere."""
    g = torch.Generator().manual_seed(side)
    x = torch.randn(2, 3, side, side + 1, generator=g, requires_grad=True)
    weights = torch.randn(2, 3, side, side + 1, generator=g)
    shift = torch.tensor([shift])
    expected = gather_mix(x, shift)
    (grad_expected,) = torch.autograd.grad((expected * weights).sum(), x)
    out = LocalSignalMixing.mix(x, shift)
    (grad,) = torch.autograd.grad((out * weights).sum(), x)
    assert torch.equal(out, expected) and torch.equal(grad, grad_expected)
