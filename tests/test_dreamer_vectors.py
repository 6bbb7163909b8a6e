"""DreamerV3 on vector observations, dicts of keys and MultiDiscrete actions: the symlog MLP encoder, the
symlog squared error of the vector decoder and the multi-categorical policy against numbers worked out
with numpy or by hand, and small agents that act and train on each form."""

import math

import numpy as np
import pytest
import torch

from worldmodels.dreamer import DreamerV3
from worldmodels.dreamer.behavior import Actor
from worldmodels.dreamer.world_model import Size, WorldModel
from worldmodels.envs.observations import ObsKey
from worldmodels.errors import ConfigError
from worldmodels.nets.distributions import MultiOneHot, symlog_squared_error
from worldmodels.nets.dreamer_blocks import VectorEncoder
from worldmodels.training import EnvSpec

E = math.e
TINY = Size(deter=16, depth=4, units=16, layers=1, stoch=4, classes=4, vector_units=3, vector_layers=1)


def np_symlog(x):
    return np.sign(x) * np.log1p(np.abs(x))


def np_layer_norm_silu(h, scale, shift, eps=1e-3):
    normed = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + eps) * scale + shift
    return normed / (1 + np.exp(-normed))


def set_encoder_layer(encoder: VectorEncoder, weight, scale, shift) -> None:
    linear, norm = encoder.net[0], encoder.net[1]
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(weight, dtype=torch.float32))
        norm.weight.copy_(torch.tensor(scale, dtype=torch.float32))
        norm.bias.copy_(torch.tensor(shift, dtype=torch.float32))


WEIGHT = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
SCALE, SHIFT = [1.0, 2.0, 0.5], [0.0, 0.1, -0.1]


def test_the_vector_encoder_is_symlog_then_linear_layer_norm_and_silu_on_a_hand_set_network():
    # x = (e - 1, -(e^2 - 1)) has symlog (1, -2); W gives h = (1, -2, -1): mean -2/3, variance 14/9.
    encoder = VectorEncoder(2, units=3, layers=1)
    set_encoder_layer(encoder, WEIGHT, SCALE, SHIFT)
    x = np.array([[E - 1, -(E ** 2 - 1)], [0.0, 5.0]])
    h = np_symlog(x) @ np.array(WEIGHT).T
    assert h[0].tolist() == pytest.approx([1.0, -2.0, -1.0])
    expected = np_layer_norm_silu(h, np.array(SCALE), np.array(SHIFT))
    out = encoder(torch.tensor(x, dtype=torch.float32))
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    assert encoder.out_dim == 3 and out.shape == (2, 3)


def test_the_world_model_embeds_vector_keys_concatenated_in_layout_order():
    keys = (ObsKey("vel", "vector", (1,)), ObsKey("pos", "vector", (1,)))
    model = WorldModel(keys, 2, TINY)
    assert model.encoder is None and model.decoder is None  # no image key: no CNN
    set_encoder_layer(model.vector_encoder, WEIGHT, SCALE, SHIFT)
    vel, pos = np.array([[E - 1]]), np.array([[3.0]])
    # The layout's order (vel, pos), not the dict's insertion order below.
    expected = np_layer_norm_silu(np_symlog(np.concatenate([vel, pos], -1)) @ np.array(WEIGHT).T,
                                  np.array(SCALE), np.array(SHIFT))
    out = model.embed({"pos": torch.tensor(pos, dtype=torch.float32), "vel": torch.tensor(vel, dtype=torch.float32)})
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-5, atol=1e-6)


def test_the_symlog_squared_error_sums_over_dimensions_in_symlog_space_by_hand():
    # symlog(e - 1) = 1, symlog(-(e^2 - 1)) = -2, symlog(0) = 0:
    # (0.5 - 1)^2 + (-1 - (-2))^2 + (0 - 0)^2 = 0.25 + 1 + 0 = 1.25; the second row (2 - 0)^2 = 4 in the last place.
    prediction = torch.tensor([[0.5, -1.0, 0.0], [1.0, -2.0, 2.0]])
    target = torch.tensor([[E - 1, -(E ** 2 - 1), 0.0], [E - 1, -(E ** 2 - 1), 0.0]])
    torch.testing.assert_close(symlog_squared_error(prediction, target), torch.tensor([1.25, 4.0]))


def planted(model: WorldModel) -> WorldModel:
    """Decoders' and continue head's outputs zeroed: images decode to 0 (grey 0.5), vectors to 0 in symlog
    space, the continue logit to 0; the reward head starts at zero as built (uniform over its 255 bins)."""
    layers = [model.continue_head[-1]]
    layers += [] if model.decoder is None else [model.decoder.net[-1]]
    layers += [] if model.vector_decoder is None else list(model.vector_decoder.heads)
    for layer in layers:
        torch.nn.init.zeros_(layer.weight)
        torch.nn.init.zeros_(layer.bias)
    return model


def test_the_world_model_loss_adds_the_image_and_every_vector_keys_symlog_error_by_hand():
    # Per step, with white 3x16x16 frames, the vector "pos" = (e - 1, -(e^2 - 1)) (symlog (1, -2)) and
    # "vel" = (e^3 - 1) (symlog 3), every prediction planted at 0:
    #   image    3 x 16 x 16 pixels x (0 - 0.5)^2 = 192
    #   vector   pos 1 + 4, vel 9: 14
    #   reward   log 255 = 5.541264;  continue  log 2 = 0.693147;  KL at the free-bits clip: 0.5 x 1000 + 0.1 x 1000
    keys = (ObsKey("pos", "vector", (2,)), ObsKey("image", "image", (3, 16, 16)), ObsKey("vel", "vector", (1,)))
    model = planted(WorldModel(keys, 4, TINY))
    B, T = 2, 3
    obs = {"image": torch.full((B, T, 3, 16, 16), 255, dtype=torch.uint8),
           "pos": torch.tensor([E - 1, -(E ** 2 - 1)]).expand(B, T, 2),
           "vel": torch.tensor([E ** 3 - 1]).expand(B, T, 1)}
    first = torch.zeros(B, T, dtype=torch.bool)
    first[:, 0] = True
    loss, _, metrics = model.loss(obs, torch.zeros(B, T, 4), torch.randn(B, T), torch.zeros(B, T, dtype=torch.bool),
                                  first, free_nats=1000.0)
    assert metrics["wm/image_loss"].item() == pytest.approx(192.0, rel=1e-6)
    assert metrics["wm/vector_loss"].item() == pytest.approx(14.0, rel=1e-5)
    assert loss.item() == pytest.approx(192.0 + 14.0 + 5.541264 + 0.693147 + 600.0, rel=1e-6)


def test_the_open_loop_vector_error_of_a_planted_decoder_is_the_mean_squared_symlog_of_the_later_frames():
    # Vector heads planted at 0: the error at imagined step k is mean_{b, d} symlog(x[b, 5 + k - 1, d])^2, the
    # frame 5 + k - 1 (context 5), which a shifted step index would miss. x[b, t] = (e^(t + b) - 1) (1, -1)
    # has symlog (t + b) (1, -1), so the error at frame t is mean_b (t + b)^2: 30.5, 42.5, 56.5, 72.5 for t = 5..8.
    model = planted(WorldModel((ObsKey("obs", "vector", (2,)),), 3, TINY))
    b, t, context = 2, 9, 5
    steps = np.arange(t)
    grow = np.exp(steps[None, :] + np.arange(b)[:, None]) - 1
    obs = torch.tensor(np.stack([grow, -grow], -1), dtype=torch.float32)
    action = torch.nn.functional.one_hot(torch.randint(0, 3, (b, t)), 3).float()
    first = torch.zeros(b, t, dtype=torch.bool)
    first[:, 0] = True
    with torch.no_grad():
        post, _ = model.rssm.observe(model.embed(obs), action, first)
    errors = model.open_loop_errors(post, obs, action, torch.zeros(b, t), first, context)
    expected = ((steps[context:][None, :] + np.arange(b)[:, None]) ** 2).mean(0)
    assert expected.tolist() == [30.5, 42.5, 56.5, 72.5]
    assert "image_mse" not in errors
    np.testing.assert_allclose(errors["vector_symlog_mse"].numpy(), expected, rtol=1e-5)


def test_two_image_keys_of_one_size_share_one_cnn_and_keys_of_two_sizes_are_refused():
    same = (ObsKey("left", "image", (3, 16, 16)), ObsKey("depth", "image", (1, 16, 16)))
    model = WorldModel(same, 2, TINY)
    assert model.encoder.net[0].in_channels == 4 and model.decoder.net[-1].out_channels == 4
    images = model.parts.split_images(torch.arange(2 * 4).view(2, 4, 1, 1).expand(2, 4, 16, 16))
    assert images["left"][:, :, 0, 0].tolist() == [[0, 1, 2], [4, 5, 6]]
    assert images["depth"][:, 0, 0, 0].tolist() == [3, 7]
    with pytest.raises(ConfigError, match="one height and width"):
        WorldModel((ObsKey("a", "image", (3, 16, 16)), ObsKey("b", "image", (3, 32, 32))), 2, TINY)


# ------------------------------------------------------------------------------ MultiDiscrete actions


def test_the_multi_discrete_policy_sums_the_log_probabilities_and_entropies_of_its_unimix_parts_by_hand():
    # nvec (2, 3); logits (0, ln 3) give softmax (1/4, 3/4), and (0, 0, ln 2) give (1/4, 1/4, 1/2).
    # With 1% uniform mixed in: p1 = 0.99 p + 0.01 / 2 = (0.2525, 0.7475),
    #                           p2 = 0.99 p + 0.01 / 3 = (0.250833, 0.250833, 0.498333).
    p1 = np.array([0.2525, 0.7475])
    p2 = 0.99 * np.array([0.25, 0.25, 0.5]) + 0.01 / 3
    actor = Actor(feat_dim=4, action_dim=5, discrete=True, units=4, layers=1, unimix=0.01, nvec=(2, 3))
    policy = actor.dist(torch.tensor([[0.0, math.log(3), 0.0, 0.0, math.log(2)]]))
    assert isinstance(policy, MultiOneHot)
    action = torch.tensor([[0.0, 1.0, 0.0, 0.0, 1.0]])  # sub-actions 1 and 2
    assert policy.log_prob(action).item() == pytest.approx(math.log(0.7475) + math.log(p2[2]), rel=1e-6)  # -0.987507
    entropy = -(p1 * np.log(p1)).sum() - (p2 * np.log(p2)).sum()  # 0.565065 + 1.040870
    assert policy.entropy().item() == pytest.approx(entropy, rel=1e-6)
    torch.testing.assert_close(policy.probs, torch.tensor([[*p1, *p2]], dtype=torch.float32))


def test_multi_discrete_samples_are_one_hot_per_part_with_straight_through_gradients():
    torch.manual_seed(0)
    logits = torch.randn(64, 5, requires_grad=True)
    policy = MultiOneHot(logits, (2, 3), unimix=0.01)
    sample = policy.rsample()
    one_hot = sample.detach().round()  # the value is one-hot up to the rounding of 1 + p - p
    torch.testing.assert_close(sample.detach(), one_hot, rtol=0, atol=1e-6)
    assert torch.equal(one_hot[:, :2].sum(-1), torch.ones(64)) and torch.equal(one_hot[:, 2:].sum(-1), torch.ones(64))
    assert set(one_hot.unique().tolist()) == {0.0, 1.0}
    weights = torch.randn(5)
    (sample * weights).sum().backward()
    # The gradient of the probabilities: 0.99 softmax + 0.01 / K of each part, written out.
    probs = torch.cat([0.99 * part.softmax(-1) + 0.01 / part.shape[-1] for part in logits.split([2, 3], -1)], -1)
    (expected,) = torch.autograd.grad((probs * weights).sum(), logits)
    torch.testing.assert_close(logits.grad, expected)


def test_stored_multi_discrete_actions_enter_the_world_model_as_side_by_side_one_hots():
    agent = DreamerV3(size="XS", deter=16, cnn_depth=4, mlp_units=16, mlp_layers=1, vector_units=8, vector_layers=1,
                      stoch=4, classes=4)
    agent.build(EnvSpec(None, 0, action_nvec=(2, 3), obs_keys=(ObsKey("obs", "vector", (3,)),)))
    stored = torch.tensor([[[1, 2], [0, 0]]])  # (B=1, T=2, len(nvec))
    assert agent.action_vectors(stored).tolist() == [[[0, 1, 0, 0, 1], [1, 0, 1, 0, 0]]]
    assert agent.world_model.rssm.img_in[0].in_features == 4 * 4 + 5


# ------------------------------------------------------------------------------ small agents end to end

B, T = 2, 6
SPECS = {
    "vector-discrete": EnvSpec(None, 0, num_actions=3, obs_keys=(ObsKey("obs", "vector", (5,)),)),
    "image-vector-multidiscrete": EnvSpec(None, 0, action_nvec=(2, 3), obs_keys=(
        ObsKey("image", "image", (3, 16, 16)), ObsKey("state", "vector", (4,)))),
    "two-vectors-continuous": EnvSpec(None, 0, action_dim=2, obs_keys=(
        ObsKey("pos", "vector", (3,)), ObsKey("vel", "vector", (2,)))),
}


def small_agent(spec: EnvSpec) -> DreamerV3:
    agent = DreamerV3(size="XS", deter=16, cnn_depth=4, mlp_units=16, mlp_layers=1, vector_units=16,
                      vector_layers=2, stoch=4, classes=4, batch_size=B, seq_len=T, horizon=4, video_every=0)
    agent.build(spec)
    return agent


def observations(spec: EnvSpec, lead: tuple[int, ...], g: torch.Generator):
    def one(key: ObsKey):
        if key.kind == "image":
            return torch.randint(0, 256, (*lead, *key.shape), dtype=torch.uint8, generator=g)
        return 10 * torch.randn(*lead, *key.shape, generator=g)  # beyond symlog's near-linear range
    if not spec.dict_obs:
        return one(spec.obs_keys[0])
    return {key.name: one(key) for key in spec.obs_keys}


def random_actions(spec: EnvSpec, lead: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    if spec.discrete:
        return torch.randint(0, spec.num_actions, lead, generator=g)
    if spec.multi_discrete:
        return torch.stack([torch.randint(0, n, lead, generator=g) for n in spec.action_nvec], -1)
    return torch.rand(*lead, spec.action_dim, generator=g) * 2 - 1


def replay_batch(spec: EnvSpec, g: torch.Generator) -> dict:
    first = torch.zeros(B, T, dtype=torch.bool)
    first[:, 0] = True
    first[1, 3] = True
    terminal = torch.zeros(B, T, dtype=torch.bool)
    terminal[1, 2] = True
    return {"obs": observations(spec, (B, T), g), "action": random_actions(spec, (B, T), g),
            "reward": torch.randn(B, T, generator=g), "terminal": terminal, "first": first,
            "last": terminal.clone(), "mc_return": torch.randn(B, T, generator=g),
            "mc_valid": torch.ones(B, T, dtype=torch.bool)}


def train(agent: DreamerV3, batch: dict, updates: int = 2) -> list[dict]:
    """``updates`` training steps without Lightning (as tests/test_fast_update_equals_plain.py drives an
    agent); returns the metrics each logged."""
    optimizers = agent.configure_optimizers()
    logged = []
    agent.optimizers = lambda: optimizers
    agent.log_scalars = lambda metrics: logged.append({k: torch.as_tensor(v).detach() for k, v in metrics.items()})
    agent.manual_backward = lambda loss: loss.backward()
    for update in range(updates):
        agent.counters.updates = update + 1
        agent.training_step(batch, update)
    return logged


@pytest.mark.parametrize("name", list(SPECS))
def test_a_small_agent_acts_and_trains_two_steps_with_finite_losses_on_each_observation_and_action_form(name):
    spec = SPECS[name]
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    agent = small_agent(spec)
    n = 3
    with agent.acting():
        action, state = agent.act(observations(spec, (n,), g), None, torch.ones(n, dtype=torch.bool), explore=True)
        action, state = agent.act(observations(spec, (n,), g), state, torch.zeros(n, dtype=torch.bool), explore=False)
    if spec.discrete:
        assert action.dtype == torch.int64 and action.shape == (n,) and ((0 <= action) & (action < 3)).all()
    elif spec.multi_discrete:
        assert action.dtype == torch.int64 and action.shape == (n, 2)
        assert ((action >= 0) & (action < torch.tensor(spec.action_nvec))).all()
    else:
        assert action.shape == (n, 2) and action.abs().max() <= 1
    assert state[1].shape == (n, agent.action_dim)

    before = [p.detach().clone() for p in agent.parameters()]
    logged = train(agent, replay_batch(spec, g))
    assert len(logged) == 2
    for metrics in logged:
        assert all(torch.isfinite(v).all() for v in metrics.values()), metrics
    has_image, has_vector = bool(spec.image_keys), bool(spec.vector_keys)
    assert ("wm/image_loss" in logged[0]) == has_image and ("wm/vector_loss" in logged[0]) == has_vector
    changed = {name for (name, p), old in zip(agent.named_parameters(), before) if not torch.equal(p, old)}
    assert any(n.startswith("world_model.vector_encoder.") for n in changed)
    assert any(n.startswith("world_model.vector_decoder.heads.") for n in changed)
    assert any(n.startswith("actor.") for n in changed) and any(n.startswith("critic.net.") for n in changed)


@pytest.mark.parametrize("name", list(SPECS))
def test_health_and_open_loop_video_read_the_image_keys_and_report_vector_errors(name):
    spec = SPECS[name]
    torch.manual_seed(0)
    agent = small_agent(spec)
    batch = replay_batch(spec, torch.Generator().manual_seed(1))
    figures = agent.health(batch)
    assert all(math.isfinite(float(v)) for v in figures.values()), figures
    steps = [k for k in (1, 5) if k <= T - DreamerV3.HEALTH_CONTEXT]
    assert {f"open_loop_vector_symlog_mse_step{k}" for k in steps} <= set(figures)
    assert any(name.startswith("open_loop_image_mse") for name in figures) == bool(spec.image_keys)
    first, action = agent.sequence_inputs(batch)
    videos = agent.open_loop_videos(batch, action, first)
    if not spec.image_keys:
        assert videos == {}  # no image key: no video
    else:
        assert list(videos) == ["wm/open_loop_image"]
        # (T, 3, 3 rows x H, B sequences x W) uint8: truth, prediction, error
        assert videos["wm/open_loop_image"].shape == (T, 3, 3 * 16, B * 16)
    compiled = agent.compiled_modules()
    assert ("world_model.encoder" in compiled) == bool(spec.image_keys)
    assert "world_model.vector_encoder" in compiled and "world_model.vector_decoder" in compiled


def test_every_size_reads_vectors_with_the_2023_codes_1024_by_5_mlp_unless_overridden():
    # danijar/dreamerv3 8fa35f8, dreamerv3/configs.yaml: encoder/decoder mlp_units 1024, mlp_layers 5, which
    # the size presets' patterns '.*\.units' and '.*\.layers' do not reach.
    import re

    assert not re.compile(r".*\.units").match("encoder.mlp_units")
    assert not re.compile(r".*\.layers").match("encoder.mlp_layers")
    spec = EnvSpec(None, 0, num_actions=2, obs_keys=(ObsKey("obs", "vector", (4,)),))
    with torch.device("meta"):
        agent = DreamerV3(size="XS")
        agent.build(spec)
        overridden = DreamerV3(size="XS", vector_units=64, vector_layers=2)
        overridden.build(spec)
    linears = [m for m in agent.world_model.vector_encoder.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(4, 1024)] + [(1024, 1024)] * 4
    trunk = [m for m in agent.world_model.vector_decoder.trunk.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in trunk] == [(256 + 32 * 32, 1024)] + [(1024, 1024)] * 4
    linears = [m for m in overridden.world_model.vector_encoder.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(4, 64), (64, 64)]
