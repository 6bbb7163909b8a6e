"""The value-based learner's faster update computes what the plain one does, bit for bit: the target
pass skipped while the target holds the online weights, and one-offset shifts (A-LIX's mixing, the
batch crop) taken with index_select instead of a gather."""

import pytest
import torch

from model_free import Rainbow
from worldmodels.regularizers import take_shifted
from worldmodels.training import EnvSpec

SPEC = EnvSpec((4, 44, 44), 1, num_actions=3)
ALIX_ATARI = dict(n_step=3, updates_per_env_step=2, target_update_period=1, max_grad_norm=10, adam_eps=1.5e-5,
                  encoder="alix", hidden=64, feature_dim=50, alix=True, prioritized=False)
DER = dict(target_update_period=2, hidden=64, prioritized=False)


def trained(settings: dict, plain: bool, updates: int = 6) -> tuple[list, list]:
    """(losses, gradients) of ``updates`` updates on one fixed batch. ``plain`` passes s' through the
    target net at every update, as the learner did before the shortcut."""
    torch.manual_seed(0)
    agent = Rainbow(**settings)
    agent.build(SPEC)
    optimizers = agent.configure_optimizers()
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
@pytest.mark.parametrize("offset", [-3, 0, 2])
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
