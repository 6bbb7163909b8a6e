"""DrQ-v2 and A-LIX against hand-computed values: the critic target, the clipped target noise, the
exploration schedule, which loss trains the encoder, A-LIX's dual update of S and its mixing
being off while acting."""

import pytest
import torch
from torch import nn

from model_free import ALIX, DrQv2
from model_free.drqv2 import drqv2_critic_target, stddev_at
from worldmodels.errors import ConfigError
from worldmodels.regularizers import LocalSignalMixing, alix_dual_step, tuned_layer
from worldmodels.training import EnvSpec

SPEC = EnvSpec((3, 32, 32), 3, action_dim=2)  # encoder output 32 x 9 x 9


def small(agent_class=DrQv2, **kwargs):
    torch.manual_seed(0)
    agent = agent_class(batch_size=4, feature_dim=8, hidden=16, **kwargs)
    agent.build(SPEC)
    return agent


def without_trainer(agent, on_backward=None):
    """Run ``training_step`` outside Lightning: plain optimizers, plain backward, no logging."""
    optimizers = agent.configure_optimizers()
    agent.optimizers = lambda: optimizers
    agent.logged = {}
    agent.log_scalars = agent.logged.update

    def backward(loss):
        loss.backward()
        if on_backward is not None:
            on_backward()

    agent.manual_backward = backward
    return agent


def batch(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"obs": torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8),
            "next_obs": torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8),
            "action": torch.rand(n, 2, generator=g) * 2 - 1, "reward": torch.randn(n, generator=g),
            "discount": torch.full((n,), 0.99 ** 3)}


# ------------------------------------------------------------------------------ DrQ-v2


def test_critic_target_is_the_n_step_return_plus_discounted_min_of_the_twin_target_qs():
    # Rewards 1, 2, 3 over n = 3 steps, gamma 0.99: R = 1 + 0.99 * 2 + 0.99^2 * 3 = 5.9203, discount 0.99^3.
    # The second transition ends in a terminal state after 2 steps: R = 1 + 0.99 * 2 = 2.98, discount 0.
    reward = torch.tensor([5.9203, 2.98, 0.0])
    discount = torch.tensor([0.970299, 0.0, 0.5])
    next_q1 = torch.tensor([10.0, -5.0, -4.0])
    next_q2 = torch.tensor([8.0, 100.0, 6.0])
    target = drqv2_critic_target(reward, discount, next_q1, next_q2)
    assert target.tolist() == pytest.approx([5.9203 + 0.970299 * 8.0, 2.98, -2.0])
    view = DrQv2().replay_view()
    assert (view.n_step, view.gamma, view.batch_size) == (3, 0.99, 256)


def test_target_action_noise_is_clipped_at_0_3_even_when_the_std_is_huge():
    agent = small()
    nn.init.zeros_(agent.actor.policy[-1].weight)  # mean action tanh(0) = 0 everywhere
    next_h = torch.randn(1000, agent.encoder.out_dim)
    with torch.no_grad():
        clipped = agent.next_action(next_h, stddev=5.0)
        unclipped = agent.actor(next_h, 5.0).sample()
    assert clipped.abs().max().item() <= 0.3 + 1e-6
    assert (clipped.abs() > 0.3 - 1e-6).float().mean() > 0.9  # P(|N(0, 25)| > 0.3) = 0.95: most hit the clip
    assert unclipped.abs().max().item() > 0.9  # the exploration sample itself is not clipped


def test_stddev_schedule_is_linear_from_1_to_0_1_then_held():
    assert stddev_at("linear(1.0,0.1,500000)", 0) == pytest.approx(1.0)
    assert stddev_at("linear(1.0, 0.1, 500000)", 250_000) == pytest.approx(0.55)
    assert stddev_at("linear(1.0,0.1,500000)", 500_000) == pytest.approx(0.1)
    assert stddev_at("linear(1.0,0.1,500000)", 2_000_000) == pytest.approx(0.1)
    assert stddev_at([1.0, 0.1, 100], 50) == pytest.approx(0.55)
    assert stddev_at("0.2", 123) == stddev_at(0.2, 0) == pytest.approx(0.2)
    agent = small()
    agent.counters.env_steps = 250_000  # the loop's counters drive the schedule
    assert agent.stddev() == pytest.approx(0.55)
    with pytest.raises(ConfigError):
        DrQv2(stddev_schedule="exp(1.0,0.1,5)")


def test_only_the_critic_loss_reaches_the_encoder():
    snapshots = []
    agent = small()
    encoder = dict(agent.encoder.named_parameters())
    actor = dict(agent.actor.named_parameters())
    snap = lambda params: {k: None if p.grad is None else p.grad.clone() for k, p in params.items()}
    without_trainer(agent, on_backward=lambda: snapshots.append((snap(encoder), snap(actor))))
    before = {k: p.detach().clone() for k, p in encoder.items()}
    agent.training_step(batch(), 0)
    (enc_after_critic, actor_after_critic), (enc_after_actor, actor_after_actor) = snapshots  # two backwards
    assert all(g is not None and g.abs().sum() > 0 for g in enc_after_critic.values())
    assert all(g is None for g in actor_after_critic.values())  # the target's a' is drawn without gradient
    for k, g in enc_after_actor.items():  # the actor's loss added nothing to the encoder's gradient
        assert torch.equal(g, enc_after_critic[k])
    assert all(g is not None and g.abs().sum() > 0 for g in actor_after_actor.values())
    assert all(not torch.equal(p, before[k]) for k, p in encoder.items())  # and the encoder did step
    assert set(agent.logged) >= {"train/critic_loss", "train/actor_loss", "train/q1_mean", "train/q2_mean",
                                 "train/target_q_mean", "train/stddev"}


def test_target_critic_moves_a_hundredth_of_the_way_to_the_critic_each_update():
    agent = without_trainer(small(augment=False))
    old_target = {k: p.clone() for k, p in agent.critic_target.state_dict().items()}
    agent.training_step(batch(), 0)
    critic = agent.critic.state_dict()
    for k, p in agent.critic_target.state_dict().items():
        torch.testing.assert_close(p, 0.99 * old_target[k] + 0.01 * critic[k])


def test_exploration_samples_around_the_mean_and_evaluation_takes_the_mean():
    agent = small()
    obs = batch(n=64)["obs"]
    with agent.acting():
        mean, _ = agent.act(obs, None, torch.ones(64, dtype=torch.bool), explore=False)
        again, _ = agent.act(obs, None, torch.ones(64, dtype=torch.bool), explore=True)
        expected = agent.actor(agent.encoder(obs), 1.0).mean
    assert torch.equal(mean, expected)
    assert not torch.equal(again, mean) and again.abs().max() < 1.0  # std 1 at step 0, inside (-1, 1)


# ------------------------------------------------------------------------------ A-LIX


def checkerboard_field(c, h, w):
    i, j = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return (1.0 - 2.0 * ((i + j) % 2).float()).expand(c, h, w)


@pytest.mark.parametrize("field, direction", [("checkerboard", +1), ("smooth", -1)])
def test_alix_strength_rises_when_the_gradient_is_rougher_than_the_target_and_falls_when_smoother(field, direction):
    agent = small(ALIX)
    agent.alix_strength.make_optimizer()
    c, h, w = agent.encoder.feature_shape
    features = agent.encoder(batch()["obs"])  # training mode: every mixing layer is active
    if field == "checkerboard":  # ND = log(1 + 2) = 1.10 inside the board, above the target 0.535
        planted = checkerboard_field(c, h, w)
    else:  # a gentle ramp: neighbours nearly agree, ND close to 0
        planted = (1.0 + 0.01 * torch.arange(h * w, dtype=torch.float32)).view(1, h, w).expand(c, h, w)
    features.backward(planted.expand(4, c, h, w).reshape(4, -1))
    metrics = alix_dual_step(agent.alix_strength, agent.encoder)
    nd = metrics["train/nd_score"].item()
    assert (nd > 0.535) if direction > 0 else (nd < 0.1)
    # Adam's first step is lr * sign(gradient), gradient = target_nd - nd: S moves by exactly 2e-3.
    assert agent.alix_strength.value.item() == pytest.approx(0.5 + direction * 2e-3, abs=1e-6)


def test_alix_training_step_tunes_s_from_the_critic_gradient_and_logs_it():
    agent = without_trainer(small(ALIX))
    assert len(agent.optimizers()) == 4  # S's own Adam travels with the others (and their checkpoints)
    assert not agent.hparams.augment
    agent.training_step(batch(), 0)
    assert tuned_layer(agent.encoder).last_gradient().shape == (4, *agent.encoder.feature_shape)
    assert {"train/alix_s", "train/nd_score"} <= set(agent.logged)
    # S moves by Adam's first step, 2e-3, up when the critic gradient's ND was above the target, down below.
    direction = 1 if float(agent.logged["train/nd_score"]) > agent.hparams.alix_target_nd else -1
    assert agent.alix_strength.value.item() == pytest.approx(0.5 + direction * 2e-3, abs=1e-6)
    strengths = {id(m.strength) for m in agent.encoder.modules() if isinstance(m, LocalSignalMixing)}
    assert strengths == {id(agent.alix_strength)}  # one S for all four layers


def test_alix_mixing_is_off_while_acting():
    agent = small(ALIX)
    agent.alix_strength.s.data.fill_(1.0)  # the strongest mixing: shifts up to 2.5 px
    obs = batch(n=8)["obs"]
    with torch.no_grad():
        assert not torch.equal(agent.encoder(obs), agent.encoder(obs))  # training: random shifts each forward
        plain = nn.Sequential(*[m for m in agent.encoder.convs if not isinstance(m, LocalSignalMixing)])
        expected = agent.actor(plain(obs).flatten(1), 1.0).mean
    first = torch.ones(8, dtype=torch.bool)
    with agent.acting():
        acted, _ = agent.act(obs, None, first, explore=False)
        again, _ = agent.act(obs, None, first, explore=False)
    assert torch.equal(acted, again) and torch.equal(acted, expected)
    assert agent.training  # acting() puts training mode back
