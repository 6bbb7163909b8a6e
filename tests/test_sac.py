"""The SAC of DrQ and SAC+AE: targets, loss averaging, temperature update, gradient routing, the
reconstruction target and penalty, against hand-computed values."""

import math

import pytest
import torch

from model_free.sac import (SAC, averaged_critic_loss, averaged_target, data_log_prob, deterministic_q_target,
                            latent_penalty, quantised_target, soft_q_target, temperature_loss)
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
    with pytest.raises(ConfigError, match=r"SAC\+AE \(model.decoder\) takes continuous actions, and this environment's are discrete"):
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


# ---------------------------------------------------------------------- CQL for SAC, as the CQL code runs it
def transition_batch(b: int = 4) -> dict:
    return {"obs": torch.randint(0, 256, (b, 6, 20, 20), dtype=torch.uint8), "action": torch.rand(b, 2) * 2 - 1,
            "reward": torch.randn(b), "discount": torch.full((b,), 0.99),
            "next_obs": torch.randint(0, 256, (b, 6, 20, 20), dtype=torch.uint8)}


def naive_tanh_gaussian_log_prob(u: torch.Tensor, mu: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """log pi(tanh(u)) for the pre-tanh draw u: the Gaussian's density less log(1 - tanh(u)^2), summed."""
    gaussian = -0.5 * ((u - mu) / std) ** 2 - torch.log(std) - 0.5 * math.log(2 * math.pi)
    return (gaussian - torch.log(1 - torch.tanh(u) ** 2)).sum(-1)


def test_the_deterministic_backup_is_the_reward_plus_the_discounted_min_of_the_target_critics():
    reward, discount = torch.tensor([1.0, 0.5]), torch.tensor([0.9, 0.0])
    # 1 + 0.9 * min(10, 8) = 8.2; the second ends in a terminal: 0.5. No entropy term at all.
    assert deterministic_q_target(reward, discount, torch.tensor([10.0, 3.0]), torch.tensor([8.0, 4.0])).tolist() == \
        pytest.approx([8.2, 0.5])
    # Through the agent: the target of critic_loss against r + d min(Q'_1, Q'_2)(s', a'), a' drawn as by hand.
    agent, batch, alpha = small_agent(deterministic_backup=True), transition_batch(), torch.tensor(3.0)
    torch.manual_seed(7)
    _, parts = agent.critic_loss(batch["obs"], batch["next_obs"], batch, alpha)
    torch.manual_seed(7)
    with torch.no_grad():
        mu, std = agent.actor(agent.critic.encoder(batch["next_obs"]))
        u = mu + std * torch.randn_like(mu)  # the reparameterised draw, before the tanh
        q1, q2 = agent.critic_target(agent.critic_target.encoder(batch["next_obs"]), torch.tanh(u))
        log_pi = naive_tanh_gaussian_log_prob(u, mu, std)
    expected = batch["reward"] + batch["discount"] * torch.min(q1, q2)
    assert parts["target"].tolist() == pytest.approx(expected.tolist(), rel=1e-5, abs=1e-5)
    soft = small_agent()  # the same networks (seed 0), SAC's backup: the entropy term is there
    torch.manual_seed(7)
    _, soft_parts = soft.critic_loss(batch["obs"], batch["next_obs"], batch, alpha)
    assert soft_parts["target"].tolist() == pytest.approx((expected - batch["discount"] * alpha * log_pi).tolist(),
                                                          rel=1e-4, abs=1e-4)


def test_the_dataset_actions_log_likelihood_is_the_cql_codes_clamped_tanh_gaussian_density():
    mu, std = torch.tensor([[0.0, 0.5]]), torch.tensor([[1.0, 2.0]])
    action = torch.tensor([[0.0, math.tanh(0.5)]])
    # dim 0: log N(0; 0, 1) - log(1 + 1e-6); dim 1: log N(0.5; 0.5, 2) - log(1 - tanh(0.5)^2 + 1e-6)
    by_hand = (-0.5 * math.log(2 * math.pi) - math.log(1 + 1e-6)) + \
              (-math.log(2.0) - 0.5 * math.log(2 * math.pi) - math.log(1 - math.tanh(0.5) ** 2 + 1e-6))
    assert data_log_prob(mu, std, action).item() == pytest.approx(by_hand, rel=1e-5)
    # An action at the bound stays finite: atanh(1) with 1 - a clamped at 1e-6, and the mean clamped at 9.
    edge = data_log_prob(torch.tensor([[20.0]]), torch.tensor([[1.0]]), torch.tensor([[1.0]]))
    u = 0.5 * math.log(2 / 1e-6)
    assert edge.item() == pytest.approx(-0.5 * (u - 9.0) ** 2 - 0.5 * math.log(2 * math.pi) - math.log(1e-6), rel=1e-5)


def test_before_policy_eval_start_the_actor_clones_the_dataset_actions_and_then_switches_to_sac():
    agent, batch, alpha = small_agent(policy_eval_start=3, actor_update_every=1), transition_batch(), torch.tensor(0.5)
    obs = batch["obs"]
    torch.manual_seed(11)
    loss, _ = agent.actor_loss(obs, alpha, batch["action"])
    torch.manual_seed(11)
    with torch.no_grad():
        mu, std = agent.actor(agent.critic.encoder(obs))
        u = mu + std * torch.randn_like(mu)
        a = batch["action"]
        log_data = (-0.5 * ((torch.atanh(a) - mu) / std) ** 2 - torch.log(std) - 0.5 * math.log(2 * math.pi)
                    - torch.log(1 - a ** 2 + 1e-6)).sum(-1)  # the actions are inside (-1, 1): no clamp acts
    expected = (alpha * naive_tanh_gaussian_log_prob(u, mu, std) - log_data).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
    loss.backward()
    assert all(p.grad is None for p in agent.critic.parameters())  # no Q in the cloning loss

    # In training: updates 1 and 2 clone (the CQL code: its counter, 1 at the first update, below
    # policy_eval_start), update 3 is SAC's actor loss.
    optimizers = agent.configure_optimizers()
    agent.optimizers, agent.manual_backward = lambda: optimizers, lambda loss: loss.backward()
    agent.log_scalars = lambda metrics: None
    cloned, actor_loss = [], agent.actor_loss
    agent.actor_loss = lambda obs, alpha, data_action=None: (cloned.append(data_action is not None),
                                                             actor_loss(obs, alpha, data_action))[1]
    for update in (1, 2, 3, 4):
        agent.counters.updates = update
        agent.training_step(batch, 0)
    assert cloned == [True, True, False, False]


def test_the_lagrange_multiplier_rises_while_the_penalty_exceeds_the_gap_and_falls_below_it():
    from worldmodels.regularizers import cql_lagrange_terms

    # alpha' = exp(log 2) = 2; weighted penalties 3 and 5, gap 1: critics' term 2 (2 + 4) = 12,
    # alpha''s loss -2 (2 + 4) / 2 = -6, its gradient in log alpha' -6 (d alpha' / d log alpha' = alpha').
    log_alpha_prime = torch.tensor(math.log(2.0), requires_grad=True)
    penalties = [torch.tensor(3.0, requires_grad=True), torch.tensor(5.0, requires_grad=True)]
    critic_term, loss, alpha_prime = cql_lagrange_terms(log_alpha_prime, penalties, 1.0)
    assert (critic_term.item(), loss.item(), alpha_prime.item()) == pytest.approx((12.0, -6.0, 2.0))
    critic_term.backward()
    assert log_alpha_prime.grad is None and [p.grad.item() for p in penalties] == pytest.approx([2.0, 2.0])
    loss.backward()
    assert log_alpha_prime.grad.item() == pytest.approx(-6.0)  # descent raises alpha': penalty above the gap
    below = torch.tensor(math.log(2.0), requires_grad=True)
    cql_lagrange_terms(below, [torch.tensor(0.5), torch.tensor(0.5)], 1.0)[1].backward()
    assert below.grad.item() == pytest.approx(1.0)  # -2 (-0.5): descent lowers alpha'
    clamped = torch.tensor(20.0, requires_grad=True)  # exp(20) > 1e6: clamped, no gradient
    _, loss, alpha_prime = cql_lagrange_terms(clamped, [torch.tensor(3.0)], 1.0)
    loss.backward()
    assert alpha_prime.item() == 1e6 and clamped.grad.item() == 0.0


@pytest.mark.parametrize("gap", [1e3, 1e-3])
def test_one_lagrange_update_moves_log_alpha_prime_by_adams_first_step_against_its_gradient(gap):
    agent = small_agent(cql_alpha=2.0, cql_target_action_gap=gap, cql_samples=2)
    optimizers = agent.configure_optimizers()
    (alpha_prime_opt,) = [o for o in optimizers if o.param_groups[0]["params"][0] is agent.log_alpha_prime]
    assert alpha_prime_opt is optimizers[-1] and alpha_prime_opt.defaults["lr"] == 1e-3  # the critic's lr, as qf_lr
    agent.optimizers, agent.manual_backward = lambda: optimizers, lambda loss: loss.backward()
    logged = []
    agent.log_scalars = logged.append
    agent.counters.updates = 1
    agent.training_step(transition_batch(), 0)
    # The gradient in log alpha' at alpha' = 1 is -(2 P_sum / 2 - gap): Adam's first step is lr against its sign.
    penalty = logged[-1]["train/cql_penalty"].item()
    step = 1e-3 * (1 if 2.0 * penalty / 2 - gap > 0 else -1)
    assert agent.log_alpha_prime.item() == pytest.approx(step, rel=1e-4)
    assert logged[-1]["train/alpha_prime"].item() == 1.0  # the value before the step, as the critic used it
    assert "exp_avg" in alpha_prime_opt.state[agent.log_alpha_prime]  # moments that Lightning checkpoints


def test_a_negative_or_orphan_target_action_gap_is_refused_with_one_sentence():
    with pytest.raises(ConfigError, match="cql_target_action_gap is -1.0; it must be 0 or more"):
        SAC(cql_alpha=1.0, cql_target_action_gap=-1.0)
    with pytest.raises(ConfigError, match="set cql_alpha above 0 too"):
        SAC(cql_target_action_gap=5.0)
    assert not small_agent(cql_alpha=1.0, cql_target_action_gap=0.0).lagrange  # 0: off, no alpha'
    assert len(small_agent(cql_alpha=1.0).configure_optimizers()) == 3


def test_the_cql_temperature_loss_on_log_alpha_has_a_gradient_not_scaled_by_alpha():
    log_alpha = torch.tensor(math.log(0.1), requires_grad=True)
    temperature_loss(log_alpha, torch.full((4,), 3.0), target_entropy=-2.0, on_log_alpha=True).backward()
    assert log_alpha.grad.item() == pytest.approx(-3.0 + 2.0)  # -(log pi + target): H = -3 below -2


# ---------------------------------------------------------------------- SAC+AE's initialisation
def assert_delta_orthogonal(weight: torch.Tensor, gain: float) -> None:
    k = weight.shape[2]
    off_centre = torch.ones(k, k, dtype=torch.bool)
    off_centre[k // 2, k // 2] = False
    assert torch.count_nonzero(weight[:, :, off_centre]) == 0
    centre = weight[:, :, k // 2, k // 2]
    rows, cols = centre.shape  # orthonormal rows if there are fewer rows, orthonormal columns otherwise
    gram = centre @ centre.T if rows <= cols else centre.T @ centre
    assert torch.allclose(gram, gain ** 2 * torch.eye(min(rows, cols)), atol=1e-5)


@pytest.mark.parametrize("shape", [(32, 9, 3, 3), (9, 32, 3, 3), (32, 32, 3, 3), (4, 6, 5, 5)])
def test_delta_orthogonal_init_is_zero_off_centre_and_orthogonal_at_the_centre_tap(shape):
    from worldmodels.nets.drq_encoder import delta_orthogonal_

    weight = delta_orthogonal_(torch.randn(shape), gain=math.sqrt(2.0))
    assert_delta_orthogonal(weight, math.sqrt(2.0))
    with pytest.raises(ValueError, match="square kernel of odd size"):
        delta_orthogonal_(torch.randn(4, 4, 2, 2))


def test_sacae_conv_init_makes_every_encoder_and_decoder_conv_delta_orthogonal_with_zero_biases():
    agent = SAC(batch_size=4, hidden=16, feature_dim=8, decoder=True, conv_init="delta_orthogonal")
    agent.build(EnvSpec((6, 20, 20), 3, action_dim=2))
    convs = [m for net in (agent.critic.encoder, agent.critic_target.encoder, agent.decoder) for m in net.modules()
             if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert len(convs) == 4 + 4 + 4
    for conv in convs:
        assert_delta_orthogonal(conv.weight.detach(), math.sqrt(2.0))  # the ReLU gain
        assert torch.count_nonzero(conv.bias) == 0
    drq = small_agent()  # DrQ's code: the whole kernel orthogonal
    assert torch.count_nonzero(drq.critic.encoder.convs[1].weight[:, :, 0, 0]) > 0
    with pytest.raises(ConfigError, match="conv_init is 'xavier'; it must be one of orthogonal, delta_orthogonal"):
        SAC(conv_init="xavier")


def test_only_an_agent_that_asks_for_it_gets_the_burst_of_updates_at_the_end_of_the_warmup():
    assert SAC(warmup_burst=True).warmup_burst and not SAC().warmup_burst
