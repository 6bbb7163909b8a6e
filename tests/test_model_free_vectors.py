"""The model-free agents on vector observations and on dicts of image and vector keys: Dopamine's
input rescaling and classic-control network against hand-computed values and a naive forward pass,
pytorch_sac's state critic, the dict encoders' [image, vector] features, every agent building, acting
and updating with finite losses on both layouts, health without image probes, and the one-sentence
refusals of what an agent cannot take."""

import math

import pytest
import torch
from torch import nn

from model_free import ALIX, SAC, DrQv2, Rainbow
from model_free.obs_batches import on_images
from worldmodels.envs.observations import ObsKey
from worldmodels.errors import ConfigError
from worldmodels.nets.drq_encoder import SplitTrunk
from worldmodels.nets.keyed import KeyedEncoder
from worldmodels.nets.twin_q import TwinQ
from worldmodels.nets.vector import MinMaxScale, VectorInput, VectorTorso
from worldmodels.regularizers import random_shift
from worldmodels.training import EnvSpec

STATE = (ObsKey("obs", "vector", (4,)),)
PIXELS_AND_STATE = (ObsKey("pixels", "image", (3, 20, 20)), ObsKey("state", "vector", (5,)))
DISCRETE_STATE = EnvSpec(None, 0, num_actions=2, obs_keys=STATE)
DISCRETE_DICT = EnvSpec(None, 0, num_actions=3, obs_keys=PIXELS_AND_STATE)
CONTINUOUS_STATE = EnvSpec(None, 0, action_dim=2, obs_keys=STATE)
CONTINUOUS_DICT = EnvSpec(None, 0, action_dim=2, obs_keys=PIXELS_AND_STATE)
MULTI_DISCRETE_STATE = EnvSpec(None, 0, action_nvec=(3, 2), obs_keys=STATE)

CARTPOLE_MIN = [-2.4, -5.0, -math.pi / 12, -math.pi * 2]  # Dopamine's gym_lib.CARTPOLE_MIN_VALS / MAX_VALS
CARTPOLE_MAX = [2.4, 5.0, math.pi / 12, math.pi * 2]


# ------------------------------------------------------------------------------ Dopamine's classic-control net
def test_min_max_scaling_maps_each_bound_to_minus_one_and_one_and_a_three_quarter_point_to_a_half():
    scale = MinMaxScale(CARTPOLE_MIN, CARTPOLE_MAX)
    # 1.2 is 3/4 of the way from -2.4 to 2.4 -> 2 * 0.75 - 1 = 0.5; -2.5 is 1/4 from -5 to 5 -> -0.5;
    # pi/24 is 3/4 from -pi/12 to pi/12 -> 0.5; pi is 3/4 from -2pi to 2pi -> 0.5.
    x = torch.tensor([[1.2, -2.5, math.pi / 24, math.pi], CARTPOLE_MIN, CARTPOLE_MAX])
    expected = torch.tensor([[0.5, -0.5, 0.5, 0.5], [-1.0] * 4, [1.0] * 4])
    torch.testing.assert_close(scale(x), expected)


def test_min_max_bounds_must_pair_up_with_every_max_above_its_min():
    with pytest.raises(ValueError):
        MinMaxScale([0.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError):
        MinMaxScale([0.0], [1.0, 2.0])


def test_vector_torso_on_hand_set_weights_rescales_then_applies_dense_and_relu():
    torso = VectorTorso(2, 3, low=[0.0, 0.0], high=[2.0, 4.0])
    with torch.no_grad():
        torso.dense.weight.copy_(torch.tensor([[1.0, -2.0], [3.0, 1.0], [-1.0, -1.0]]))
        torso.dense.bias.copy_(torch.tensor([0.0, 0.5, -0.2]))
    # x = (1.5, 1) -> scaled (2 * 0.75 - 1, 2 * 0.25 - 1) = (0.5, -0.5)
    # rows: 0.5 + 1 + 0 = 1.5; 1.5 - 0.5 + 0.5 = 1.5; -0.5 + 0.5 - 0.2 = -0.2 -> ReLU 0.
    out = torso(torch.tensor([[1.5, 1.0]]))
    torch.testing.assert_close(out, torch.tensor([[1.5, 1.5, 0.0]]))


def test_vector_torso_starts_xavier_uniform_with_zero_bias_as_dopamines_dense():
    torch.manual_seed(0)
    torso = VectorTorso(4, 512)
    bound = math.sqrt(6 / (4 + 512))  # Glorot uniform: U[-sqrt(6 / (fan_in + fan_out)), +]
    assert torso.dense.weight.abs().max() <= bound and torso.dense.weight.abs().max() > 0.9 * bound
    assert torch.equal(torso.dense.bias, torch.zeros(512))


def naive_dopamine_classic_control_q(x, low, high, layers):
    """Dopamine's ClassicControlDQNNetwork written out: rescale, (Dense + ReLU) x 2, Dense."""
    x = 2.0 * (x - low) / (high - low) - 1.0
    (w1, b1), (w2, b2), (w3, b3) = layers
    x = torch.clamp(x @ w1.T + b1, min=0)
    x = torch.clamp(x @ w2.T + b2, min=0)
    return x @ w3.T + b3


def test_a_vector_only_dqn_is_dopamines_classic_control_network():
    torch.manual_seed(0)
    agent = Rainbow(num_atoms=1, noisy=False, dueling=False, prioritized=False, hidden=32,
                    vector_min=CARTPOLE_MIN, vector_max=CARTPOLE_MAX)
    agent.build(DISCRETE_STATE)
    q = agent.q
    layers = [(q.encoder.dense.weight, q.encoder.dense.bias), (q.hidden.weight, q.hidden.bias),
              (q.advantage.weight, q.advantage.bias)]
    x = torch.randn(5, 4)
    expected = naive_dopamine_classic_control_q(x, torch.tensor(CARTPOLE_MIN), torch.tensor(CARTPOLE_MAX), layers)
    with torch.no_grad():
        torch.testing.assert_close(agent.q_values(q(x)), expected)
    assert [m.out_features for m in (q.encoder.dense, q.hidden)] == [32, 32]  # one width for both, as Dopamine


def test_vector_bounds_that_do_not_fit_the_vector_keys_are_refused_with_one_sentence():
    with pytest.raises(ConfigError, match="bound 2 values, and this environment's vector keys hold 4"):
        Rainbow(prioritized=False, vector_min=[0.0, 0.0], vector_max=[1.0, 1.0]).build(DISCRETE_STATE)
    with pytest.raises(ConfigError, match="give both or neither"):
        Rainbow(vector_min=[0.0])


# ------------------------------------------------------------------------------ state critics and dict encoders
def test_a_state_critic_has_no_trunk_and_reads_state_and_action_as_pytorch_sac():
    torch.manual_seed(0)
    critic = TwinQ(4, 2, feature_dim=8, hidden=16, depth=2, vector_dim=4)
    assert isinstance(critic.trunk, nn.Identity) and critic.q1[0].in_features == 4 + 2
    s, a = torch.randn(3, 4), torch.rand(3, 2)
    x = torch.cat([s, a], -1)
    w = [m for m in critic.q1 if isinstance(m, nn.Linear)]
    naive = torch.relu(torch.relu(x @ w[0].weight.T + w[0].bias) @ w[1].weight.T + w[1].bias) @ w[2].weight.T + w[2].bias
    torch.testing.assert_close(critic(s, a)[0], naive[:, 0])


def test_the_split_trunk_passes_the_vector_columns_through_unchanged():
    torch.manual_seed(0)
    trunk = SplitTrunk(6, feature_dim=3)
    h = torch.randn(2, 6 + 4)
    out = trunk(h)
    assert out.shape == (2, 3 + 4)
    assert torch.equal(out[:, 3:], h[:, 6:])
    image_only = nn.Sequential(*trunk)  # the Trunk's Linear, LayerNorm, tanh on the image columns alone
    torch.testing.assert_close(out[:, :3], image_only(h[:, :6]))


def test_a_dict_encoder_gives_image_features_then_vector_features_with_images_stacked_along_channels():
    torch.manual_seed(0)
    layout = (ObsKey("left", "image", (2, 8, 8)), ObsKey("joints", "vector", (3,)),
              ObsKey("right", "image", (1, 8, 8)), ObsKey("touch", "vector", (2,)))
    image = nn.Sequential(nn.Conv2d(3, 1, 8), nn.Flatten())
    image.out_dim, image.feature_shape = 1, (1, 1, 1)
    image.encode_with_map = lambda x: (image(x), image[0](x))
    encoder = KeyedEncoder(layout, image, VectorInput(5))
    obs = {"left": torch.randint(0, 256, (4, 2, 8, 8), dtype=torch.uint8).float(), "joints": torch.randn(4, 3),
           "right": torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8).float(), "touch": torch.randn(4, 2)}
    out, feature_map = encoder.encode_with_map(obs)
    stacked = torch.cat([obs["left"], obs["right"]], 1)  # image keys in key order along channels
    expected = torch.cat([image(stacked), obs["joints"], obs["touch"]], -1)
    torch.testing.assert_close(out, expected)
    assert encoder.out_dim == 1 + 5 and encoder.vector_dim == 5 and feature_map.shape == (4, 1, 1, 1)


def test_augmentation_shifts_the_image_keys_and_leaves_the_vector_keys_alone():
    obs = {"pixels": torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4), "state": torch.randn(2, 5)}
    shifts = torch.tensor([[0, 2], [1, 1]])  # (row, column) offsets at pad 1: the second is the identity
    out = on_images(lambda x: random_shift(x, 1, shifts=shifts), PIXELS_AND_STATE, obs)
    assert out["state"] is obs["state"]
    # Sample 0 (offsets 0, 2 at pad 1: -1 row, +1 column): out[i, j] = x[clamp(i - 1), clamp(j + 1)].
    assert out["pixels"][0, 0, 2, 1].item() == obs["pixels"][0, 0, 1, 2].item()
    assert out["pixels"][0, 0, 0, 3].item() == obs["pixels"][0, 0, 0, 3].item()  # both clamped at the edge
    assert torch.equal(out["pixels"][1], obs["pixels"][1])


# ------------------------------------------------------------------------------ every agent on both layouts
def without_trainer(agent):
    """``training_step`` outside Lightning: plain optimizers and backward; the logs collected."""
    optimizers = agent.configure_optimizers()
    agent.optimizers = lambda: optimizers
    logs = []
    agent.log_scalars = logs.append
    agent.manual_backward = lambda loss: loss.backward()
    return logs


def observations(spec, n, g):
    def one(key):
        if key.kind == "image":
            return torch.randint(0, 256, (n, *key.shape), generator=g, dtype=torch.uint8)
        return torch.randn(n, *key.shape, generator=g)
    arrays = {key.name: one(key) for key in spec.obs_keys}
    return arrays if spec.dict_obs else arrays["obs"]


def synthetic_batch(spec, n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    action = (torch.randint(0, spec.num_actions, (n,), generator=g) if spec.discrete
              else torch.rand(n, spec.action_dim, generator=g) * 2 - 1)
    return {"obs": observations(spec, n, g), "next_obs": observations(spec, n, g), "action": action,
            "reward": torch.randn(n, generator=g), "discount": torch.full((n,), 0.9),
            "mc_return": torch.randn(n, generator=g), "mc_valid": torch.arange(n) % 2 == 0}


DQN = (Rainbow, dict(num_atoms=1, noisy=False, dueling=False, prioritized=False, n_step=1, hidden=32,
                     target_update_period=1))
DER = (Rainbow, dict(prioritized=False, hidden=32, target_update_period=2))  # C51, dueling, noisy: DER's net
DRQ_EPS = (Rainbow, dict(num_atoms=1, noisy=False, prioritized=False, hidden=32, augment=True))
QR_CQL = (Rainbow, dict(num_quantiles=4, noisy=False, prioritized=False, hidden=32, cql_alpha=0.5))
SAC_STATE = (SAC, dict(batch_size=6, hidden=32, feature_dim=8, k_aug=1, m_aug=1, image_pad=0))
DRQ = (SAC, dict(batch_size=6, hidden=32, feature_dim=8, dr3_coef=0.1))
CQL_SAC = (SAC, dict(batch_size=6, hidden=32, feature_dim=8, cql_alpha=1.0, cql_samples=2, k_aug=1, m_aug=1))
SAC_AE = (SAC, dict(batch_size=6, hidden=32, feature_dim=8, decoder=True, image_pad=0, reconstruction_every=0))
DRQV2 = (DrQv2, dict(batch_size=6, hidden=32, feature_dim=8, dr3_coef=0.1))

CASES = {
    "dqn-state": (*DQN, DISCRETE_STATE), "dqn-dict": (*DQN, DISCRETE_DICT),
    "der-state": (*DER, DISCRETE_STATE), "der-dict": (*DER, DISCRETE_DICT),
    "drq_eps-dict": (*DRQ_EPS, DISCRETE_DICT), "qr_cql-state": (*QR_CQL, DISCRETE_STATE),
    "sac-state": (*SAC_STATE, CONTINUOUS_STATE), "drq-dict": (*DRQ, CONTINUOUS_DICT),
    "cql_sac-state": (*CQL_SAC, CONTINUOUS_STATE), "cql_sac-dict": (*CQL_SAC, CONTINUOUS_DICT),
    "sac_ae-dict": (*SAC_AE, CONTINUOUS_DICT),
    "drqv2-state": (*DRQV2, CONTINUOUS_STATE), "drqv2-dict": (*DRQV2, CONTINUOUS_DICT),
}


def built(name):
    agent_class, kwargs, spec = CASES[name]
    torch.manual_seed(0)
    agent = agent_class(**kwargs)
    agent.build(spec)
    return agent, spec


@pytest.mark.parametrize("name", list(CASES))
def test_each_agent_builds_acts_and_makes_two_updates_with_finite_losses(name):
    agent, spec = built(name)
    logs = without_trainer(agent)
    batch = synthetic_batch(spec)
    with agent.acting():
        for explore in (True, False):
            action, _ = agent.act(batch["obs"], None, torch.ones(6, dtype=torch.bool), explore)
            assert action.shape == ((6,) if spec.discrete else (6, spec.action_dim))
    before = [p.detach().clone() for p in agent.parameters()]
    for update in range(2):
        agent.counters.updates = update + 1  # the loop counts the update before it runs
        agent.training_step(batch, update)
    losses = {k: v for log in logs for k, v in log.items() if k.endswith("loss")}
    assert losses and all(torch.isfinite(torch.as_tensor(v)).all() for v in losses.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.parameters()))


def test_a_state_only_actor_critic_has_no_encoder_weights_and_no_encoder_optimizer():
    sac, _ = built("sac-state")
    drqv2, _ = built("drqv2-state")
    assert list(sac.critic.encoder.parameters()) == [] and list(drqv2.encoder.parameters()) == []
    assert sac.actor.net[0].in_features == 4 and drqv2.actor.policy[0].in_features == 4  # the state as it is
    assert len(drqv2.configure_optimizers()) == 2  # the actor's and the critic's


def test_the_dict_sac_ae_decoder_reconstructs_the_image_channels_from_the_trunk_features_only():
    agent, spec = built("sac_ae-dict")
    batch = synthetic_batch(spec)
    _, parts = agent.reconstruction_loss(batch["obs"])
    assert parts["reconstruction"].shape == parts["target"].shape == (6, 3, 20, 20)
    assert agent.decoder.fc.in_features == 8  # the Trunk's features, not the 5 state values beside them


IMAGE_PROBES = {"nd_score", "augmentation_gap"}
FIGURES = {"q_mean", "mc_return_mean", "mc_return_ms", "q_overestimation", "critic_srank", "encoder_srank",
           "critic_feature_dot", "td_loss"}


@pytest.mark.parametrize("name, expected", [
    ("dqn-state", FIGURES),  # the torso learns: its srank is reported
    ("der-dict", FIGURES | IMAGE_PROBES),
    ("sac-state", FIGURES - {"encoder_srank"}),  # no encoder weights: the "encoder" output is the state
    ("drq-dict", FIGURES | IMAGE_PROBES),
    ("drqv2-state", FIGURES - {"encoder_srank"}),
    ("drqv2-dict", FIGURES | IMAGE_PROBES),
])
def test_health_skips_the_image_probes_without_images_and_leaves_the_networks_untouched(name, expected):
    agent, spec = built(name)
    before = {k: v.clone() for k, v in agent.state_dict().items()}
    out = agent.health(synthetic_batch(spec))
    assert set(out) == expected
    assert all(math.isfinite(float(v)) for v in out.values())
    assert all(p.grad is None for p in agent.parameters())
    assert all(torch.equal(before[k], v) for k, v in agent.state_dict().items())


# ------------------------------------------------------------------------------ one sentence each
@pytest.mark.parametrize("make, spec, sentence", [
    (lambda: Rainbow(prioritized=False), MULTI_DISCRETE_STATE,
     "Rainbow takes discrete actions, and this environment's are multi_discrete"),
    (lambda: Rainbow(prioritized=False), CONTINUOUS_STATE,
     "Rainbow takes discrete actions, and this environment's are continuous"),
    (lambda: SAC(), DISCRETE_STATE, "SAC takes continuous actions, and this environment's are discrete"),
    (lambda: SAC(), MULTI_DISCRETE_STATE, "SAC takes continuous actions, and this environment's are multi_discrete"),
    (lambda: DrQv2(), DISCRETE_DICT, "DrQ-v2 takes continuous actions, and this environment's are discrete"),
    (lambda: DrQv2(), MULTI_DISCRETE_STATE, "DrQ-v2 takes continuous actions, and this environment's are multi_discrete"),
    (lambda: ALIX(), CONTINUOUS_DICT, r"A-LIX reads image observations only, and this environment has state: vector 5"),
    (lambda: Rainbow(prioritized=False, alix=True), DISCRETE_STATE,
     r"A-LIX \(model.alix\) reads image observations only, and this environment has obs: vector 4"),
    (lambda: SAC(decoder=True), CONTINUOUS_STATE,
     r"SAC\+AE \(model.decoder\) reconstructs the image keys, and this environment has none"),
])
def test_what_an_agent_cannot_take_is_refused_at_build_time_in_one_sentence(make, spec, sentence):
    with pytest.raises(ConfigError, match=sentence) as refused:
        make().build(spec)
    assert str(refused.value).count(". ") == 0 and str(refused.value).endswith(".")  # one sentence
