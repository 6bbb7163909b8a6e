"""The value-based learner (configs nddqn/drq/der/alix_atari) against hand-computed values: targets,
C51's projection, noisy layers, prioritized sampling, the networks' sizes, the exact shortcut with a
target synced every update, and its one-sentence errors."""

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from model_free import Rainbow
from model_free.exploration import linearly_decaying_epsilon
from worldmodels.errors import ConfigError
from worldmodels.nets import (NatureCNN, NoisyLinear, categorical_projection, make_support, noise_forced,
                              quantile_huber_loss)
from worldmodels.replay import PrioritizedTransitionView, Replay
from worldmodels.training import EnvSpec
from worldmodels.training.optim import TFRMSprop

ATARI = EnvSpec((4, 84, 84), 1, num_actions=6)
ROOT = Path(__file__).resolve().parent.parent


def shipped(config: str) -> dict:
    """The learner's settings in a shipped config (what differs from the class defaults, DER's)."""
    return yaml.safe_load((ROOT / "configs" / f"{config}_atari.yaml").read_text())["model"].get("init_args") or {}


PRESETS = {"dqn": shipped("dqn"), "nddqn": shipped("nddqn"), "drq_eps": shipped("drq"), "der": shipped("der"),
           "alix": shipped("alix")}


def logits(values):
    """(B, A) Q-values as (B, A, 1) logits of a non-distributional learner."""
    return torch.tensor(values)[..., None]


# ------------------------------------------------------------------------------ targets
def test_double_q_target_picks_the_online_argmax_and_evaluates_it_with_the_target_net():
    agent = Rainbow(**PRESETS["nddqn"])
    next_online = logits([[1.0, 5.0, 2.0], [0.0, -1.0, 3.0]])
    next_target = logits([[10.0, 20.0, 30.0], [7.0, 8.0, 9.0]])
    reward, discount = torch.tensor([1.0, 0.5]), torch.tensor([0.9, 0.0])  # the second ends in a terminal
    chosen = logits([[2.0], [0.0]])[:, 0]
    loss, target = agent.td_loss(chosen, next_online, next_target, reward, discount)
    # Online argmax: action 1 (Q_target 20) and action 2 (Q_target 9, but discount 0).
    assert target.tolist() == pytest.approx([1.0 + 0.9 * 20.0, 0.5])
    # Huber: |2 - 19| = 17 -> 16.5 (linear part); |0 - 0.5| = 0.5 -> 0.5 * 0.25 (quadratic part).
    assert loss.tolist() == pytest.approx([16.5, 0.125])
    # Without double Q, the target net chooses (30) as well as evaluates.
    single = Rainbow(**{**PRESETS["nddqn"], "double": False})
    assert single.td_loss(chosen, next_online, next_target, reward, discount)[1][0].item() == pytest.approx(28.0)


def test_epsilon_is_one_during_warmup_then_decays_linearly_to_its_floor():
    eps = lambda step: linearly_decaying_epsilon(step, warmup_steps=1600, decay_steps=5000, final=0.1)
    assert eps(0) == 1.0 and eps(1600) == pytest.approx(1.0)
    assert eps(1600 + 2500) == pytest.approx(0.55)
    assert eps(1600 + 5000) == pytest.approx(0.1) and eps(100_000) == pytest.approx(0.1)


def test_noisy_agents_explore_with_noise_only_and_warm_up_with_their_own_policy():
    der, nddqn = Rainbow(), Rainbow(**PRESETS["nddqn"])
    assert der.epsilon(explore=True) == 0.0 and der.epsilon(explore=False) == 0.001  # Dopamine's zero_epsilon
    assert not der.random_warmup and nddqn.random_warmup


def test_alix_atari_warms_up_with_random_actions_as_its_table_7_says():
    assert Rainbow(**PRESETS["alix"]).random_warmup  # "random exploration steps 1600", although noisy
    assert PRESETS["drq_eps"]["augment_crop"] == "batch"  # the 2021 code of the published DrQ(eps) runs


# ------------------------------------------------------------------------------ C51
SUPPORT = make_support(3, -1.0, 1.0)  # atoms -1, 0, 1


def test_c51_projection_splits_each_shifted_atom_between_its_two_neighbours():
    # r = 0.5, gamma^n = 0.5: atoms move to 0, 0.5, 1. Mass 0.2 stays on 0; 0.3 splits 0.15 / 0.15 between 0 and 1.
    out = categorical_projection(SUPPORT, torch.tensor([[0.2, 0.3, 0.5]]), torch.tensor([0.5]), torch.tensor([0.5]))
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.35, 0.65]]))


def test_c51_projection_after_a_terminal_puts_all_mass_at_the_reward():
    # discount 0: every atom lands on r = -0.3, 0.3 of the way from 0 to -1.
    out = categorical_projection(SUPPORT, torch.tensor([[0.2, 0.3, 0.5]]), torch.tensor([-0.3]), torch.tensor([0.0]))
    torch.testing.assert_close(out, torch.tensor([[0.3, 0.7, 0.0]]))


def test_c51_projection_clips_atoms_beyond_v_max():
    # r = 1.5, gamma^n = 0.9: atoms move to 0.6, 1.5, 2.4 -> clipped to 0.6, 1, 1. 0.2 splits 0.08 / 0.12.
    out = categorical_projection(SUPPORT, torch.tensor([[0.2, 0.3, 0.5]]), torch.tensor([1.5]), torch.tensor([0.9]))
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.08, 0.92]]))


def test_distributional_loss_is_the_cross_entropy_to_the_projected_target():
    agent = Rainbow(num_atoms=3, v_min=-1.0, v_max=1.0)
    next_logits = torch.log(torch.tensor([[[0.2, 0.3, 0.5]]]))  # one action
    chosen = torch.zeros(1, 3)  # uniform prediction
    loss, value = agent.td_loss(chosen, next_logits, next_logits, torch.tensor([0.5]), torch.tensor([0.5]))
    assert loss.item() == pytest.approx(np.log(3))  # -sum_i m_i log(1/3)
    assert value.item() == pytest.approx(0.65)  # 0 * 0.35 + 1 * 0.65


# ------------------------------------------------------------------------------ QR-DQN
def test_quantile_huber_loss_sums_over_the_online_quantiles_and_averages_over_the_target_ones_by_hand():
    # Two online quantiles at tau = 0.25, 0.75; three target samples. u_ij = target_j - theta_i; kappa 1:
    # L(u) = u^2 / 2 if |u| <= 1 else |u| - 1/2; rho_ij = |tau_i - 1{u_ij < 0}| L(u_ij).
    # Row 1, theta = (0, 2), target = (1, -1, 2):
    #   i = 1 (tau 0.25): u = 1, -1, 2 -> L = 0.5, 0.5, 1.5; weights 0.25, 0.75, 0.25 -> 0.125 + 0.375 + 0.375 = 0.875
    #   i = 2 (tau 0.75): u = -1, -3, 0 -> L = 0.5, 2.5, 0; weights 0.25, 0.25, 0.75 -> 0.125 + 0.625 + 0 = 0.75
    #   sum_i mean_j = 0.875 / 3 + 0.75 / 3 = 13/24 (mean_i sum_j would be 0.8125; mean over both 13/48).
    # Row 2, theta = (1, 1), target = (3, 1, 1): only u = 2 (j = 1) counts, L = 1.5:
    #   i = 1: 0.25 x 1.5 / 3 = 0.125; i = 2: 0.75 x 1.5 / 3 = 0.375 -> 0.5. An underestimate weighs tau.
    theta = torch.tensor([[0.0, 2.0], [1.0, 1.0]], requires_grad=True)
    target = torch.tensor([[1.0, -1.0, 2.0], [3.0, 1.0, 1.0]])
    loss = quantile_huber_loss(theta, target)
    assert loss.tolist() == pytest.approx([13 / 24, 0.5])
    # d rho_ij / d theta_i = -|tau_i - 1{u < 0}| clip(u, -1, 1). Row 1: i = 1: -(0.25 - 0.75 + 0.25) / 3 = 1/12;
    # i = 2: -(-0.25 - 0.25 + 0) / 3 = 1/6. Row 2: i = 1: -0.25 / 3; i = 2: -0.75 / 3.
    loss.sum().backward()
    torch.testing.assert_close(theta.grad, torch.tensor([[1 / 12, 1 / 6], [-0.25 / 3, -0.75 / 3]]))
    # kappa 2: u = 2 is still quadratic there, L = 2 (not divided by kappa, as the reference):
    # row 2 = 0.25 x 2 / 3 + 0.75 x 2 / 3 = 2/3.
    assert quantile_huber_loss(theta[1:].detach(), target[1:], kappa=2.0).item() == pytest.approx(2 / 3)


def test_quantile_head_q_value_is_the_quantiles_mean_and_its_target_every_quantile_of_a_star():
    agent = Rainbow(num_quantiles=2, double=False)
    assert agent.head == "quantile" and not hasattr(agent, "support")
    quantiles = torch.tensor([[[0.0, 4.0], [1.0, 2.0]]])  # (B 1, A 2, N 2): Q = 2 and 1.5
    assert agent.q_values(quantiles).tolist() == [[2.0, 1.5]]
    # a* = action 0 (the target net's larger mean, no double Q); r = 1, gamma^n = 0.5: target (1, 3).
    # theta = (0, 2): i = 1 (tau 0.25): u = 1, 3 -> 0.25 x (0.5 + 2.5) / 2 = 0.375;
    #                 i = 2 (tau 0.75): u = -1, 1 -> (0.25 x 0.5 + 0.75 x 0.5) / 2 = 0.25; loss 0.625.
    chosen, reward, discount = torch.tensor([[0.0, 2.0]]), torch.tensor([1.0]), torch.tensor([0.5])
    next_online = torch.tensor([[[0.0, 0.0], [5.0, 5.0]]])  # the online net prefers action 1
    loss, value = agent.td_loss(chosen, next_online, quantiles, reward, discount)
    assert loss.item() == pytest.approx(0.625) and value.item() == pytest.approx(2.0)  # mean of (1, 3)
    # Double Q picks a* = 1 with the online net: target 1 + 0.5 x (1, 2) = (1.5, 2), its mean 1.75.
    double = Rainbow(num_quantiles=2, double=True)
    assert double.td_loss(chosen, next_online, quantiles, reward, discount)[1].item() == pytest.approx(1.75)
    # After a terminal (discount 0) every target quantile is the reward.
    assert agent.td_loss(chosen, next_online, quantiles, reward, torch.zeros(1))[1].item() == pytest.approx(1.0)


def random_replay() -> Replay:
    """60 steps of random 44 px frames, actions and rewards: one episode of 1-channel frames."""
    replay = Replay(200, frame_stack=1, frame_channels=1)
    rng = np.random.default_rng(0)
    for t in range(60):
        replay.add(rng.integers(0, 255, (1, 1, 44, 44), dtype=np.uint8), rng.integers(0, 3, 1), rng.random(1, np.float32),
                   np.zeros(1, bool), np.zeros(1, bool), np.array([t == 0]))
    return replay


def test_a_training_step_with_the_quantile_head_writes_each_samples_quantile_loss_as_its_priority():
    torch.manual_seed(0)
    agent = Rainbow(num_quantiles=8, hidden=32)  # DER otherwise: noisy, dueling, prioritized, a target net
    agent.build(EnvSpec((1, 44, 44), 1, num_actions=3))
    assert agent.q(torch.zeros(2, 1, 44, 44, dtype=torch.uint8)).shape == (2, 3, 8)
    batch = agent.view.sample(random_replay())
    losses, metrics = [], {}
    optimizer = agent.configure_optimizers()
    agent.optimizers, agent.log_scalars = (lambda: optimizer), metrics.update
    agent.manual_backward = lambda loss: loss.backward()
    original = agent.td_loss
    agent.td_loss = lambda *args: (lambda out: (losses.append(out[0].detach()), out)[1])(original(*args))
    agent.training_step(batch, 0)
    assert losses[0].shape == (32,) and bool((losses[0] > 0).all())
    t, env = batch["index"]
    torch.testing.assert_close(agent.view.priority[t, env].float(), losses[0] + 1e-10)
    assert torch.isfinite(metrics["train/q_mean"]) and torch.isfinite(metrics["train/target_mean"])
    # The health checks read Q through q_values: under QR-DQN the quantiles' mean, in evaluation mode.
    agent.td_loss = original
    health_batch = {k: batch[k] for k in ("obs", "next_obs", "action", "reward", "discount")}
    health_batch |= {"mc_return": torch.zeros(32), "mc_valid": torch.ones(32, dtype=torch.bool)}
    out = agent.health(health_batch)
    with agent.acting():
        q = agent.q(batch["obs"]).mean(-1)[torch.arange(32), batch["action"]]
    assert out["q_mean"].item() == pytest.approx(q.mean().item(), rel=1e-5)
    assert out["td_loss"] > 0 and torch.isfinite(torch.as_tensor(out["nd_score"]))


# ------------------------------------------------------------------------------ noisy layers
def test_noisy_linear_initialises_sigma_to_sigma0_over_sqrt_fan_in_and_mu_within_its_bound():
    layer = NoisyLinear(16, 3, sigma0=0.1)
    assert torch.all(layer.weight_sigma == 0.1 / 4) and torch.all(layer.bias_sigma == 0.1 / 4)
    assert layer.weight_mu.abs().max() <= 1 / 4 and layer.bias_mu.abs().max() <= 1 / 4


def test_noisy_linear_uses_factorised_noise_in_training_and_its_mean_in_evaluation():
    layer = NoisyLinear(4, 2)
    x = torch.randn(5, 4)
    torch.manual_seed(3)
    out = layer(x)
    torch.manual_seed(3)  # the same two draws, by hand: f(e) = sign(e) sqrt|e|
    f = lambda e: e.sign() * e.abs().sqrt()
    eps_in, eps_out = f(torch.randn(4)), f(torch.randn(2))
    weight = layer.weight_mu + layer.weight_sigma * torch.outer(eps_out, eps_in)
    torch.testing.assert_close(out, x @ weight.T + layer.bias_mu + layer.bias_sigma * eps_out)
    assert not torch.equal(layer(x), out)  # fresh noise every forward
    big = torch.randn(16, 4)  # batches of 8 or more build the noisy weight; smaller ones factorise the product
    torch.manual_seed(4)
    out = layer(big)
    torch.manual_seed(4)
    eps_in, eps_out = f(torch.randn(4)), f(torch.randn(2))
    weight = layer.weight_mu + layer.weight_sigma * torch.outer(eps_out, eps_in)
    torch.testing.assert_close(out, big @ weight.T + layer.bias_mu + layer.bias_sigma * eps_out)
    layer.eval()
    torch.testing.assert_close(layer(x), x @ layer.weight_mu.T + layer.bias_mu)
    assert torch.equal(layer(x), layer(x))
    with noise_forced(layer, True):  # exploring while acting: noise on in evaluation mode
        assert not torch.equal(layer(x), layer(x))


# ------------------------------------------------------------------------------ prioritized replay
def filled_replay(steps=12):
    replay = Replay(100, frame_stack=1, frame_channels=1)
    for t in range(steps):
        replay.add(np.full((1, 1, 2, 2), t, np.uint8), np.zeros(1, np.int64), np.ones(1, np.float32),
                   np.zeros(1, bool), np.zeros(1, bool), np.array([t == 0]))
    return replay


def test_prioritized_sampling_is_proportional_to_priority_to_the_alpha():
    replay = filled_replay()
    view = PrioritizedTransitionView(batch_size=4000, n_step=1, gamma=0.9, alpha=0.5, beta=1.0)
    view.admit_new_rows(replay)
    view.priority.zero_()
    view.priority[[2, 3, 5, 7], 0] = torch.tensor([1.0, 4.0, 9.0, 16.0], dtype=torch.float64)
    batch, (t, _) = view.sample_indexed(replay, torch.Generator().manual_seed(0))
    # p^0.5 = 1, 2, 3, 4 of 10: P = 0.1, 0.2, 0.3, 0.4 (4000 draws: one standard error is below 0.008).
    shares = [(t == row).float().mean().item() for row in (2, 3, 5, 7)]
    assert shares == pytest.approx([0.1, 0.2, 0.3, 0.4], abs=0.03)
    # beta = 1: w = (1/P) / max(1/P) = 0.1 / P, i.e. 1, 0.5, 1/3, 1/4.
    expected = {2: 1.0, 3: 0.5, 5: 1 / 3, 7: 0.25}
    assert batch["weight"].tolist() == pytest.approx([expected[int(row)] for row in t])


def test_importance_weights_at_beta_one_half_and_annealing_to_one():
    replay = filled_replay()
    view = PrioritizedTransitionView(batch_size=500, n_step=1, gamma=0.9, alpha=1.0, beta=0.5, beta_steps=2)
    view.admit_new_rows(replay)
    view.priority.zero_()
    view.priority[[4, 6], 0] = torch.tensor([1.0, 4.0], dtype=torch.float64)  # P = 0.2, 0.8
    batch, (t, _) = view.sample_indexed(replay)
    # beta 0.5: w = sqrt(0.2 / P): 1 for P 0.2 and 0.5 for P 0.8.
    assert batch["weight"][t == 4].unique().tolist() == pytest.approx([1.0])
    assert batch["weight"][t == 6].unique().tolist() == pytest.approx([0.5])
    assert view.current_beta() == pytest.approx(0.75)  # one of two annealing samples done
    view.sample_indexed(replay)
    assert view.current_beta() == 1.0


def test_new_rows_enter_at_the_largest_priority_and_updates_set_the_loss():
    replay = filled_replay()
    view = PrioritizedTransitionView(batch_size=8, n_step=1, gamma=0.9)
    batch, _ = view.sample_indexed(replay)
    assert torch.all(view.priority[:12, 0] == 1.0)  # the initial largest priority
    view.update_priorities(torch.tensor([[3, 4], [0, 0]]), torch.tensor([2.5, 0.5]))
    assert view.priority[3, 0].item() == pytest.approx(2.5) and view.priority[4, 0].item() == pytest.approx(0.5)
    for t in range(12, 14):
        replay.add(np.full((1, 1, 2, 2), t, np.uint8), np.zeros(1, np.int64), np.ones(1, np.float32),
                   np.zeros(1, bool), np.zeros(1, bool), np.array([False]))
    view.sample_indexed(replay)
    assert view.priority[12, 0].item() == pytest.approx(2.5) and view.priority[13, 0].item() == pytest.approx(2.5)


def test_a_training_step_writes_each_samples_loss_as_its_priority():
    torch.manual_seed(0)
    agent = Rainbow()
    agent.build(EnvSpec((1, 44, 44), 1, num_actions=3))
    batch = agent.view.sample(random_replay())
    losses = []
    optimizer = agent.configure_optimizers()
    agent.optimizers, agent.log_scalars = (lambda: optimizer), (lambda metrics: None)
    agent.manual_backward = lambda loss: loss.backward()
    original = agent.td_loss
    agent.td_loss = lambda *args: (lambda out: (losses.append(out[0].detach()), out)[1])(original(*args))
    agent.training_step(batch, 0)
    t, env = batch["index"]
    torch.testing.assert_close(agent.view.priority[t, env].float(), losses[0] + 1e-10)


# ------------------------------------------------------------------------------ networks
def test_dopamines_same_padded_network_has_7744_features_and_the_nature_network_3136():
    assert NatureCNN(4, 84, "same").out_dim == 64 * 11 * 11 == 7744
    assert NatureCNN(4, 84, "valid").out_dim == 64 * 7 * 7 == 3136
    agent = Rainbow(**PRESETS["nddqn"])
    agent.build(ATARI)
    assert agent.q.hidden.in_features == 7744 and agent.q.hidden.out_features == 512  # ONE shared Dense 512
    assert agent.q.advantage.in_features == 512 and agent.q.value.in_features == 512
    assert agent.q(torch.zeros(2, 4, 84, 84, dtype=torch.uint8)).shape == (2, 6, 1)


def test_der_network_is_noisy_and_distributional_and_alix_uses_its_small_encoder_with_one_mixing_layer():
    der = Rainbow()
    der.build(ATARI)
    assert isinstance(der.q.hidden, NoisyLinear) and der.q(torch.zeros(1, 4, 84, 84, dtype=torch.uint8)).shape == (1, 6, 51)
    alix = Rainbow(**PRESETS["alix"])
    alix.build(ATARI)
    assert alix.q.encoder.feature_shape == (32, 37, 37) and alix.q.encoder.out_dim == 50
    assert alix.q.hidden.out_features == 256
    from worldmodels.regularizers import LocalSignalMixing
    mixes = [m for m in alix.modules() if isinstance(m, LocalSignalMixing)]
    assert len(mixes) == 2 and all(m.strength is alix.alix_strength for m in mixes)  # online and target
    assert alix.alix_strength.value.item() == 1.0 and alix.hparams.alix_target_nd == 0.75


def test_tensorflow_rmsprop_two_steps_by_hand():
    # lr 0.1, decay 0.9, eps 0.01, g = 2 twice; ms starts at 1, mg at 0.
    # Step 1: ms = 0.9 + 0.4 = 1.3, mg = 0.2, p = 1 - 0.1 * 2 / sqrt(1.3 - 0.04 + 0.01) = 0.822529.
    # Step 2: ms = 1.17 + 0.4 = 1.57, mg = 0.18 + 0.2 = 0.38, p -= 0.2 / sqrt(1.57 - 0.1444 + 0.01) -> 0.655607.
    p = torch.nn.Parameter(torch.tensor([1.0]))
    optimizer = TFRMSprop([p], lr=0.1, decay=0.9, eps=0.01)
    for expected in (0.822529, 0.655607):
        p.grad = torch.tensor([2.0])
        optimizer.step()
        assert p.item() == pytest.approx(expected, abs=1e-6)
    plain = torch.nn.Parameter(torch.tensor([1.0]))  # not centred: sqrt(1.3 + 0.01)
    optimizer = TFRMSprop([plain], lr=0.1, decay=0.9, eps=0.01, centered=False)
    plain.grad = torch.tensor([2.0])
    optimizer.step()
    assert plain.item() == pytest.approx(1 - 0.2 / 1.31 ** 0.5, abs=1e-6)


def test_dqn_bootstraps_from_a_frozen_target_network_copied_every_10k_env_steps():
    torch.manual_seed(0)
    agent = Rainbow(**PRESETS["dqn"])
    agent.build(EnvSpec((1, 44, 44), 1, num_actions=3))
    assert agent.sync_every == 2500  # 10000 env steps at one update every 4
    assert agent.hparams.n_step == 1 and agent.q.value is None and agent.q.encoder.out_dim == 64 * 2 * 2  # VALID
    batch = {"obs": torch.randint(0, 256, (8, 1, 44, 44), dtype=torch.uint8),
             "next_obs": torch.randint(0, 256, (8, 1, 44, 44), dtype=torch.uint8),
             "action": torch.randint(0, 3, (8,)), "reward": torch.randn(8), "discount": torch.full((8,), 0.99)}
    frozen = copy.deepcopy(agent.q_target.state_dict())
    optimizer = agent.configure_optimizers()
    agent.optimizers, agent.log_scalars = (lambda: optimizer), (lambda metrics: None)
    agent.manual_backward = lambda loss: loss.backward()
    for update in (1, 2, 2499):
        agent.counters.updates = update
        agent.training_step(batch, 0)
        assert all(torch.equal(v, frozen[k]) for k, v in agent.q_target.state_dict().items())
    # The target: r + gamma max_a Q_target(s', a) of the frozen net (no double Q), not of the online net.
    online, target, _ = agent.next_state_logits(batch["next_obs"])
    _, value = agent.td_loss(torch.zeros(8, 1), online, target, batch["reward"], batch["discount"])
    with torch.no_grad():
        expected = batch["reward"] + 0.99 * agent.q_target(batch["next_obs"])[..., 0].max(-1).values
    torch.testing.assert_close(value, expected)
    assert not torch.allclose(online, target)
    agent.counters.updates = 2500
    agent.training_step(batch, 0)
    assert all(torch.equal(v, agent.q.state_dict()[k]) for k, v in agent.q_target.state_dict().items())


def test_the_target_is_synced_every_period_of_env_steps_counted_in_updates():
    assert Rainbow(**PRESETS["nddqn"]).sync_every == 1  # the online net itself: no copy kept
    assert Rainbow().sync_every == 2000
    assert Rainbow(**PRESETS["alix"]).sync_every == 2  # two updates per env step, synced once per env step


# ------------------------------------------------------------------------------ the exact shortcut
def one_update(agent, batch):
    """Loss and gradients of one training step on ``batch`` (parameters left as they were)."""
    optimizer = agent.configure_optimizers()
    optimizer.step = lambda: None  # keep the parameters: compare gradients
    agent.optimizers, agent.log_scalars = (lambda: optimizer), (lambda metrics: None)
    losses = []
    agent.manual_backward = lambda loss: (losses.append(loss.detach()), loss.backward())
    agent.training_step(batch, 0)
    return losses[0], {name: p.grad.clone() for name, p in agent.q.named_parameters()}


def atari_batch(b=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"obs": torch.randint(0, 256, (b, 4, 84, 84), dtype=torch.uint8, generator=g),
            "next_obs": torch.randint(0, 256, (b, 4, 84, 84), dtype=torch.uint8, generator=g),
            "action": torch.randint(0, 6, (b,), generator=g), "reward": torch.randn(b, generator=g),
            "discount": torch.full((b,), 0.9)}


@pytest.mark.parametrize("preset", ["nddqn", "drq_eps"])
def test_a_target_synced_every_update_gives_the_same_loss_and_gradients_as_a_separate_target_net(preset):
    torch.manual_seed(0)
    fast = Rainbow(**PRESETS[preset])
    fast.build(ATARI)
    assert not hasattr(fast, "q_target")  # the shortcut: one pass of s' serves argmax and evaluation
    # The straightforward computation: a target net copied from the online net, its own pass of s'.
    slow = Rainbow(**{**PRESETS[preset], "target_update_period": 2})
    slow.build(ATARI)
    slow.q.load_state_dict(fast.q.state_dict())
    slow.q_target = copy.deepcopy(fast.q)
    batch = atari_batch()
    torch.manual_seed(1)  # the same augmentation draws
    fast_loss, fast_grads = one_update(fast, batch)
    torch.manual_seed(1)
    slow_loss, slow_grads = one_update(slow, batch)
    assert torch.equal(fast_loss, slow_loss)
    assert all(torch.equal(fast_grads[name], slow_grads[name]) for name in fast_grads)


def test_online_and_target_passes_of_s_prime_share_one_noise_draw_as_dopamine_does():
    torch.manual_seed(0)
    agent = Rainbow()  # noisy, target every 2000 updates: just synced, so the nets are equal
    agent.build(ATARI)
    agent.train()
    online, target, _ = agent.next_state_logits(atari_batch()["next_obs"])
    assert torch.equal(online, target)


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("kwargs, key", [
    (dict(encoder="resnet"), "model.encoder"),
    (dict(num_atoms=0), "model.num_atoms"),
    (dict(num_quantiles=-1), "model.num_quantiles"),
    (dict(num_atoms=51, v_min=10.0, v_max=10.0), "model.v_min"),
    (dict(priority_alpha=1.5), "model.priority_alpha"),
    (dict(priority_beta=-0.1), "model.priority_beta"),
    (dict(update_period=0), "model.update_period is 0"),
    (dict(optimizer="sgd"), "model.optimizer"),
])
def test_bad_settings_are_refused_with_one_sentence_naming_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        Rainbow(**kwargs)


def test_alix_on_an_encoder_without_a_feature_map_to_mix_is_refused():
    agent = Rainbow(encoder="nature_valid", alix=True)
    with pytest.raises(ConfigError, match="model.alix needs a conv feature map of at least 3x3"):
        agent.build(EnvSpec((1, 36, 36), 1, num_actions=3))  # 36 -> 8 -> 3 -> 1


def test_the_health_batch_of_a_prioritized_learner_leaves_its_priorities_alone():
    from worldmodels.training.health import held_batch

    agent = Rainbow()
    agent.build(EnvSpec((1, 2, 2), 1, num_actions=3))
    replay = filled_replay()
    agent.view.sample_indexed(replay)
    agent.view.update_priorities(torch.tensor([[3], [0]]), torch.tensor([7.0]))
    before, admitted = agent.view.priority.clone(), agent.view.admitted
    for t in range(12, 15):  # rows the learner's view has not admitted yet
        replay.add(np.full((1, 1, 2, 2), t, np.uint8), np.zeros(1, np.int64), np.ones(1, np.float32),
                   np.zeros(1, bool), np.zeros(1, bool), np.array([False]))
    batch = held_batch(agent, replay, torch.Generator().manual_seed(0), transitions=16)
    assert "weight" not in batch  # drawn uniformly
    assert torch.equal(agent.view.priority, before) and agent.view.admitted == admitted


def test_cql_adds_alpha_times_the_penalty_on_the_online_q_values_of_the_batch():
    torch.manual_seed(0)
    plain = Rainbow(**PRESETS["nddqn"])
    plain.build(ATARI)
    conservative = Rainbow(**{**PRESETS["nddqn"], "cql_alpha": 0.5})
    conservative.build(ATARI)
    conservative.q.load_state_dict(plain.q.state_dict())
    batch = atari_batch()
    plain_loss, _ = one_update(plain, batch)
    conservative_loss, _ = one_update(conservative, batch)
    with torch.no_grad():  # the penalty by its definition, on the same network and batch
        q = plain.q_values(plain.q(batch["obs"]))
        penalty = (torch.logsumexp(q, -1) - q[torch.arange(8), batch["action"]]).mean()
    torch.testing.assert_close(conservative_loss, plain_loss + 0.5 * penalty)


def test_vib_adds_beta_times_the_mean_kl_of_the_bottleneck_and_acts_on_its_mean():
    agent = Rainbow(**{**PRESETS["nddqn"], "vib_beta": 0.1})
    agent.build(ATARI)
    batch = atari_batch()
    with torch.no_grad():  # the KL by its definition, from the penultimate ReLU features of s
        phi = torch.relu(agent.q.hidden(agent.q.encoder(batch["obs"])))
        mean, log_var = agent.q.bottleneck.mean(phi), agent.q.bottleneck.log_var(phi).clamp(-10, 10)
        kl = 0.5 * (mean ** 2 + log_var.exp() - log_var - 1).sum(-1).mean()
    torch.manual_seed(1)
    loss, _ = one_update(agent, batch)  # parameters kept; then the same step again, its metrics read
    metrics = {}
    agent.log_scalars = metrics.update
    torch.manual_seed(1)  # the same bottleneck draws
    agent.training_step(batch, 0)
    assert metrics["train/vib_kl"].item() == pytest.approx(kl.item(), rel=1e-5)
    assert loss.item() == pytest.approx((metrics["train/td_loss"] + 0.1 * metrics["train/vib_kl"]).item(), rel=1e-5)
    with agent.acting():  # acting reads the mean: no draw, the same action twice
        assert torch.equal(agent.q(batch["obs"]), agent.q(batch["obs"]))


def test_a_checkpoint_that_keeps_the_priorities_in_the_agents_part_restores_them():
    """Checkpoints keep the priorities in the loop's state (``Experience``'s ``view``), beside each
    process's replay; those written before kept them under the agent's ``replay_priorities``."""
    agent = Rainbow(hidden=32)
    agent.build(EnvSpec((1, 44, 44), 1, num_actions=3))
    priority = torch.arange(400, dtype=torch.float64).reshape(200, 2)
    saved = {"priority": priority, "max_priority": 7.0, "admitted": 150, "samples": 12}
    agent.on_load_checkpoint({"state_dict": agent.state_dict(), "replay_priorities": saved})
    assert agent.view.priority is priority and agent.view.max_priority == 7.0
    assert agent.view.admitted == 149 and agent.view.samples == 12  # the newest row admitted again at resume
    assert PrioritizedTransitionView(32, 3, 0.99).state_dict()["priority"] is None  # nothing to keep before it samples
    assert Rainbow(prioritized=False).view.state_dict() == {}  # a uniform view keeps nothing of its own
