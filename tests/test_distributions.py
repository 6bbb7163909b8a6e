"""Distributions against hand-computed values."""

import math

import pytest
import torch

from worldmodels.nets.distributions import (
    OneHotStraightThrough,
    TruncatedNormal,
    TwoHotDist,
    bounded_normal,
    linear_schedule,
    make_bins,
    symexp,
    symlog,
    two_hot,
    two_hot_decode,
    two_hot_loss,
    unimix_logits,
)

SMALL_BINS = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0])


def test_symexp_inverts_symlog_including_zero_negatives_and_large_values():
    x = torch.tensor([-1e6, -120.0, -3.5, -1.0, 0.0, 1e-3, 0.5, 1.0, 3.7, 1e6], dtype=torch.float64)
    torch.testing.assert_close(symexp(symlog(x)), x, rtol=1e-12, atol=0.0)
    assert symlog(torch.tensor(0.0)).item() == 0.0


def test_symlog_of_e_minus_one_is_one_and_odd():
    x = torch.tensor([math.e - 1.0, -(math.e - 1.0)], dtype=torch.float64)
    torch.testing.assert_close(symlog(x), torch.tensor([1.0, -1.0], dtype=torch.float64))


def test_two_hot_weights_between_two_bins():
    # 0.25 lies between b_2 = 0 and b_3 = 1: (1 - 0.25)/1 on bin 2, (0.25 - 0)/1 on bin 3.
    w = two_hot(torch.tensor(0.25), SMALL_BINS)
    torch.testing.assert_close(w, torch.tensor([0.0, 0.0, 0.75, 0.25, 0.0]))
    w = two_hot(torch.tensor(-1.6), SMALL_BINS)
    torch.testing.assert_close(w, torch.tensor([0.6, 0.4, 0.0, 0.0, 0.0]))


def test_two_hot_weights_exactly_on_a_bin_are_one_hot():
    w = two_hot(torch.tensor([-1.0, 0.0, 2.0, -2.0]), SMALL_BINS)
    torch.testing.assert_close(w, torch.eye(5)[[1, 2, 4, 0]])


def test_two_hot_weights_beyond_both_edges_go_to_the_end_bins():
    w = two_hot(torch.tensor([7.0, -30.0]), SMALL_BINS)
    torch.testing.assert_close(w, torch.eye(5)[[4, 0]])


def test_two_hot_any_batch_shape_reconstructs_the_value():
    values = torch.linspace(-1.9, 1.9, 24).reshape(2, 3, 4)
    w = two_hot(values, SMALL_BINS)
    assert w.shape == (2, 3, 4, 5)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, 4))
    torch.testing.assert_close((w * SMALL_BINS).sum(-1), values)
    assert ((w > 0).sum(-1) <= 2).all()


def test_two_hot_decode_of_encode_returns_the_value_symlog_space():
    bins = make_bins()  # linspace(-20, 20, 255), the default (2023 reference code) form
    assert bins.shape == (255,) and bins[0] == -20.0 and bins[-1] == 20.0
    values = torch.tensor([[3.7, -120.0], [0.0, 1e5]])
    logits = torch.log(two_hot(symlog(values), bins) + 1e-12)
    torch.testing.assert_close(two_hot_decode(logits, bins), values, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(TwoHotDist(logits).mean, values, rtol=1e-4, atol=1e-5)


def test_two_hot_decode_of_encode_returns_the_value_raw_space():
    bins = make_bins(space="raw", dtype=torch.float64)  # symexp(linspace(-20, 20, 255)), the paper's form
    torch.testing.assert_close(bins[[0, -1]], symexp(torch.tensor([-20.0, 20.0], dtype=torch.float64)))
    values = torch.tensor([3.7, -120.0], dtype=torch.float64)
    logits = torch.log(two_hot(values, bins) + 1e-30)
    torch.testing.assert_close(two_hot_decode(logits, bins, space="raw"), values, rtol=1e-4, atol=0.0)
    torch.testing.assert_close(TwoHotDist(logits, space="raw").mode, values, rtol=1e-4, atol=0.0)


def hand_log_softmax(logits):
    log_z = math.log(sum(math.exp(v) for v in logits))
    return [v - log_z for v in logits]


def test_two_hot_loss_is_cross_entropy_against_the_two_hot_target():
    logits = [0.1, -0.3, 0.5, 1.2, 0.0]
    ls = hand_log_softmax(logits)
    t = torch.tensor(logits)
    # raw space: target 0.25 -> 0.75 on bin 2, 0.25 on bin 3.
    loss = two_hot_loss(t, torch.tensor(0.25), SMALL_BINS, space="raw")
    assert loss.item() == pytest.approx(-(0.75 * ls[2] + 0.25 * ls[3]), rel=1e-6)
    # symlog space: symlog(e - 1) = 1 lies exactly on bin 3.
    loss = two_hot_loss(t, torch.tensor(math.e - 1.0), SMALL_BINS)
    assert loss.item() == pytest.approx(-ls[3], rel=1e-5)
    # symlog(-0.5) = -ln 1.5 = -0.405465 between bins -1 and 0: weight 0.405465 on bin 1.
    a = math.log(1.5)
    loss = two_hot_loss(t, torch.tensor(-0.5), SMALL_BINS)
    assert loss.item() == pytest.approx(-(a * ls[1] + (1 - a) * ls[2]), rel=1e-5)
    # TwoHotDist.log_prob is minus the same loss.
    assert TwoHotDist(t, SMALL_BINS).log_prob(torch.tensor(-0.5)).item() == pytest.approx(-loss.item())


def test_two_hot_loss_is_per_element_and_trains_logits_only():
    logits = torch.zeros(4, 6, 255, requires_grad=True)
    target = torch.randn(4, 6, requires_grad=True)
    loss = two_hot_loss(logits, target, make_bins())
    assert loss.shape == (4, 6)
    # Zero logits (the zero-initialised head) give a uniform prediction: loss = ln 255 everywhere.
    torch.testing.assert_close(loss, torch.full((4, 6), math.log(255.0)))
    loss.sum().backward()
    assert logits.grad is not None and target.grad is None


def test_unimix_probabilities_floor_every_class():
    probs = unimix_logits(torch.tensor([100.0, 0.0, 0.0, 0.0]), 0.01).exp()
    torch.testing.assert_close(probs, torch.tensor([0.9925, 0.0025, 0.0025, 0.0025]), rtol=0, atol=1e-6)
    logits = torch.randn(3, 5)
    torch.testing.assert_close(unimix_logits(logits, 0.0).exp(), logits.softmax(-1))
    torch.testing.assert_close(unimix_logits(logits, 0.01).exp().sum(-1), torch.ones(3))


def test_straight_through_sample_is_one_hot_with_gradient_of_probs():
    torch.manual_seed(0)
    logits = torch.randn(3, 4, requires_grad=True)
    weight = torch.tensor([1.0, -2.0, 3.0, 0.5])
    sample = OneHotStraightThrough(logits=logits).rsample()
    assert set(sample.detach().unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(sample.detach().sum(-1), torch.ones(3))
    (grad_sample,) = torch.autograd.grad((sample * weight).sum(), logits)
    (grad_probs,) = torch.autograd.grad((logits.softmax(-1) * weight).sum(), logits)
    torch.testing.assert_close(grad_sample, grad_probs)


def test_straight_through_with_unimix_and_sample_shape():
    logits = torch.tensor([[100.0, 0.0, 0.0, 0.0]], requires_grad=True)
    dist = OneHotStraightThrough(logits=logits, unimix=0.01)
    torch.testing.assert_close(dist.probs.detach(), torch.tensor([[0.9925, 0.0025, 0.0025, 0.0025]]),
                               rtol=0, atol=1e-6)
    sample = dist.rsample((5,))
    assert sample.shape == (5, 1, 4)
    torch.testing.assert_close(dist.mode.detach(), torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    (grad,) = torch.autograd.grad(sample[..., 1].sum(), logits)
    (expected,) = torch.autograd.grad(5 * unimix_logits(logits, 0.01).exp()[..., 1].sum(), logits)
    torch.testing.assert_close(grad, expected)
    # torch's KL registry applies to the subclass; KL to itself is zero.
    assert torch.distributions.kl_divergence(dist, dist).abs().max().item() < 1e-6


GUMBEL_PROBS = torch.tensor([0.5, 0.3, 0.15, 0.05])


@pytest.mark.parametrize("built_from", ["logits", "probs"])
def test_gumbel_max_sample_frequencies_are_the_probabilities_within_4_standard_errors(built_from):
    n = 200_000
    # Unnormalised logits (log p + 3) must not matter; the standard error is the binomial one,
    # sqrt(p (1 - p) / n), from the probabilities themselves.
    dist = (OneHotStraightThrough(logits=GUMBEL_PROBS.log() + 3.0) if built_from == "logits"
            else OneHotStraightThrough(probs=GUMBEL_PROBS))
    torch.manual_seed(0)
    frequencies = dist.sample((n,)).mean(0)
    standard_error = (GUMBEL_PROBS * (1 - GUMBEL_PROBS) / n).sqrt()
    assert ((frequencies - GUMBEL_PROBS).abs() < 4 * standard_error).all(), (frequencies, standard_error)


def test_categorical_samples_are_drawn_without_torch_multinomial(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("torch.multinomial syncs with the host on a GPU")

    monkeypatch.setattr(torch, "multinomial", refuse)
    logits = torch.randn(3, 5, requires_grad=True)
    OneHotStraightThrough(logits=logits).sample()
    OneHotStraightThrough(logits=logits, unimix=0.01).rsample((2,))
    OneHotStraightThrough(probs=logits.softmax(-1)).sample()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_gumbel_max_sample_is_one_hot_in_the_logits_dtype_with_torchs_shapes(dtype):
    logits = torch.randn(5, 7).to(dtype)
    dist = OneHotStraightThrough(logits=logits)
    for sample_shape in [(), (4,), (2, 3)]:
        sample = dist.sample(sample_shape)
        assert sample.shape == torch.distributions.OneHotCategorical(logits=logits.float()).sample(sample_shape).shape
        assert sample.shape == (*sample_shape, 5, 7) and sample.dtype == dtype
        assert set(sample.unique().tolist()) <= {0.0, 1.0}
        assert (sample.sum(-1) == 1).all()
        assert not sample.requires_grad


def test_gumbel_max_sampling_is_reproducible_under_manual_seed():
    dist = OneHotStraightThrough(logits=torch.randn(64, 6))
    torch.manual_seed(123)
    first = dist.rsample((10,))
    torch.manual_seed(123)
    again = dist.rsample((10,))
    torch.manual_seed(124)
    other = dist.rsample((10,))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_a_class_of_probability_zero_is_never_drawn():
    torch.manual_seed(0)
    from_probs = OneHotStraightThrough(probs=torch.tensor([0.0, 0.5, 0.5])).sample((20_000,))
    from_logits = OneHotStraightThrough(logits=torch.tensor([float("-inf"), 0.0, 0.0])).sample((20_000,))
    for sample in (from_probs, from_logits):
        assert sample[:, 0].sum() == 0 and (sample.sum(-1) == 1).all()


@pytest.mark.parametrize("u", [0.0, 1.0])
def test_uniform_draws_of_exactly_0_or_1_still_give_finite_gumbel_noise(monkeypatch, u):
    # Equal finite noise on every class leaves the argmax at the most likely class (index 2); an
    # unclamped u of 0 or 1 would make every entry -inf or +inf and argmax would answer index 0.
    rand = torch.rand
    monkeypatch.setattr(torch, "rand", lambda *args, **kwargs: rand(*args, **kwargs).fill_(u))
    sample = OneHotStraightThrough(logits=torch.tensor([0.0, 1.0, 2.0, -1.0])).sample((3,))
    torch.testing.assert_close(sample, torch.tensor([[0.0, 0.0, 1.0, 0.0]] * 3))


def test_bounded_actor_std_within_bounds_and_mode_within_action_range():
    extreme = torch.tensor([-1e4, -5.0, 0.0, 5.0, 1e4])
    dist = bounded_normal(extreme, extreme)
    std = dist.base_dist.scale
    assert (std >= 0.1).all() and (std <= 1.0).all()
    torch.testing.assert_close(std[[0, -1]], torch.tensor([0.1, 1.0]))
    # std_raw = 0: 0.9 * sigmoid(2) + 0.1
    assert std[2].item() == pytest.approx(0.9 / (1 + math.exp(-2.0)) + 0.1, rel=1e-6)
    assert dist.mode.abs().max() <= 1.0
    torch.testing.assert_close(dist.mode, torch.tanh(extreme))


def test_bounded_actor_is_independent_over_the_action_dim():
    mean_raw = torch.zeros(2, 3, requires_grad=True)
    dist = bounded_normal(mean_raw, torch.zeros(2, 3))
    assert dist.batch_shape == (2,) and dist.event_shape == (3,)
    sample = dist.rsample()
    assert sample.shape == (2, 3)
    sigma = 0.9 / (1 + math.exp(-2.0)) + 0.1
    expected_entropy = 3 * (0.5 * math.log(2 * math.pi * math.e) + math.log(sigma))
    torch.testing.assert_close(dist.entropy(), torch.full((2,), expected_entropy))
    expected_lp = 3 * (-math.log(sigma) - 0.5 * math.log(2 * math.pi))
    torch.testing.assert_close(dist.log_prob(torch.zeros(2, 3)), torch.full((2,), expected_lp))
    sample.sum().backward()
    assert mean_raw.grad is not None and mean_raw.grad.abs().sum() > 0


def test_truncated_normal_samples_stay_inside_the_open_bounds():
    torch.manual_seed(0)
    eps = 1e-6
    dist = TruncatedNormal(torch.full((10000,), 0.9), 5.0, eps=eps)
    sample = dist.sample()
    assert sample.min() >= -1 + eps and sample.max() <= 1 - eps
    assert (sample == torch.tensor(1 - eps)).any()  # the big scale does hit the bound


def test_truncated_normal_clip_bounds_the_noise():
    torch.manual_seed(0)
    loc = torch.rand(10000) - 0.5  # |loc| + clip < 1, so the final clamp never binds
    sample = TruncatedNormal(loc, 10.0).sample(clip=0.3)
    assert (sample - loc).abs().max() <= 0.3 + 1e-6
    assert (sample - loc).abs().max() >= 0.3 - 1e-6  # the clip binds at this scale


def test_truncated_normal_gradient_flows_to_loc_through_the_clamp():
    loc = torch.tensor([0.0, 0.95, -0.99], requires_grad=True)
    TruncatedNormal(loc, 1.0).sample(clip=0.3, sample_shape=(7,)).sum().backward()
    torch.testing.assert_close(loc.grad, torch.full((3,), 7.0))


def test_linear_schedule_values():
    assert linear_schedule(1.0, 0.1, 500000, 0) == pytest.approx(1.0)
    assert linear_schedule(1.0, 0.1, 500000, 250000) == pytest.approx(0.55)
    assert linear_schedule(1.0, 0.1, 500000, 500000) == pytest.approx(0.1)
    assert linear_schedule(1.0, 0.1, 500000, 2000000) == pytest.approx(0.1)


def test_a_bf16_head_decodes_and_scores_as_in_float32():
    """Under bf16 autocast a head's logits come out in bf16; the bins, the softmax, the expectation and
    the cross-entropy stay float32. Logits encoding 5000 (symlog 8.517, between bins 8.504 and 8.661):
    bf16 keeps 8 bits of mantissa, so a bin at 8.5 rounded to bf16 would move by up to 0.03 in symlog
    space, 3% of the decoded value; in float32 the decode is exact to 1e-4."""
    bins = make_bins(255)
    weights = two_hot(symlog(torch.tensor([5000.0])), bins)
    logits = torch.log(weights + 1e-30).to(torch.bfloat16)  # as a bf16 head would give them
    decoded = two_hot_decode(logits, bins)
    assert decoded.dtype == torch.float32
    assert decoded.item() == pytest.approx(two_hot_decode(logits.float(), bins).item(), rel=1e-6)
    assert decoded.item() == pytest.approx(5000.0, rel=1e-4)
    loss = two_hot_loss(logits, torch.tensor([5000.0]), bins)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(two_hot_loss(logits.float(), torch.tensor([5000.0]), bins).item(), rel=1e-6)
    dist = TwoHotDist(logits)
    assert dist.bins.dtype == torch.float32 and dist.mean.item() == pytest.approx(5000.0, rel=1e-4)
