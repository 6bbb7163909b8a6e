"""DreamerV3's health figures and its DR3 regulariser against hand computations, on small models."""

import math

import numpy as np
import pytest
import torch

from worldmodels.dreamer import DreamerV3
from worldmodels.dreamer.behavior import BehaviorConfig, ReturnScale, behavior_losses, imagine
from worldmodels.dreamer.world_model import categorical_kl
from worldmodels.envs import EnvConfig, make_vector_env
from worldmodels.replay import Replay
from worldmodels.training import EnvSpec
from worldmodels.training.health import held_batch

CONTEXT = DreamerV3.HEALTH_CONTEXT


def small_agent(seq_len: int = 20, **kwargs) -> DreamerV3:
    agent = DreamerV3(size="XS", deter=32, cnn_depth=4, mlp_units=32, mlp_layers=1, stoch=4, classes=4,
                      batch_size=6, seq_len=seq_len, **kwargs)
    agent.build(EnvSpec((3, 32, 32), 3, num_actions=3))
    return agent


def replay_batch(agent: DreamerV3, steps: int = 120) -> dict[str, torch.Tensor]:
    """The Health callback's held batch (the agent's own view, with Monte-Carlo returns) from
    random-policy catch episodes of about 10 steps, so that windows cross episode starts."""
    envs = make_vector_env(EnvConfig("test", "catch", image_size=32, grayscale=False), num_envs=2, seed=0)
    replay = Replay(1000, num_envs=2, frame_stack=1, frame_channels=3, seed=0)
    rng = np.random.default_rng(0)
    step = envs.reset(seed=0)
    replay.add(step.obs, np.zeros(2, np.int64), step.reward, step.terminated, step.truncated, step.first)
    for _ in range(steps):
        actions = envs.random_actions(rng)
        step = envs.step(actions)
        replay.add(step.obs, actions, step.reward, step.terminated, step.truncated, step.first)
    return held_batch(agent, replay, torch.Generator().manual_seed(0))


def test_health_returns_finite_figures_under_the_documented_names():
    torch.manual_seed(0)
    agent = small_agent()
    batch = replay_batch(agent)
    assert batch["first"][:, 1:].any(), "the batch should cross an episode start"
    figures = {name: float(value) for name, value in agent.health(batch).items()}
    per_step = {f"open_loop_{name}_step{k}" for name in ("image_mse", "reward_error", "kl") for k in (1, 5, 10, 15)}
    assert set(figures) == per_step | {"value_mean", "mc_return_mean", "value_overestimation", "critic_srank",
                                       "encoder_srank", "critic_feature_dot", "td_loss"}
    assert all(math.isfinite(v) for v in figures.values()), figures
    assert 1 <= figures["critic_srank"] <= 32 and 1 <= figures["encoder_srank"] <= agent.world_model.encoder.out_dim
    valid = batch["mc_valid"]
    assert valid.any() and (batch["mc_return"][valid] != 0).any()
    assert figures["mc_return_mean"] == pytest.approx(batch["mc_return"][valid].mean().item())
    # The critic starts at zero (zero-initialised output), so it underestimates by exactly the mean return.
    assert figures["value_mean"] == pytest.approx(0.0, abs=1e-6)
    assert figures["value_overestimation"] == pytest.approx(-figures["mc_return_mean"], abs=1e-6)


def test_health_changes_no_parameter_or_buffer():
    torch.manual_seed(0)
    agent = small_agent()
    batch = replay_batch(agent)
    agent.returns_scale.update(torch.linspace(-5, 5, 100))  # a normaliser away from its zero start
    before = {k: v.clone() for k, v in agent.state_dict().items()}
    agent.health(batch)
    changed = [k for k, v in agent.state_dict().items() if not torch.equal(v, before[k])]
    assert not changed


def test_health_leaves_out_open_loop_steps_the_sequence_does_not_hold():
    agent = small_agent(seq_len=CONTEXT + 7)
    figures = agent.health(replay_batch(agent))
    assert "open_loop_kl_step5" in figures and "open_loop_kl_step10" not in figures


def test_open_loop_errors_match_a_hand_computation_on_a_planted_model():
    """Decoder and reward head planted to predict constants (0.5 grey, reward 0) on frames whose
    pixel value and reward grow with time: the error at imagined step k must be that of frame
    CONTEXT + k - 1, which a shifted or reversed step index would miss."""
    torch.manual_seed(0)
    model = small_agent().world_model
    last_layer = model.decoder.net[-1]
    torch.nn.init.zeros_(last_layer.weight)
    torch.nn.init.zeros_(last_layer.bias)  # decodes 0 in centred space: 0.5 in [0, 1]
    b, t = 3, 12
    pixel = 10 * torch.arange(t)[None, :] + 40 * torch.arange(b)[:, None]  # (B, T) grey level per frame
    obs = pixel[:, :, None, None, None].expand(b, t, 3, 32, 32).to(torch.uint8)
    reward = torch.arange(t, dtype=torch.float32)[None, :] - torch.arange(b, dtype=torch.float32)[:, None]
    action = torch.nn.functional.one_hot(torch.randint(0, 3, (b, t)), 3).float()
    first = torch.zeros(b, t, dtype=torch.bool)
    first[:, 0] = True
    with torch.no_grad():
        post, _ = model.rssm.observe(model.encoder(obs), action, first)
    errors = model.open_loop_errors(post, obs, action, reward, first, CONTEXT)

    steps = torch.arange(CONTEXT, t)
    expected_image = ((0.5 - pixel[:, steps] / 255.0) ** 2).mean(0)
    expected_reward = reward[:, steps].abs().mean(0)
    assert errors["image_mse"].shape == (t - CONTEXT,)
    assert torch.allclose(errors["image_mse"], expected_image, atol=1e-6)
    assert torch.allclose(errors["reward_error"], expected_reward, atol=1e-4)  # the zero head decodes ~1e-6
    assert len(model.open_loop_errors(post, obs, action, reward, first, CONTEXT, steps=3)["kl"]) == 3


def test_open_loop_kl_is_the_one_step_kl_one_step_after_the_context_and_after_an_episode_start():
    """The open-loop prior one step after the last observed state, and at an episode start (where
    the rollout restarts from the initial state as the posterior does), is the prior the world
    model trains against: its KL to the posterior must equal the filtering KL at that step."""
    torch.manual_seed(0)
    model = small_agent().world_model
    b, t = 4, 12
    obs = torch.randint(0, 256, (b, t, 3, 32, 32), dtype=torch.uint8)
    action = torch.nn.functional.one_hot(torch.randint(0, 3, (b, t)), 3).float()
    first = torch.zeros(b, t, dtype=torch.bool)
    first[:, 0] = True
    first[:, CONTEXT + 3] = True
    with torch.no_grad():
        post, prior_logits = model.rssm.observe(model.encoder(obs), action, first)
    kl = model.open_loop_errors(post, obs, action, torch.zeros(b, t), first, CONTEXT)["kl"]
    one_step = categorical_kl(post.logits, prior_logits).mean(0)  # (T,)
    assert kl[0].item() == pytest.approx(one_step[CONTEXT].item(), rel=1e-5)
    assert kl[3].item() == pytest.approx(one_step[CONTEXT + 3].item(), rel=1e-5)
    assert kl[1].item() != pytest.approx(one_step[CONTEXT + 1].item(), rel=1e-3)  # two steps open loop: not the same


@pytest.mark.parametrize("discrete", [True, False])
def test_dr3_adds_its_coefficient_times_the_feature_dot_of_consecutive_imagined_states(discrete):
    torch.manual_seed(0)
    agent = DreamerV3(size="XS", deter=32, cnn_depth=4, mlp_units=32, mlp_layers=1, stoch=4, classes=4)
    agent.build(EnvSpec((3, 32, 32), 3, num_actions=3) if discrete else EnvSpec((3, 32, 32), 3, action_dim=2))
    n, horizon, coef = 8, 5, 0.3
    with torch.no_grad():
        start = agent.world_model.rssm.initial(n)
        start = agent.world_model.rssm.img_step(start, torch.zeros(n, agent.action_dim))  # a non-initial state
    # The critic's output starts at zero and its features are pure LayerNorm outputs; move it off that point.
    for p in agent.critic.net.parameters():
        torch.nn.init.normal_(p, std=0.3)

    def losses(dr3_coef):
        torch.manual_seed(1)  # the same imagined trajectory each time
        return behavior_losses(agent.world_model, agent.actor, agent.critic, ReturnScale(), start, torch.ones(n),
                               BehaviorConfig(horizon=horizon, dr3_coef=dr3_coef))

    _, plain, metrics = losses(0.0)
    _, regularised, metrics_dr3 = losses(coef)
    torch.manual_seed(1)
    with torch.no_grad():
        traj, _, _ = imagine(agent.world_model.rssm, agent.actor, start, horizon)
        phi = agent.critic.features(traj.features()[:-1])  # s_0..s_{H-1}, the states the critic trains on
    assert phi.shape == (horizon, n, 32)
    by_hand = torch.einsum("tnf,tnf->", phi[:-1], phi[1:]) / ((horizon - 1) * n)
    assert metrics["critic/feature_dot"].item() == pytest.approx(by_hand.item(), rel=1e-5)
    assert metrics_dr3["critic/feature_dot"].item() == pytest.approx(by_hand.item(), rel=1e-5)
    assert (regularised - plain).item() == pytest.approx(coef * by_hand.item(), rel=1e-4)
    # The regulariser reaches the critic's weights: the gradients differ.
    grads = [torch.autograd.grad(loss, agent.critic.net[0].weight)[0] for loss in (plain, regularised)]
    assert not torch.allclose(grads[0], grads[1])


def test_critic_features_are_its_penultimate_layer():
    agent = small_agent()
    feat = torch.randn(7, agent.world_model.rssm.feat_dim)
    torch.nn.init.normal_(agent.critic.net[-1].weight)
    assert torch.allclose(agent.critic.head(agent.critic.features(feat)), agent.critic.net(feat))
    assert agent.critic.features(feat).shape == (7, 32)


def test_the_open_loop_video_shows_truth_prediction_and_error_with_observed_and_imagined_borders_by_hand():
    from worldmodels.diagnostics.open_loop import open_loop_video

    # Two gray sequences of 3 steps, 8x8 (a 2-px border leaves 4x4 inside): sequence 0 all 100,
    # sequence 1 all 200; the model predicts 0.5 everywhere; one observed step, then two imagined.
    obs = torch.stack([torch.full((3, 1, 8, 8), 100), torch.full((3, 1, 8, 8), 200)]).to(torch.uint8)
    video = open_loop_video(obs, torch.full((2, 3, 1, 8, 8), 0.5), context=1)
    assert video.shape == (3, 3, 3 * 8, 2 * 8)  # (T, RGB, rows truth/prediction/error x H, sequences x W)
    inside = lambda t, row, seq: video[t, :, row * 8 + 2:row * 8 + 6, seq * 8 + 2:seq * 8 + 6]
    # truth 100/255 -> 100; prediction 0.5 -> 127.5 -> 128; error (0.5 - 100/255 + 1) / 2 x 255 = 141.25 -> 141,
    # and for sequence 1: (0.5 - 200/255 + 1) / 2 x 255 = 91.25 -> 91.
    for t in range(3):
        for row, seq, value in [(0, 0, 100), (1, 0, 128), (2, 0, 141), (0, 1, 200), (1, 1, 128), (2, 1, 91)]:
            assert (inside(t, row, seq) == value).all(), (t, row, seq)
    # The corner of every panel: green (0, 0.8, 0) -> (0, 204, 0) while observed, red (0.9, 0, 0) -> (230, 0, 0) after.
    assert video[0, :, 0, 0].tolist() == [0, 204, 0] and video[0, :, 16, 8].tolist() == [0, 204, 0]
    assert video[1, :, 0, 0].tolist() == [230, 0, 0] and video[2, :, 23, 15].tolist() == [230, 0, 0]
