"""The 2024 DreamerV3 spec's pieces (configs/dreamer_2024.yaml): LaProp, adaptive gradient clipping,
RMSNorm, the replay-value loss and raw-space two-hot bins, against hand-computed values, and the overlay on a real run."""

import math

import pytest
import torch
from test_learning import logged
from torch import nn

from worldmodels.dreamer import DreamerV3
from worldmodels.dreamer.behavior import BehaviorConfig, ReturnScale, behavior_losses, lambda_return
from worldmodels.dreamer.rssm import State
from worldmodels.errors import ConfigError
from worldmodels.training import EnvSpec
from worldmodels.training.optim import LaProp, adaptive_clip_grad_


def test_laprop_divides_by_the_rms_before_the_momentum_and_corrects_both_biases():
    p = nn.Parameter(torch.tensor([1.0]))
    opt = LaProp([p], lr=0.1, betas=(0.9, 0.999), eps=0.0, warmup=0)
    # Step 1, g = 2: v = 0.001 * 4, sqrt(v / 0.001) = 2, u = 1; m = 0.1 * 1, m / 0.1 = 1: p = 1 - 0.1.
    p.grad = torch.tensor([2.0])
    opt.step()
    assert p.item() == pytest.approx(0.9)
    # Step 2, g = -1: v = 0.999 * 0.004 + 0.001 * 1, rms = sqrt(v / (1 - 0.999^2)), u = -1 / rms;
    # m = 0.9 * 0.1 + 0.1 * u, step = 0.1 * m / (1 - 0.9^2).
    p.grad = torch.tensor([-1.0])
    opt.step()
    rms = math.sqrt((0.999 * 0.004 + 0.001) / (1 - 0.999 ** 2))
    m = 0.9 * 0.1 + 0.1 * (-1 / rms)
    assert p.item() == pytest.approx(0.9 - 0.1 * m / (1 - 0.9 ** 2), rel=1e-6)


def test_laprop_warms_its_learning_rate_up_linearly():
    p = nn.Parameter(torch.zeros(1))
    opt = LaProp([p], lr=1.0, eps=0.0, warmup=4)
    p.grad = torch.ones(1)  # a constant gradient: every bias-corrected step is lr_t exactly
    steps = []
    for _ in range(6):
        before = p.item()
        opt.step()
        steps.append(before - p.item())
    assert steps == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])


def test_adaptive_clipping_bounds_each_gradient_by_a_fraction_of_its_parameter_norm():
    big = nn.Parameter(torch.tensor([3.0, 4.0]))  # norm 5: gradients up to 0.3 * 5 = 1.5 pass
    small = nn.Parameter(torch.tensor([3.0, 4.0]))
    zero = nn.Parameter(torch.zeros(2))  # norm below pmin = 1e-3: bound 0.3 * 1e-3
    big.grad, small.grad, zero.grad = torch.tensor([0.0, 6.0]), torch.tensor([1.0, 0.0]), torch.tensor([2.0, 0.0])
    total = adaptive_clip_grad_([big, small, zero], clip=0.3)
    assert total.item() == pytest.approx(math.sqrt(36 + 1 + 4))  # the norm before clipping
    assert big.grad.tolist() == pytest.approx([0.0, 1.5])
    assert small.grad.tolist() == pytest.approx([1.0, 0.0])
    assert zero.grad.tolist() == pytest.approx([3e-4, 0.0])


def test_replayed_lambda_returns_bootstrap_from_the_imagined_returns_and_stop_at_terminals_and_episode_ends():
    # One sequence of 5 steps; reward[t] arrives with step t. Step 2 is terminal (and last), step 3
    # starts a new episode.
    reward = torch.tensor([[0.0, 1.0, 2.0, 0.0, 4.0]])
    terminal = torch.tensor([[False, False, True, False, False]])
    last = torch.tensor([[False, False, True, False, False]])
    boot = torch.tensor([[10.0, 20.0, 30.0, 40.0, 50.0]])
    gamma, lam = 0.5, 0.8
    # R_4 = boot_4 = 50 (not returned)
    # R_3 = r_4 + g (1 - 0) ((1 - l) boot_4 + l R_4) = 4 + 0.5 * 50 = 29
    # R_2 = r_3 + g ((1 - l) boot_3 + l R_3) = 0 + 0.5 * (0.2 * 40 + 0.8 * 29) = 15.6  (masked in the loss)
    # R_1 = r_2 + g * 0 (step 2 is terminal) = 2
    # R_0 = r_1 + g ((1 - l) boot_1 + l R_1) = 1 + 0.5 * (0.2 * 20 + 0.8 * 2) = 3.8
    returns = lambda_return(reward, (~terminal).float(), boot, lam * (~last).float(), gamma, dim=1)
    assert returns.tolist() == [pytest.approx([3.8, 2.0, 15.6, 29.0])]
    # A last step that is not terminal (a time limit) bootstraps from the imagined return alone.
    truncated = lambda_return(reward, torch.ones(reward.shape), boot, lam * (~last).float(), gamma, dim=1)
    assert truncated[0, 1].item() == pytest.approx(2 + 0.5 * 30)


def build(**kwargs) -> DreamerV3:
    agent = DreamerV3(size="XS", deter=32, cnn_depth=4, mlp_units=32, stoch=4, classes=4, batch_size=2,
                      seq_len=4, **kwargs)
    agent.build(EnvSpec((3, 32, 32), 3, num_actions=3))
    return agent


def test_rms_norm_replaces_every_layer_norm():
    agent = build(norm="rms")
    kinds = {type(m).__name__ for m in agent.modules()}
    assert "LayerNorm" not in kinds and "ChannelNorm" not in kinds
    assert {"RMSNorm", "ChannelRMSNorm"} <= kinds
    assert all(m.eps == 1e-4 for m in agent.modules() if isinstance(m, nn.RMSNorm))
    assert not [n for n, _ in agent.named_parameters() if "bias" in n and ".norm" in n]  # no shift


def test_unknown_norm_or_optimizer_is_a_config_error():
    with pytest.raises(ConfigError, match="norm"):
        DreamerV3(norm="batch")
    with pytest.raises(ConfigError, match="optimizer"):
        DreamerV3(optimizer="sgd")
    with pytest.raises(ConfigError, match="two_hot_space"):
        DreamerV3(two_hot_space="log")


def test_replay_value_loss_trains_the_critic_on_the_replayed_states():
    torch.manual_seed(0)
    agent = build()
    B, T = 2, 4
    obs = torch.randint(0, 255, (B, T, 3, 32, 32), dtype=torch.uint8)
    action = nn.functional.one_hot(torch.randint(0, 3, (B, T)), 3).float()
    first = torch.zeros(B, T, dtype=torch.bool)
    first[:, 0] = True
    replay = {"reward": torch.randn(B, T), "terminal": torch.zeros(B, T, dtype=torch.bool),
              "last": torch.zeros(B, T, dtype=torch.bool)}
    replay["last"][0, 1] = True  # one episode end inside the window: its step leaves the loss
    _, post, _ = agent.world_model.loss(obs, action, replay["reward"], replay["terminal"], first)
    start = State(*(x.detach().flatten(0, 1) for x in post))
    args = (agent.world_model, agent.actor, agent.critic)

    def critic_loss(scale):
        torch.manual_seed(1)  # the same imagined trajectories for both
        config = BehaviorConfig(horizon=3, repval_scale=scale)
        return behavior_losses(*args, ReturnScale(), start, torch.ones(B * T), config, replay=replay)

    _, without, _ = critic_loss(0.0)
    _, with_repval, metrics = critic_loss(0.3)
    # The critic starts at zero logits: uniform over 255 bins, so each cross-entropy is log(255) whatever
    # its target, two per step (returns and slow critic), averaged over the B x (T - 1) = 6 steps that
    # have a return, of which the episode end (0, 1) counts zero: 5/6 x 2 log(255).
    expected = 5 / 6 * 2 * math.log(255)
    assert metrics["critic/replay_value_loss"].item() == pytest.approx(expected, rel=1e-5)
    assert (with_repval - without).item() == pytest.approx(0.3 * expected, rel=1e-5)


def test_the_2024_overlay_layers_on_a_dreamer_config_and_trains(fit, tmp_path):
    # The small catch agent of the learning test, 4 updates after 500 random steps, no evaluation.
    done = fit("--config", "tests/configs/dreamer_catch.yaml", "--config", "configs/dreamer_2024.yaml",
               "--data.total_env_steps", "510", "--data.max_updates", "4", "--evaluation.every_env_steps", "0",
               "--trainer.log_every_n_steps", "1", "--run_dir", str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr[-3000:]
    config = (tmp_path / "run" / "config.yaml").read_text()
    for line in ("norm: rms", "optimizer: laprop", "agc: 0.3", "repval_scale: 0.3", "dyn_scale: 1.0",
                 "two_hot_space: raw"):
        assert line in config
    assert len(logged(tmp_path / "run", "critic/replay_value_loss")) == 4
    assert all(math.isfinite(v) for v in logged(tmp_path / "run", "wm/loss"))


def test_raw_two_hot_space_spaces_the_reward_and_critic_bins_by_symexp_and_decodes_without_squashing():
    agent = build(two_hot_space="raw")
    grid = torch.linspace(-20, 20, 255)
    raw_bins = torch.sign(grid) * torch.expm1(grid.abs())
    assert torch.allclose(agent.world_model.bins, raw_bins) and torch.allclose(agent.critic.bins, raw_bins)
    # Half the probability on each of two neighbouring bins decodes to their midpoint in raw space (the
    # symlog space would give symexp of the midpoint of grid[200] and grid[201], about 5% less).
    logits = torch.full((255,), -1e9)
    logits[200] = logits[201] = 0.0
    assert agent.critic.decode(logits).item() == pytest.approx(((raw_bins[200] + raw_bins[201]) / 2).item(), rel=1e-5)
    # and the loss of that midpoint is the cross-entropy of weights 1/2, 1/2: log 2.
    target = (raw_bins[200] + raw_bins[201]) / 2
    assert agent.critic.logits_loss(logits, target).item() == pytest.approx(math.log(2), rel=1e-5)
