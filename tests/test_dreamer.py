"""DreamerV3's mathematics against hand-computed values, and its state handling."""

import pytest
import torch

from worldmodels.dreamer import DreamerV3
from worldmodels.dreamer.behavior import BehaviorConfig, ReturnScale, lambda_return
from worldmodels.dreamer.rssm import RSSM, bounded_action
from worldmodels.dreamer.world_model import SIZES, categorical_kl, kl_balance
from worldmodels.nets.dreamer_blocks import ConvEncoder, init_weights_, mlp
from worldmodels.training import EnvSpec
from conftest import ROOT


def test_lambda_returns_on_a_three_step_example_with_a_terminal():
    # States s0..s3; reward[t] and cont[t] are predicted at state t. s2 is terminal (cont 0).
    reward = torch.tensor([9.0, 1.0, 2.0, 3.0])  # reward[0] is never used
    cont = torch.tensor([1.0, 1.0, 0.0, 1.0])
    value = torch.tensor([0.5, 4.0, 5.0, 6.0])
    gamma, lam = 0.9, 0.5
    # R_3 = v_3 = 6
    # R_2 = r_3 + g c_3 ((1-l) v_3 + l R_3) = 3 + 0.9 * (0.5*6 + 0.5*6) = 8.4
    # R_1 = r_2 + g c_2 (...) = 2 + 0 = 2
    # R_0 = r_1 + g c_1 ((1-l) v_1 + l R_1) = 1 + 0.9 * (0.5*4 + 0.5*2) = 3.7
    returns = lambda_return(reward, cont, value, lam, gamma)
    assert returns.tolist() == pytest.approx([3.7, 2.0, 8.4])


def test_lambda_one_is_the_discounted_monte_carlo_return_and_lambda_zero_the_td_target():
    reward, cont, value = torch.tensor([0.0, 1.0, 1.0]), torch.ones(3), torch.tensor([0.0, 10.0, 20.0])
    assert lambda_return(reward, cont, value, 1.0, 0.5)[0] == pytest.approx(1 + 0.5 * (1 + 0.5 * 20))
    assert lambda_return(reward, cont, value, 0.0, 0.5)[0] == pytest.approx(1 + 0.5 * 10)


def test_return_scale_tracks_the_ema_of_the_5th_to_95th_percentile_range_and_never_goes_below_one():
    norm = ReturnScale(decay=0.99)
    returns = torch.arange(101, dtype=torch.float32)  # 5th percentile 5, 95th percentile 95
    scale = norm.update(returns)
    assert norm.low.item() == pytest.approx(0.01 * 5) and norm.high.item() == pytest.approx(0.01 * 95)
    assert scale.item() == 1.0  # 0.9 < 1: small returns are not scaled up
    for _ in range(2000):
        norm.update(returns)
    assert norm.scale.item() == pytest.approx(90.0, rel=1e-3)


def test_kl_free_bits_clip_stops_gradients_below_one_nat():
    post = torch.tensor([[[2.0, 0.0], [0.0, 0.0]]], requires_grad=True)  # (1, S=2, K=2)
    prior = torch.zeros(1, 2, 2, requires_grad=True)
    raw = categorical_kl(post, prior)
    p = torch.softmax(torch.tensor([2.0, 0.0]), 0)
    expected = (p * (p / 0.5).log()).sum()  # the second variable matches the prior exactly
    assert raw.item() == pytest.approx(expected.item())
    assert raw.item() < 1.0
    dyn, rep, kl = kl_balance(post, prior, free=1.0)
    assert dyn.item() == 1.0 and rep.item() == 1.0
    (dyn + rep).sum().backward()
    assert post.grad.abs().sum() == 0 and prior.grad.abs().sum() == 0
    # Above one nat the gradient flows: dynamics into the prior only, representation into the posterior only.
    post2 = torch.tensor([[[8.0, 0.0], [8.0, 0.0]]], requires_grad=True)
    prior2 = torch.zeros(1, 2, 2, requires_grad=True)
    dyn, rep, _ = kl_balance(post2, prior2, free=1.0)
    assert dyn.item() > 1.0
    dyn.sum().backward()
    assert post2.grad is None or post2.grad.abs().sum() == 0
    assert prior2.grad.abs().sum() > 0


def test_rssm_resets_its_state_at_an_episode_start_inside_a_sequence():
    torch.manual_seed(0)
    rssm = RSSM(embed_dim=8, action_dim=3, deter=16, hidden=16, stoch=4, classes=4)
    embed = torch.randn(1, 6, 8)
    action = torch.randn(1, 6, 3)
    first = torch.tensor([[True, False, False, True, False, False]])
    with torch.no_grad():
        post, prior_logits = rssm.observe(embed, action, first)
        # The step at the reset sees exactly what a fresh sequence's first step sees (later steps differ
        # only by the random latent samples drawn before).
        fresh, fresh_prior = rssm.observe(embed[:, 3:], action[:, 3:], first[:, 3:])
    assert torch.allclose(post.deter[:, 3], fresh.deter[:, 0], atol=1e-6)
    assert torch.allclose(post.logits[:, 3], fresh.logits[:, 0], atol=1e-6)
    assert torch.allclose(prior_logits[:, 3], fresh_prior[:, 0], atol=1e-6)
    # Without the reset they differ: the reset is what makes them equal.
    no_reset = first.clone()
    no_reset[0, 3] = False
    with torch.no_grad():
        carried, _ = rssm.observe(embed, action, no_reset)
    assert not torch.allclose(carried.deter[:, 3], fresh.deter[:, 0], atol=1e-4)


def test_the_initial_latent_is_a_one_hot_without_gradient_so_a_first_step_loss_reaches_h0_only_through_the_gru():
    # The reference's initial state (danijar/dreamerv3 8fa35f8, dreamerv3/nets.py lines 46-48 and 125-129):
    # h_0 = tanh(w) with w learned, z_0 = the mode of p(z | h_0), a one-hot of the argmax with no gradient.
    # The first step's prior is p(z_1 | h_1) with h_1 = GRU(h_0, img_in([z_0, 0])) (the action is zeroed at
    # a start), so a loss on it differentiates w only as the GRU's previous state, and the prior network
    # only where it reads h_1. Built by hand below with z_0 a constant, the gradients must be the module's.
    torch.manual_seed(0)
    rssm = RSSM(embed_dim=8, action_dim=3, deter=16, hidden=16, stoch=4, classes=4)
    with torch.no_grad():
        rssm.initial_deter.normal_()  # a learned initial state away from 0
    B = 2
    weights = torch.randn(B, 4, 4)
    first = torch.ones(B, 1, dtype=torch.bool)
    _, prior_logits = rssm.observe(torch.randn(B, 1, 8), torch.randn(B, 1, 3), first)
    (weights * prior_logits[:, 0]).sum().backward()
    through_module = {name: p.grad.clone() for name, p in rssm.named_parameters() if p.grad is not None}

    rssm.zero_grad(set_to_none=True)
    h0 = torch.tanh(rssm.initial_deter).expand(B, -1)
    with torch.no_grad():
        z0 = torch.nn.functional.one_hot(rssm.prior_logits(h0).argmax(-1), 4).float()
    h1 = rssm.gru(rssm.img_in(torch.cat([z0.flatten(-2), torch.zeros(B, 3)], -1)), h0)
    (weights * rssm.prior_logits(h1)).sum().backward()
    by_hand = {name: p.grad for name, p in rssm.named_parameters() if p.grad is not None}

    assert set(through_module) == set(by_hand)
    assert "initial_deter" in by_hand and any(name.startswith("prior_net.") for name in by_hand)
    for name, grad in by_hand.items():
        torch.testing.assert_close(through_module[name], grad, msg=lambda m: f"{name}: {m}")
    init = rssm.initial(B)
    assert init.stoch.grad_fn is None and not init.stoch.requires_grad
    assert torch.equal(init.stoch, z0)


def test_acting_resets_the_recurrent_state_where_an_episode_starts():
    agent = DreamerV3(size="XS")
    agent.build(EnvSpec((3, 64, 64), 3, num_actions=4))
    obs = torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8)
    with agent.acting():
        _, state = agent.act(obs, None, torch.ones(2, dtype=torch.bool), explore=False)
        _, state = agent.act(obs, state, torch.zeros(2, dtype=torch.bool), explore=False)
        _, reset = agent.act(obs, state, torch.tensor([True, False]), explore=False)
        _, start = agent.act(obs, None, torch.ones(2, dtype=torch.bool), explore=False)
    deter_reset, deter_start = reset[0].deter, start[0].deter
    assert torch.allclose(deter_reset[0], deter_start[0], atol=1e-6)  # env 0 started over
    assert not torch.allclose(deter_reset[1], deter_start[1], atol=1e-4)  # env 1 carried its state


def test_an_action_of_magnitude_two_enters_the_dynamics_as_one_with_a_gradient_through_its_direction():
    action = torch.tensor([[2.0, -0.5, -3.0]], requires_grad=True)
    bounded = bounded_action(action)
    assert bounded.tolist() == [[1.0, -0.5, -1.0]]  # components beyond 1 scaled to 1, the rest unchanged
    weights = torch.tensor([[1.0, 2.0, 3.0]])
    (bounded * weights).sum().backward()
    # a * sg(1 / max(1, |a|)): the scale is a constant, so the gradient is weights / max(1, |a|) (not zero,
    # as it would be through a clip, and not through the scale, as it would be without the stop-gradient).
    assert action.grad[0].tolist() == pytest.approx([0.5, 2.0, 1.0])
    torch.manual_seed(0)
    rssm = RSSM(embed_dim=8, action_dim=3, deter=16, hidden=16, stoch=4, classes=4)
    state = rssm.initial(1)
    assert torch.equal(rssm.recurrent_step(state, torch.tensor([[2.0, -0.5, -3.0]])),
                       rssm.recurrent_step(state, torch.tensor([[1.0, -0.5, -1.0]])))


def test_the_evaluation_policy_samples_from_the_actor_as_the_reference_code_does():
    torch.manual_seed(0)
    agent = DreamerV3(size="XS")
    agent.build(EnvSpec((3, 64, 64), 3, action_dim=2))
    obs, first = torch.randint(0, 255, (64, 3, 64, 64), dtype=torch.uint8), torch.ones(64, dtype=torch.bool)
    with agent.acting():
        sampled = agent.act(obs, None, first, explore=False)[0]
        mode_agent = DreamerV3(size="XS", eval_policy="mode")
        mode_agent.build(agent.spec)
        mode_agent.load_state_dict(agent.state_dict())
        mode = mode_agent.act(obs, None, first, explore=False)[0]
    assert not torch.allclose(sampled, mode, atol=1e-3)  # std >= 0.1 per component: samples differ from the mode


def test_reward_and_critic_heads_start_at_zero():
    agent = DreamerV3(size="XS")
    agent.build(EnvSpec((3, 64, 64), 3, action_dim=2))
    feat = torch.randn(5, agent.world_model.rssm.feat_dim)
    assert torch.allclose(agent.world_model.reward(feat), torch.zeros(5), atol=1e-6)
    assert torch.allclose(agent.critic.value(feat), torch.zeros(5), atol=1e-6)


# The 2023 paper's table of model sizes (Hafner et al. 2023, "Mastering Diverse Domains
# through World Models", arXiv 2301.04104v1, Table of model sizes): GRU units, CNN multiplier,
# dense hidden units, MLP layers. XS is not in the paper (the ports' 256/24/256x1).
PAPER_SIZES = {"XS": (256, 24, 256, 1), "S": (512, 32, 512, 2), "M": (1024, 48, 640, 3), "L": (2048, 64, 768, 4),
               "XL": (4096, 96, 1024, 5)}


def test_sizes_follow_the_2023_table_and_the_agents_page_prints_their_parameter_counts():
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    from dreamer_sizes import component_counts

    rows = [line.split("|")[1:-1] for line in (ROOT / "docs" / "agents.md").read_text().splitlines()
            if line.startswith("| ") and line.split("|")[1].strip() in PAPER_SIZES]
    assert [row[0].strip() for row in rows] == list(PAPER_SIZES)
    columns = ["encoder", "rssm", "decoder", "reward", "continue", "actor", "critic", "total"]
    spec = EnvSpec((3, 64, 64), 3, num_actions=6)
    for row in rows:
        size = row[0].strip()
        assert (SIZES[size].deter, SIZES[size].depth, SIZES[size].units, SIZES[size].layers) == PAPER_SIZES[size]
        assert row[1].strip() == "{} / {} / {} x {}".format(*PAPER_SIZES[size])
        with torch.device("meta"):  # shapes only: XL's 200M parameters are never allocated
            counts = component_counts(size, spec)
        printed = [float(cell.strip().rstrip("M")) for cell in row[2:]]
        assert printed == pytest.approx([counts[c] / 1e6 for c in columns], abs=0.005), size
    # The independent anchor: sheeprl 0.8.4's dreamer_v3_S has 17.92M trained parameters for these spaces.
    assert float(rows[1][-1].strip().rstrip("M")) == 17.92


def test_layers_start_from_the_reference_truncated_normal_with_fan_avg_variance():
    """The 2023 code's initializer: Normal truncated at 2 std, variance 1 / mean(fan_in, fan_out)."""
    torch.manual_seed(0)
    hidden = mlp(300, 500, 1, 100)[0].weight  # fans 300 and 500: std sqrt(1 / 400) = 0.05
    assert hidden.std().item() == pytest.approx(0.05, rel=0.03)
    assert hidden.abs().max().item() <= 2 * 0.05 / 0.8796 + 1e-6  # truncated at two standard deviations
    conv = ConvEncoder(3, 32).net[0].weight  # (32, 3, 4, 4): fans 3 * 16 = 48 and 32 * 16 = 512
    assert conv.std().item() == pytest.approx((1 / 280) ** 0.5, rel=0.08)
    rssm = RSSM(embed_dim=1000, action_dim=4, deter=200, hidden=300)
    # The posterior's first layer reads [h, e] (fans 1200 and 300) though we split it in two Linears.
    for half in (rssm.post_deter.weight, rssm.post_embed.weight):
        assert half.std().item() == pytest.approx((1 / 750) ** 0.5, rel=0.05)
    assert not mlp(8, 16, 1, 4)[-1].bias.any()


def test_the_uniform_initializer_has_the_truncated_normals_variance_by_hand():
    """The 2023 code's ``winit: uniform`` (danijar/dreamerv3 8fa35f8, dreamerv3/nets.py lines 650-656):
    U(-limit, limit), limit = sqrt(3 scale / mean(fan_in, fan_out)), whose variance limit^2 / 3 is the
    truncated normal's scale / mean(fan_in, fan_out)."""
    torch.manual_seed(0)
    # Linear 300 -> 500 at scale 0.5: variance 0.5 / 400 = 0.00125, limit sqrt(0.00375) = 0.0612372.
    layer = init_weights_(torch.nn.Linear(300, 500), scale=0.5, dist="uniform")
    w = layer.weight
    assert w.abs().max().item() <= 0.0612372 + 1e-7
    assert w.abs().max().item() >= 0.999 * 0.0612372  # 150,000 draws reach the bound
    assert w.var().item() == pytest.approx(0.00125, rel=0.02)
    assert w.mean().item() == pytest.approx(0.0, abs=1e-4)
    # Flat: half the draws inside half the bound (a truncated normal of this variance puts 58% there).
    assert (w.abs() < 0.0612372 / 2).float().mean().item() == pytest.approx(0.5, abs=0.01)
    assert not layer.bias.any()
    # A transposed conv 64 -> 3, kernel 4: fans 64 x 16 = 1024 and 3 x 16 = 48, mean 536: limit sqrt(3 / 536).
    conv = init_weights_(torch.nn.ConvTranspose2d(64, 3, 4, 2, 1), dist="uniform").weight
    assert conv.abs().max().item() <= (3 / 536) ** 0.5 + 1e-7
    assert conv.abs().max().item() >= 0.99 * (3 / 536) ** 0.5
    assert conv.var().item() == pytest.approx(1 / 536, rel=0.08)
    # fans override: Linear 10 -> 4 initialised as if its fans were (10, 2): limit sqrt(3 / 6).
    assert init_weights_(torch.nn.Linear(10, 4), fans=(10, 2), dist="uniform").weight.abs().max().item() <= 0.5 ** 0.5
    # outscale 0 gives zeros, whatever the distribution (nets.py line 648).
    zero = init_weights_(torch.nn.Linear(10, 4), scale=0.0, dist="uniform")
    assert not zero.weight.any() and not zero.bias.any()
    with pytest.raises(ValueError):
        init_weights_(torch.nn.Linear(2, 2), dist="ortho")


@pytest.mark.parametrize("discrete", [True, False], ids=["discrete", "continuous"])
def test_exactly_the_layers_the_reference_builds_without_winit_start_uniform(discrete):
    """The reference's Linear and Conv2D default to ``winit: uniform`` (danijar/dreamerv3 8fa35f8,
    dreamerv3/nets.py lines 514 and 566); its configs set ``winit: normal`` on the hidden layers only.
    Uniform: the RSSM's logit layers ('_stats', line 144), the decoder's first Linear (line 365) and last
    transposed conv (lines 376-380), the continue head's and actor's outputs ('Dist' 'out', line 472);
    zeros (outscale 0): the reward and critic outputs. Every other layer is the truncated normal.

    A uniform draw stays inside sqrt(3 var) = 1.73 std and, over hundreds of draws, comes near it; a
    Normal truncated at 2 of its std (2.27 std of the draw) puts 9% of its draws beyond 1.73 std."""
    torch.manual_seed(0)
    agent = DreamerV3(size="XS")
    agent.build(EnvSpec((3, 64, 64), 3, num_actions=4) if discrete else EnvSpec((3, 64, 64), 3, action_dim=2))
    wm, rssm = agent.world_model, agent.world_model.rssm
    units, feat, depth = 256, 256 + 32 * 32, 24
    uniform = {  # layer: its fans by hand
        rssm.prior_net[-1]: (units, 1024), rssm.post_out[-1]: (units, 1024),
        wm.decoder.inp: (feat, 8 * depth * 4 * 4), wm.decoder.net[-1]: (depth * 16, 3 * 16),
        wm.continue_head[-1]: (units, 1),
        agent.actor.net[-1]: (units, 4) if discrete else (units, 2),  # mean and std: two layers of 2 outputs
    }
    zero = [wm.reward_head[-1], agent.critic.net[-1], agent.critic.slow[-1]]
    joint = (256 + rssm.post_embed.in_features, units)  # the posterior's first layer, split in two
    for name, layer in agent.named_modules():
        if not isinstance(layer, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            continue
        w = layer.weight
        if layer in zero:
            assert not w.any(), name
            continue
        receptive = w[0][0].numel()
        fan_in, fan_out = uniform.get(layer) or (joint if name.endswith(("post_deter", "post_embed")) else
                                                 (w.shape[1] * receptive, w.shape[0] * receptive))
        limit = (3 / ((fan_in + fan_out) / 2)) ** 0.5
        if layer in uniform:
            assert 0.9 * limit <= w.abs().max().item() <= limit + 1e-7, name
        else:
            assert w.abs().max().item() > limit, name
        assert layer.bias is None or not layer.bias.any(), name
    # Where the actor's joined output's fans matter: 4 inputs, 60 actions. Its halves have fans (4, 60),
    # limit sqrt(3 / 32) = 0.306; as one layer of fans (4, 120) the limit would be sqrt(3 / 62) = 0.22.
    from worldmodels.dreamer.behavior import Actor

    out = Actor(8, 60, discrete=False, units=4, layers=1).net[-1].weight
    assert 0.25 < out.abs().max().item() <= (3 / 32) ** 0.5 + 1e-7


def test_acting_step_by_step_and_observing_the_whole_sequence_give_the_same_posteriors(monkeypatch):
    # The stochastic latents are drawn in both paths; fixed to each distribution's mode, the two paths
    # must agree exactly: the same action aligned with each step (action[:, t] led to step t), the
    # same resets, the same embedding projection.
    from worldmodels.dreamer.rssm import RSSM
    from worldmodels.nets.distributions import straight_through_one_hot

    # Equal noise on every class: the Gumbel-max draw is the most likely class.
    monkeypatch.setattr(RSSM, "sample", staticmethod(
        lambda logits, gumbel=None: straight_through_one_hot(logits, torch.zeros_like(logits))))
    torch.manual_seed(0)
    agent = DreamerV3(size="XS", eval_policy="mode")
    agent.build(EnvSpec((3, 64, 64), 3, num_actions=4))
    T = 6
    obs = torch.randint(0, 255, (2, T, 3, 64, 64), dtype=torch.uint8)
    first = torch.zeros(2, T, dtype=torch.bool)
    first[:, 0] = True
    first[1, 3] = True  # environment 1 starts a new episode at step 3
    acted, actions, state = [], [], None
    with agent.acting():
        for t in range(T):
            action, state = agent.act(obs[:, t], state, first[:, t], explore=False)
            acted.append(state[0])
            actions.append(action)
        # The replay's convention: row t holds the action that led to it (zeros on a first frame).
        led_to = torch.stack([torch.zeros_like(actions[0])] + actions[:-1], 1)
        embed = agent.world_model.encoder(obs.flatten(0, 1)).unflatten(0, (2, T))
        observed, _ = agent.world_model.rssm.observe(embed, agent.action_vectors(led_to), first)
    for t in range(T):
        torch.testing.assert_close(observed.deter[:, t], acted[t].deter, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(observed.logits[:, t], acted[t].logits, atol=1e-5, rtol=1e-5)


def test_the_actor_loss_is_reinforce_on_scaled_lambda_returns_with_discounted_weights_and_entropy_by_hand():
    # Planted: every imagined reward 1, every continue flag 1, the critic's zero-initialised head (values
    # 0), and an actor whose output layer is zeroed: a uniform policy over 2 actions, so log pi(a) =
    # -log 2 whatever action is drawn and the entropy is log 2. Horizon 3, gamma 0.9, lambda 0.5:
    #   R_2 = 1 + 0.9 (0.5 * 0 + 0.5 * v_3) = 1;  R_1 = 1 + 0.45 * 1 = 1.45;  R_0 = 1 + 0.45 * 1.45 = 1.6525
    # The return scale is max(1, EMA range) = 1 (the EMA starts at 0: 0.01 x the range 0.6525).
    # Weights: cumprod(gamma * cont) / gamma = 1, 0.9, 0.81. With entropy_coef 0.1:
    #   loss = -mean_t w_t (log pi(a_t) R_t + 0.1 H)
    #        = -(1 (-1.145425 + 0.069315) + 0.9 (-1.005063 + 0.069315) + 0.81 (-0.693147 + 0.069315)) / 3
    #        = 0.807863
    from types import SimpleNamespace

    from worldmodels.dreamer.behavior import Actor, Critic, behavior_losses

    torch.manual_seed(0)
    rssm = RSSM(embed_dim=4, action_dim=2, deter=8, hidden=8, stoch=2, classes=2)
    feat_dim = 8 + 2 * 2
    world_model = SimpleNamespace(
        rssm=rssm, reward=lambda feat: torch.ones(feat.shape[:-1]),
        continue_head=lambda feat: torch.full((*feat.shape[:-1], 1), 10.0))
    actor = Actor(feat_dim, 2, discrete=True, units=8, layers=1)
    torch.nn.init.zeros_(actor.net[-1].weight)
    torch.nn.init.zeros_(actor.net[-1].bias)
    critic = Critic(feat_dim, units=8, layers=1)
    actor_loss, _, metrics = behavior_losses(world_model, actor, critic, ReturnScale(), rssm.initial(5),
                                             torch.ones(5),
                                             BehaviorConfig(horizon=3, gamma=0.9, lam=0.5, entropy_coef=0.1))
    assert metrics["actor/return_scale"].item() == 1.0
    assert metrics["imagined/return"].item() == pytest.approx((1.6525 + 1.45 + 1.0) / 3, abs=1e-5)
    assert actor_loss.item() == pytest.approx(0.807863, abs=1e-5)


def test_the_world_model_loss_adds_its_terms_with_the_papers_scales_by_hand():
    # Planted: the decoder's and the continue head's output layers zeroed (image 0, continue logit 0),
    # the reward head zero-initialised as built (uniform over its 255 bins), white frames, and free
    # bits far above any KL so both KL terms sit at their clip. Per step:
    #   image    sum over 3x64x64 pixels of (0 - (255/255 - 0.5))^2 = 12288 x 0.25 = 3072
    #   reward   cross-entropy of a two-hot target against uniform bins = log 255 = 5.541264
    #   continue binary cross-entropy at logit 0 = log 2 = 0.693147
    #   KL       0.5 x 1000 (dynamics) + 0.1 x 1000 (representation) = 600
    agent = DreamerV3(size="XS")
    agent.build(EnvSpec((3, 64, 64), 3, num_actions=4))
    wm = agent.world_model
    for layer in (wm.decoder.net[-1], wm.continue_head[-1]):
        torch.nn.init.zeros_(layer.weight)
        torch.nn.init.zeros_(layer.bias)
    B, T = 2, 5
    obs = torch.full((B, T, 3, 64, 64), 255, dtype=torch.uint8)
    first = torch.zeros(B, T, dtype=torch.bool)
    first[:, 0] = True
    loss, _, metrics = wm.loss(obs, torch.zeros(B, T, 4), torch.randn(B, T), torch.zeros(B, T, dtype=torch.bool),
                               first, free_nats=1000.0, dyn_scale=0.5, rep_scale=0.1)
    assert metrics["wm/image_loss"].item() == pytest.approx(3072.0, rel=1e-6)
    assert metrics["wm/reward_loss"].item() == pytest.approx(5.541264, abs=1e-4)
    assert metrics["wm/continue_loss"].item() == pytest.approx(0.693147, abs=1e-6)
    assert loss.item() == pytest.approx(3072.0 + 5.541264 + 0.693147 + 600.0, rel=1e-6)


@pytest.mark.parametrize("discrete", [True, False])
def test_continuous_actors_learn_through_the_imagined_dynamics_and_discrete_ones_by_reinforce(discrete):
    # Continuous actions: the actor's loss is the (scaled) lambda-return itself, differentiated through
    # the imagined states, so the dynamics carry its gradient. Discrete: REINFORCE, no such path.
    from types import SimpleNamespace

    from worldmodels.dreamer.behavior import Actor, Critic, behavior_losses

    torch.manual_seed(0)
    rssm = RSSM(embed_dim=4, action_dim=2, deter=8, hidden=8, stoch=2, classes=2)
    reward_net = torch.nn.Linear(12, 1)
    world_model = SimpleNamespace(rssm=rssm, reward=lambda feat: reward_net(feat).squeeze(-1),
                                  continue_head=lambda feat: torch.full((*feat.shape[:-1], 1), 10.0))
    actor = Actor(12, 2, discrete=discrete, units=8, layers=1)
    actor_loss, _, _ = behavior_losses(world_model, actor, Critic(12, units=8, layers=1), ReturnScale(),
                                       rssm.initial(4), torch.ones(4), BehaviorConfig(horizon=3))
    actor_loss.backward()
    assert actor.net[0].weight.grad.abs().sum() > 0
    through_dynamics = rssm.img_in[0].weight.grad
    if discrete:
        assert through_dynamics is None and reward_net.weight.grad is None
    else:
        assert through_dynamics.abs().sum() > 0 and reward_net.weight.grad.abs().sum() > 0
