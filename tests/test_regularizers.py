"""Augmentations (DrQ, DrQ-v2), the A-LIX layer and the ND score, against hand-computed values."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from worldmodels.diagnostics import nd_map, nd_score
from worldmodels.regularizers import (
    cql_penalty,
    AdaptiveStrength,
    LocalSignalMixing,
    drq_atari_augment,
    random_shift,
    sample_shifts,
)


def distinct_image(b=2, c=2, h=5, w=6, dtype=torch.uint8):
    """Every pixel has its own value, so a shifted copy says where each pixel came from."""
    return torch.arange(b * c * h * w).view(b, c, h, w).to(dtype)


def checkerboard(h, w):
    i, j = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return 1.0 - 2.0 * ((i + j) % 2).float()          # +1 at (0, 0), alternating


# ---------------------------------------------------------------- random_shift (DrQ-v2)

def test_random_shift_is_integer_translation_of_replicate_padded_image():
    x = distinct_image()
    shifts = torch.tensor([[0, 3], [4, 1]])                       # (row, column) crop offsets
    out = random_shift(x, pad=2, shifts=shifts)
    padded = F.pad(x.float(), (2, 2, 2, 2), mode="replicate")
    for b, (sy, sx) in enumerate(shifts.tolist()):
        assert torch.equal(out[b].float(), padded[b, :, sy:sy + 5, sx:sx + 6])


def test_random_shift_by_hand_on_one_row():
    x = torch.tensor([[[[10, 20, 30, 40]]]], dtype=torch.uint8)  # 1x1x1x4
    # pad 2: padded row = 10 10 10 20 30 40 40 40; crop offset 0 -> 10 10 10 20, offset 4 -> 30 40 40 40
    left = random_shift(x, pad=2, shifts=torch.tensor([[2, 0]]))
    right = random_shift(x, pad=2, shifts=torch.tensor([[2, 4]]))
    assert left.flatten().tolist() == [10, 10, 10, 20]
    assert right.flatten().tolist() == [30, 40, 40, 40]


def test_random_shift_matches_drqv2_grid_sample():
    """DrQ-v2's RandomShiftsAug written out with its grid_sample, at given shifts."""
    n, h, pad = 3, 10, 4
    x = torch.randn(n, 2, h, h, generator=torch.Generator().manual_seed(0))
    shifts = torch.tensor([[0, 8], [3, 5], [8, 1]])                  # (row, column)
    eps = 1.0 / (h + 2 * pad)
    arange = torch.linspace(-1.0 + eps, 1.0 - eps, h + 2 * pad)[:h].unsqueeze(0).repeat(h, 1).unsqueeze(2)
    grid = torch.cat([arange, arange.transpose(1, 0)], dim=2).unsqueeze(0).repeat(n, 1, 1, 1)
    grid = grid + shifts.flip(1).float().view(n, 1, 1, 2) * 2.0 / (h + 2 * pad)  # grid is (x, y)
    ref = F.grid_sample(F.pad(x, (pad,) * 4, mode="replicate"), grid, padding_mode="zeros", align_corners=False)
    torch.testing.assert_close(random_shift(x, pad, shifts=shifts), ref, atol=1e-5, rtol=0)


def test_random_shift_keeps_uint8():
    x = distinct_image()
    assert random_shift(x, pad=4).dtype == torch.uint8
    assert random_shift(x.float(), pad=4).dtype == torch.float32


def test_random_shift_by_pad_is_identity():
    x = distinct_image()
    assert torch.equal(random_shift(x, pad=4, shifts=torch.tensor([[4, 4], [4, 4]])), x)


def test_sampled_shifts_cover_zero_to_two_pad_and_replay_with_seed():
    shifts = sample_shifts(4000, pad=4, generator=torch.Generator().manual_seed(0))
    assert shifts.shape == (4000, 2) and shifts.dtype == torch.int64
    assert set(shifts.flatten().tolist()) == set(range(9))
    again = sample_shifts(4000, pad=4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(shifts, again)


# ---------------------------------------------------------------- drq_atari_augment (DrQ, Dopamine)

def test_drq_atari_intensity_factor_within_0_9_and_1_1():
    x = torch.ones(5000, 1, 2, 2)
    out = drq_atari_augment(x, pad=0, generator=torch.Generator().manual_seed(1))
    factor = out[:, 0, 0, 0]
    assert torch.equal(out, factor.view(-1, 1, 1, 1).expand_as(out))   # one factor per sample
    assert factor.min() >= 0.9 and factor.max() <= 1.1
    assert (factor == 0.9).any() and (factor == 1.1).any()          # clipping at +-2 sigma hit


def test_drq_atari_without_pad_multiplies_each_sample_by_its_factor():
    x = distinct_image(b=3, dtype=torch.float32)
    out = drq_atari_augment(x, pad=0, generator=torch.Generator().manual_seed(7))
    noise = torch.randn(3, generator=torch.Generator().manual_seed(7))  # drawn the same way
    factor = 1 + 0.05 * noise.clamp(-2, 2)
    torch.testing.assert_close(out, x * factor.view(3, 1, 1, 1))


def test_drq_atari_crop_offsets_are_dopamines_0_to_7():
    # Dopamine draws randint(0, 92 - 84): the upper bound is exclusive, so offset 8 (shift +4) never occurs.
    shifts = sample_shifts(4000, pad=4, generator=torch.Generator().manual_seed(0), last_offset=False)
    assert set(shifts.unique().tolist()) == set(range(8))


def test_drq_atari_returns_float_and_shifts_then_scales():
    x = distinct_image(b=4, h=8, w=8)
    out = drq_atari_augment(x, pad=4, generator=torch.Generator().manual_seed(3))
    assert out.dtype == torch.float32
    g = torch.Generator().manual_seed(3)
    shifts = sample_shifts(4, 4, g, last_offset=False)
    factor = 1 + 0.05 * torch.randn(4, generator=g).clamp(-2, 2)
    expected = random_shift(x, 4, shifts=shifts).float() * factor.view(4, 1, 1, 1)
    torch.testing.assert_close(out, expected)


def test_drq_atari_batch_crop_moves_every_image_by_one_offset_as_dopamines_2021_code():
    """Dopamine at commit 88ca537: jnp.pad(edge), one randint(0, 8) per axis for the whole batch, a slice;
    then one intensity factor per sample. Written here with torch's replicate pad and slicing."""
    x = distinct_image(b=5, h=8, w=8).float()
    out = drq_atari_augment(x, pad=4, generator=torch.Generator().manual_seed(11), crop="batch")
    g = torch.Generator().manual_seed(11)
    row, col = torch.randint(0, 8, (1, 2), generator=g)[0].tolist()
    factor = 1 + 0.05 * torch.randn(5, generator=g).clamp(-2, 2)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4), mode="replicate")
    expected = padded[:, :, row:row + 8, col:col + 8] * factor.view(5, 1, 1, 1)
    torch.testing.assert_close(out, expected)


# ---------------------------------------------------------------- ND score

def test_nd_score_of_constant_gradient_is_zero():
    assert nd_score(torch.full((2, 3, 4, 4), 0.7)).item() == 0.0


def test_nd_map_centre_cell_by_hand():
    g = torch.arange(1.0, 10.0).view(1, 1, 3, 3)
    # centre 5, neighbours 1 2 3 4 6 7 8 9: signal = (285 - 25) / 8 = 32.5, noise = 60 / 8 = 7.5
    assert nd_map(g)[0, 1, 1].item() == pytest.approx(7.5 / 32.5)


def test_nd_score_of_3x3_checkerboard_by_hand():
    g = checkerboard(3, 3).view(1, 1, 3, 3)
    # With the replicate pad: corners and centre see 4 of 8 neighbours flipped (noise 4*4/8 = 2,
    # signal 1, ND 2); edge cells see 5 flipped (ND 2.5).
    expected = (5 * math.log(3.0) + 4 * math.log(3.5)) / 9
    assert nd_score(g).item() == pytest.approx(expected, rel=1e-6)


def test_nd_score_smooth_ramp_low_checkerboard_high():
    i, j = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    ramp = (10 + i + j).expand(4, 3, 8, 8)
    checker = checkerboard(8, 8).expand(4, 3, 8, 8)
    assert nd_score(ramp).item() < 0.05
    assert nd_score(checker).item() > math.log(3.0) - 1e-6       # interior cells: log 3
    assert nd_score(ramp) < 0.535 < nd_score(checker)


def test_nd_score_uses_the_batch_mean_gradient():
    checker = checkerboard(6, 6).view(1, 1, 6, 6)
    assert nd_score(torch.cat([checker, -checker])).item() == 0.0  # mean is 0: no noise


# ---------------------------------------------------------------- AdaptiveStrength

def test_strength_rises_when_nd_above_target_and_falls_below():
    up, down = AdaptiveStrength(), AdaptiveStrength()
    assert up.value.item() == 0.5
    up.update(1.0)
    down.update(torch.tensor(0.1))
    assert up.value.item() > 0.5 > down.value.item()
    assert up.value.item() == pytest.approx(0.5 + 2e-3, rel=1e-4)   # Adam's first step is lr


def test_strength_stays_in_unit_interval():
    s = AdaptiveStrength()                 # |target - nd| = 0.535 both ways: Adam steps of ~lr
    for _ in range(2000):
        s.update(1.07)
    assert s.value.item() == 1.0
    for _ in range(2000):
        s.update(0.0)
    assert s.value.item() == 0.0


def test_strength_is_not_trained_by_an_encoder_optimizer():
    s = AdaptiveStrength()
    encoder = nn.Sequential(nn.Conv2d(1, 2, 3), LocalSignalMixing(s))
    opt = torch.optim.Adam(encoder.parameters(), lr=1.0)
    encoder(torch.randn(2, 1, 5, 5)).sum().backward()
    opt.step()
    assert s.value.item() == 0.5


# ---------------------------------------------------------------- LocalSignalMixing

def features(b=2, c=3, h=6, w=6):
    return torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(0))


def test_mixing_is_identity_in_eval_mode():
    layer = LocalSignalMixing(AdaptiveStrength()).eval()
    x = features()
    assert layer(x) is x


def test_mixing_is_identity_with_zero_strength_in_training():
    strength = AdaptiveStrength(init=0.0)
    x = features()
    assert torch.equal(LocalSignalMixing(strength).train()(x), x)


def test_mixing_changes_features_with_positive_strength():
    torch.manual_seed(0)
    x = features()
    assert not torch.allclose(LocalSignalMixing(AdaptiveStrength(init=0.5)).train()(x), x)


def test_mix_half_pixel_shift_by_hand():
    x = torch.tensor([0.0, 1.0, 2.0, 3.0]).view(1, 1, 1, 4).expand(1, 1, 2, 4)
    right = LocalSignalMixing.mix(x, torch.tensor([[0.0, 0.5]]))
    left = LocalSignalMixing.mix(x, torch.tensor([[0.0, -1.25]]))
    assert right[0, 0, 0].tolist() == [0.5, 1.5, 2.5, 3.0]       # last: between 3 and its copy
    assert left[0, 0, 0].tolist() == [0.0, 0.0, 0.75, 1.75]      # first two read the edge copy


def test_mix_matches_alix_reference_grid_sample():
    """The reference LocalSignalMixing(pad=2) with its uniform draw u in [0, 1]^2 fixed: pad 3,
    shift (u * m + (1 - m) / 2) * 7 with m = S * 5 / 7, i.e. (2u - 1) * 2.5 * S pixels."""
    x = torch.randn(2, 3, 9, 9, generator=torch.Generator().manual_seed(1))
    s, u, h, pad = 0.8, torch.tensor([0.9, 0.2]), 9, 3
    m = s * 5 / 7
    arange = torch.arange(h, dtype=x.dtype).unsqueeze(0).repeat(h, 1).unsqueeze(2)
    grid = torch.cat([arange, arange.transpose(1, 0)], dim=2).unsqueeze(0).repeat(2, 1, 1, 1)
    grid = (grid + (u * m + (1 - m) / 2) * (2 * pad + 1)) * 2.0 / (h + 2 * pad) - 1
    ref = F.grid_sample(F.pad(x, (pad,) * 4, mode="replicate"), grid, padding_mode="zeros", align_corners=False)
    shift = ((2 * u - 1) * 2.5 * s).flip(0).view(1, 2)                # grid is (x, y); ours (dy, dx)
    torch.testing.assert_close(LocalSignalMixing.mix(x, shift), ref, atol=1e-5, rtol=0)


def test_sampled_shift_bounded_by_max_shift_times_strength():
    layer = LocalSignalMixing(AdaptiveStrength(init=0.4))
    shifts = torch.cat([layer.sample_shift(8) for _ in range(500)])
    assert shifts.shape == (500, 2)                               # one shift per batch
    assert shifts.abs().max() <= 2.5 * 0.4 and shifts.abs().max() > 0.9
    assert LocalSignalMixing(AdaptiveStrength(), per_sample=True).sample_shift(8).shape == (8, 2)


def test_gradients_flow_through_mixing_and_are_recorded():
    layer = LocalSignalMixing(AdaptiveStrength(init=1.0), per_sample=True).train()
    x = features().requires_grad_()
    upstream = torch.randn(2, 3, 6, 6)
    (layer(x) * upstream).sum().backward()
    assert x.grad is not None
    torch.testing.assert_close(layer.last_gradient(), upstream)
    x.grad = None
    layer(x).sum().backward()   # bilinear weights sum to 1 per output cell: grads sum to the cell count
    assert x.grad.sum().item() == pytest.approx(2 * 3 * 6 * 6, rel=1e-5)


def test_strength_update_from_last_layer_gradient():
    strength = AdaptiveStrength()
    encoder = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), LocalSignalMixing(strength, record_gradient=False),
                            nn.Conv2d(4, 4, 3), nn.ReLU(), last := LocalSignalMixing(strength))
    assert strength.update_from(last) is None                     # nothing recorded yet
    encoder(torch.randn(8, 1, 9, 9)).pow(2).sum().backward()
    nd = strength.update_from(last)
    assert nd is not None and nd.item() > 0
    assert strength.value.item() == pytest.approx(0.5 + 2e-3 * (1 if nd > 0.535 else -1), rel=1e-4)
    assert encoder[2].last_gradient() is None                      # not recording


# ----------------------------------------------------------------------------- CQL(H)
def test_cql_penalty_on_three_actions_by_hand():
    # Q = (1, 2, 3): logsumexp = 3 + log(1 + e^-1 + e^-2) = 3 + log(1.503214724) = 3.407605964.
    # Dataset action 0: 3.407605964 - 1 = 2.407605964; action 2: 3.407605964 - 3 = 0.407605964.
    q = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    assert cql_penalty(q, torch.tensor([0, 0])).item() == pytest.approx(2.407605964, abs=1e-6)
    assert cql_penalty(q, torch.tensor([0, 2])).item() == pytest.approx((2.407605964 + 0.407605964) / 2, abs=1e-6)
    # Its gradient: softmax(Q) minus the one-hot dataset action, per sample (then / B).
    q1 = torch.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    cql_penalty(q1, torch.tensor([2])).backward()
    softmax = [0.090030573, 0.244728471, 0.665240956]
    assert q1.grad[0].tolist() == pytest.approx([softmax[0], softmax[1], softmax[2] - 1.0], abs=1e-6)


# ----------------------------------------------------------------------------- VIB
def test_the_bottleneck_kl_by_hand_and_its_mean_when_not_training():
    from worldmodels.regularizers import GaussianBottleneck, gaussian_kl_to_standard

    # mean (1, 0), variances (1, 2): 0.5 [(1 + 1 - 0 - 1) + (0 + 2 - log 2 - 1)] = 0.5 (2 - log 2) = 0.653426410.
    kl = gaussian_kl_to_standard(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, math.log(2.0)]]))
    assert kl.tolist() == pytest.approx([0.653426410], abs=1e-7)
    assert gaussian_kl_to_standard(torch.zeros(3, 4), torch.zeros(3, 4)).tolist() == [0.0, 0.0, 0.0]  # N(0, I) itself
    bottleneck = GaussianBottleneck(2)
    with torch.no_grad():
        bottleneck.mean.weight.copy_(torch.eye(2)), bottleneck.mean.bias.zero_()
        bottleneck.log_var.weight.zero_(), bottleneck.log_var.bias.copy_(torch.tensor([0.0, math.log(2.0)]))
    x = torch.tensor([[1.0, 0.0]])
    mean, kl = bottleneck.eval()(x)
    assert mean.tolist() == [[1.0, 0.0]] and kl.tolist() == pytest.approx([0.653426410], abs=1e-6)
    torch.manual_seed(0)
    sample, _ = bottleneck.train()(x)
    torch.manual_seed(0)
    eps = torch.randn(1, 2)  # drawn the same way: mean + sigma * eps, sigma = (1, sqrt 2)
    torch.testing.assert_close(sample, torch.tensor([[1.0, 0.0]]) + torch.tensor([[1.0, 2 ** 0.5]]) * eps)


def test_continuous_cql_penalty_on_a_fixed_sample_by_hand():
    from worldmodels.regularizers import cql_continuous_penalty

    # One state, one sample of each kind, 1-d actions. Proposal-corrected values: uniform 1 - log 0.5 =
    # 1.693147, policy at s 2 - (-0.5) = 2.5, policy at s' 0 - 0.2 = -0.2. logsumexp = 2.5 + log(1 +
    # e^-0.806853 + e^-2.7) = 2.5 + log(1 + 0.446260 + 0.067206) = 2.5 + 0.414402 = 2.914402; less Q(s, a_data) 1.5.
    one = lambda v: torch.tensor([[v]])
    penalty = cql_continuous_penalty(one(1.0), one(2.0), one(-0.5), one(0.0), one(0.2), torch.tensor([1.5]), 1)
    assert penalty.item() == pytest.approx(1.414402, abs=1e-6)
    # Two action dims halve the uniform density again: its term becomes 1 - 2 log 0.5 = 2.386294.
    two = cql_continuous_penalty(one(1.0), one(-50.0), one(0.0), one(-50.0), one(0.0), torch.tensor([0.0]), 2)
    assert two.item() == pytest.approx(1 + 2 * math.log(2), abs=1e-5)
