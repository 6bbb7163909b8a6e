"""DrQ and A-LIX on Atari: the NDDQN variants' extra parts."""

import torch

from model_free import ALIXAtari, DrQAtari
from worldmodels.regularizers import LocalSignalMixing
from worldmodels.training import EnvSpec

SPEC = EnvSpec((4, 84, 84), 1, num_actions=6)


def run_update(agent, batch):
    optimizer = agent.configure_optimizers()
    agent.optimizers = lambda: optimizer  # outside a Trainer: call the step directly
    agent.manual_backward = lambda loss: loss.backward()
    logged = {}
    agent.log_scalars = logged.update
    agent.training_step(batch, 0)
    return logged


def random_batch(b=8):
    g = torch.Generator().manual_seed(0)
    return {"obs": torch.randint(0, 256, (b, 4, 84, 84), dtype=torch.uint8, generator=g),
            "next_obs": torch.randint(0, 256, (b, 4, 84, 84), dtype=torch.uint8, generator=g),
            "action": torch.randint(0, 6, (b,), generator=g), "reward": torch.randn(b, generator=g),
            "discount": torch.full((b,), 0.9)}


def test_drq_atari_uses_the_drq_epsilon_settings_and_augments():
    agent = DrQAtari()
    assert agent.hparams.augment and agent.hparams.epsilon_train == 0.01 and agent.hparams.epsilon_eval == 0.001
    assert agent.hparams.n_step == 10 and agent.hparams.lr == 1e-4  # the rest is NDDQN's


def test_alix_atari_mixes_after_every_conv_with_one_strength_shared_by_online_and_target_nets():
    agent = ALIXAtari()
    agent.build(SPEC)
    layers = [m for net in (agent.q, agent.q_target) for m in net.modules() if isinstance(m, LocalSignalMixing)]
    assert len(layers) == 6
    assert all(layer.strength is agent.alix_strength for layer in layers)
    assert [layer.record_gradient for layer in layers[:3]] == [False, False, True]


def test_alix_atari_mixing_is_off_when_acting_and_on_when_training():
    torch.manual_seed(0)
    agent = ALIXAtari()
    agent.build(SPEC)
    obs = random_batch()["obs"]
    with agent.acting():
        assert torch.equal(agent.q(obs), agent.q(obs))
    agent.train()
    assert not torch.equal(agent.q(obs), agent.q(obs))  # a new random shift on every forward


def test_alix_atari_update_moves_s_toward_the_target_nd_score():
    torch.manual_seed(0)
    agent = ALIXAtari()
    agent.build(SPEC)
    for _ in range(3):
        before = agent.alix_strength.value.item()
        logged = run_update(agent, random_batch())
        nd, after = float(logged["train/nd_score"]), agent.alix_strength.value.item()
        assert after != before
        # The dual step raises S when the measured ND score is above target and lowers it below.
        assert (after > before) == (nd > agent.hparams.alix_target_nd)
