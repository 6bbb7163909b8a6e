"""The SAC of DrQ and SAC+AE: targets, loss averaging, temperature update, gradient routing, the
reconstruction target and penalty, against hand-computed values."""

import math

import pytest
import torch

from model_free.sac import (SAC, averaged_critic_loss, averaged_target, latent_penalty, quantised_target, soft_q_target,
                            temperature_loss)
from worldmodels.errors import ConfigError
from worldmodels.training import EnvSpec


def test_k_averaged_target_is_the_mean_of_the_per_augmentation_soft_targets():
    reward, discount, alpha = torch.tensor([1.0, 0.5]), torch.tensor([0.9, 0.0]), 0.1  # the second ends in a terminal
    next_q1 = torch.tensor([[10.0, 3.0], [6.0, 7.0]])  # (K=2, B=2): one row per shift of s'
    next_q2 = torch.tensor([[8.0, 4.0], [9.0, 1.0]])
    next_log_prob = torch.tensor([[-2.0, 0.0], [1.0, 5.0]])
    targets = soft_q_target(reward, discount, next_q1, next_q2, next_log_prob, alpha)
    # k=0: 1 + 0.9 * (min(10, 8) + 0.2) = 8.38;   k=1: 1 + 0.9 * (min(6, 9) - 0.1) = 6.31;   column 2: 0.5
    assert targets.tolist() == [pytest.approx([8.38, 0.5]), pytest.approx([6.31, 0.5])]
    assert averaged_target(targets).tolist() == pytest.approx([(8.38 + 6.31) / 2, 0.5])


def test_with_one_augmentation_the_target_is_the_plain_sac_target():
    reward, discount, alpha = torch.tensor([2.0]), torch.tensor([0.99]), 0.5
    target = averaged_target(soft_q_target(reward, discount, torch.tensor([[4.0]]), torch.tensor([[5.0]]),
                                           torch.tensor([[-1.0]]), alpha))
    assert target.tolist() == pytest.approx([2.0 + 0.99 * (4.0 + 0.5)])  # r + d * (min Q' - alpha log pi)


def test_m_averaged_critic_loss_is_the_mean_of_the_per_augmentation_losses():
    target = torch.tensor([1.0, 2.0])
    q1 = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # (M=2, B=2): one row per shift of s
    q2 = torch.tensor([[0.0, 2.0], [1.0, 1.0]])
    # shift 0: MSE(q1) = 0, MSE(q2) = (1 + 0) / 2 = 0.5;   shift 1: MSE(q1) = (4 + 4) / 2 = 4, MSE(q2) = (0 + 1) / 2 = 0.5
    assert averaged_critic_loss(q1, q2, target).item() == pytest.approx((0.5 + 4.5) / 2)
    assert averaged_critic_loss(q1[:1], q2[:1], target).item() == pytest.approx(0.5)


@pytest.mark.parametrize("entropy, rises", [(-3.0, True), (-1.0, False)])
def test_temperature_rises_when_entropy_is_below_target_and_falls_above(entropy, rises):
    log_alpha = torch.tensor(math.log(0.1), requires_grad=True)
    log_prob = torch.full((4,), -entropy, requires_grad=True)  # -log pi estimates the entropy
    loss = temperature_loss(log_alpha, log_prob, target_entropy=-2.0)
    loss.backward()
    assert log_alpha.grad.item() == pytest.approx(0.1 * (entropy + 2.0))  # d/dlog_alpha alpha (H - target)
    assert log_prob.grad is None  # the entropy term is a constant of the temperature's loss
    assert (log_alpha.grad.item() < 0) == rises  # gradient descent moves log alpha against its gradient


def small_agent(**kw) -> SAC:
    torch.manual_seed(0)
    agent = SAC(batch_size=4, hidden=16, feature_dim=8, **kw)
    agent.build(EnvSpec((6, 20, 20), 3, action_dim=2))
    return agent


def test_actor_loss_does_not_reach_the_conv_encoder():
    agent = small_agent()
    obs = torch.randint(0, 256, (4, 6, 20, 20), dtype=torch.uint8)
    actor_loss, _ = agent.actor_loss(obs, torch.tensor(0.1))
    actor_loss.backward()
    assert all(p.grad is None for p in agent.critic.encoder.parameters())
    assert all(p.grad is not None for p in agent.actor.parameters())  # its own Trunk and MLP learn
    # Even with the encoder in the graph, the actor network itself reads the conv features detached.
    mu, std = agent.actor(agent.critic.encoder(obs.float()))
    (mu.sum() + std.sum()).backward()
    assert all(p.grad is None for p in agent.critic.encoder.parameters())


def test_actor_temperature_and_target_update_on_every_second_update():
    agent = small_agent(k_aug=2, m_aug=2)
    optimizers = agent.configure_optimizers()
    agent.optimizers, agent.manual_backward = lambda: optimizers, lambda loss: loss.backward()
    logged = []
    agent.log_scalars = lambda metrics: logged.append(metrics)
    batch = {"obs": torch.randint(0, 256, (4, 6, 20, 20), dtype=torch.uint8), "action": torch.rand(4, 2) * 2 - 1,
             "reward": torch.randn(4), "discount": torch.full((4,), 0.99),
             "next_obs": torch.randint(0, 256, (4, 6, 20, 20), dtype=torch.uint8)}
    snapshot = lambda: [p.clone() for p in [*agent.actor.parameters(), agent.log_alpha, *agent.critic_target.parameters()]]
    agent.counters.updates = 1  # the loop counts the update before training_step sees it
    before = snapshot()
    agent.training_step(batch, 0)
    assert all(torch.equal(a, b) for a, b in zip(before, snapshot()))
    assert "train/actor_loss" not in logged[-1] and logged[-1]["train/critic_loss"] > 0
    agent.counters.updates = 2
    agent.training_step(batch, 0)
    assert all(not torch.equal(a, b) for a, b in zip(before, snapshot()))
    assert {"train/actor_loss", "train/alpha_loss", "train/entropy"} <= logged[-1].keys()


def test_exploration_samples_and_evaluation_acts_with_the_squashed_mean():
    agent = small_agent()
    obs = torch.randint(0, 256, (3, 6, 20, 20), dtype=torch.uint8)
    with agent.acting():
        greedy, _ = agent.act(obs, None, torch.ones(3, dtype=torch.bool), explore=False)
        sampled, _ = agent.act(obs, None, torch.ones(3, dtype=torch.bool), explore=True)
        mu, _ = agent.actor(agent.critic.encoder(obs))
    assert torch.equal(greedy, torch.tanh(mu))
    assert sampled.shape == (3, 2) and sampled.abs().max() <= 1 and not torch.equal(sampled, greedy)


# ------------------------------------------------------------------------------ SAC+AE (decoder: true)
def test_the_reconstruction_target_is_the_image_quantised_to_5_bits_plus_noise_minus_a_half():
    obs = torch.tensor([[[[0, 7, 8, 255]]]], dtype=torch.uint8)
    # floor(x / 8) / 32: 0, 0, 1/32, 31/32; plus noise / 32; minus 0.5.
    no_noise = quantised_target(obs, torch.zeros(1, 1, 1, 4))
    assert no_noise.flatten().tolist() == pytest.approx([-0.5, -0.5, 1 / 32 - 0.5, 31 / 32 - 0.5])
    half = quantised_target(obs, torch.full((1, 1, 1, 4), 0.5))
    assert half.flatten().tolist() == pytest.approx([0.5 / 32 - 0.5, 0.5 / 32 - 0.5, 1.5 / 32 - 0.5, 31.5 / 32 - 0.5])


def test_the_latent_penalty_is_half_the_squared_norm_averaged_over_the_batch():
    h = torch.tensor([[1.0, 2.0], [0.0, 3.0]])  # |h|^2 / 2: 2.5 and 4.5, mean 3.5
    assert latent_penalty(h).item() == pytest.approx(3.5)


def test_weight_decay_applies_to_the_decoder_only():
    agent = small_agent(decoder=True, image_pad=0)
    optimizers = agent.configure_optimizers()
    decay = {id(p): group["weight_decay"] for opt in optimizers for group in opt.param_groups for p in group["params"]
             if group["weight_decay"]}
    assert set(decay) == {id(p) for p in agent.decoder.parameters()} and set(decay.values()) == {1e-7}


def test_the_decoders_loss_trains_the_encoder_and_the_actors_does_not():
    agent = small_agent(decoder=True, image_pad=0)
    obs = torch.randint(0, 256, (4, 6, 20, 20), dtype=torch.uint8)
    loss, parts = agent.reconstruction_loss(obs)
    assert parts["reconstruction"].shape == obs.shape
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in agent.encoder_parameters())
    assert all(p.grad is not None for p in agent.decoder.parameters())
    agent.zero_grad()
    actor_loss, _ = agent.actor_loss(obs, torch.tensor(0.1))
    actor_loss.backward()
    assert all(p.grad is None or not p.grad.any() for p in agent.critic.encoder.parameters())


def test_the_encoder_follows_its_own_target_rate():
    agent = small_agent(decoder=True, image_pad=0, encoder_tau=0.05, critic_tau=0.01)
    with torch.no_grad():
        for p in agent.critic.parameters():
            p.add_(1.0)  # online = target + 1 everywhere
    agent.update_critic_target()
    conv = agent.critic.encoder.convs[1].weight
    assert torch.allclose(conv - agent.critic_target.encoder.convs[1].weight, torch.full_like(conv, 0.95))
    head = agent.critic.q1[0].weight
    assert torch.allclose(head - agent.critic_target.q1[0].weight, torch.full_like(head, 0.99))


def test_a_decoder_on_a_discrete_action_task_is_refused_with_one_sentence():
    with pytest.raises(ConfigError, match=r"SAC\+AE \(model.decoder\) needs a continuous action space"):
        SAC(decoder=True).build(EnvSpec((3, 24, 24), 3, num_actions=4))


def test_the_cql_penalty_pairs_each_state_with_its_own_sampled_actions():
    """SAC.cql_penalty batches N actions per state through the critic; the same draws, valued one
    state and one action at a time, must give the same penalty (a row-order slip would pair states
    with other states' actions)."""
    from worldmodels.regularizers.cql import cql_continuous_penalty

    agent, n, b = small_agent(cql_samples=3), 3, 2
    obs = torch.randint(0, 256, (b, 6, 20, 20), dtype=torch.uint8)
    next_obs = torch.randint(0, 256, (b, 6, 20, 20), dtype=torch.uint8)
    data = torch.rand(b, 2) * 2 - 1
    conv, next_conv = agent.critic.encoder(obs), agent.critic.encoder(next_obs)
    q_data = agent.critic(conv, data)
    torch.manual_seed(5)
    batched = agent.cql_penalty(conv, next_conv, q_data)
    torch.manual_seed(5)  # the same draws, in the same order: policy at s, at s', then uniform
    with torch.no_grad():
        from model_free.sac import squashed_normal

        policy_s, policy_next = squashed_normal(*agent.actor(conv)), squashed_normal(*agent.actor(next_conv))
        a_s, a_next = policy_s.sample((n,)), policy_next.sample((n,))
        log_s, log_next = policy_s.log_prob(a_s), policy_next.log_prob(a_next)  # (N, B)
    a_rand = torch.rand(n, b, 2) * 2 - 1
    expected = 0.0
    for twin in range(2):
        for i in range(b):
            value = lambda a: agent.critic(conv[i:i + 1], a[None])[twin][0]
            row = lambda actions: torch.stack([value(actions[j, i]) for j in range(n)])[None]
            expected = expected + cql_continuous_penalty(row(a_rand), row(a_s), log_s[:, i][None], row(a_next),
                                                         log_next[:, i][None], q_data[twin][i:i + 1], 2) / b
    assert batched.item() == pytest.approx(expected.item(), rel=1e-5)
