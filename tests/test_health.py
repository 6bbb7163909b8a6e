"""Training-health diagnostics against hand-computed values: srank, the ND score under a loss, the
DR3 dot product and penalty, Monte-Carlo returns and Q over-estimation from a stored trajectory,
the warnings, and the callback that logs them without disturbing training."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from functools import partial

from model_free import DrQv2, Rainbow, SAC
from model_free.critic_health import nd_under
from worldmodels.diagnostics import (augmentation_gap, discounted_returns, effective_horizon, feature_dot,
                                     overestimation, srank)
from worldmodels.regularizers import dr3_penalty
from worldmodels.regularizers.local_signal_mixing import AdaptiveStrength
from worldmodels.replay import Replay, TransitionView
from worldmodels.training import Agent, EnvSpec, Health, RunClock
from worldmodels.training.health import (ND_STRETCH_CHECKS, ND_TARGET, OVERESTIMATION_GROWTH_CHECKS, HealthMonitor,
                                         return_to_go)


# ------------------------------------------------------------------------------ srank
def with_singular_values(sigma, rows=12, cols=9, seed=0):
    """A rows x cols matrix U diag(sigma) V^T with random orthonormal U, V: its singular values are sigma."""
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(rows, len(sigma), generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(cols, len(sigma), generator=g, dtype=torch.float64))
    return (u * torch.tensor(sigma, dtype=torch.float64)) @ v.T


def test_srank_of_a_diagonal_matrix_counts_singular_values_up_to_99_percent_of_their_sum():
    # Cumulative shares of 4, 3, 2, 1 (sum 10): 0.4, 0.7, 0.9, 1.0.
    assert srank(torch.diag(torch.tensor([4.0, 3.0, 2.0, 1.0]))) == 4
    assert srank(torch.diag(torch.tensor([4.0, 3.0, 2.0, 1.0])), delta=0.15) == 3  # 0.9 >= 0.85
    assert srank(torch.diag(torch.tensor([4.0, 3.0, 2.0, 1.0])), delta=0.5) == 2  # 0.7 >= 0.5, 0.4 is not


def test_srank_reads_singular_values_not_entries_and_stops_at_the_exact_share():
    # 50, 30, 15, 4, 0.6, 0.4 (sum 100): shares 0.5, 0.8, 0.95, 0.99 -> the 4th reaches 1 - 0.01 exactly.
    phi = with_singular_values([50.0, 30.0, 15.0, 4.0, 0.6, 0.4])
    assert srank(phi) == 4
    assert srank(phi, delta=0.05) == 3
    assert srank(torch.zeros(5, 3)) == 0
    wide = with_singular_values([50.0, 30.0, 15.0, 4.0, 0.6, 0.4], rows=6, cols=400)  # the Gram-matrix route
    assert srank(wide) == 4 and srank(wide.T, delta=0.05) == 3
    with pytest.raises(ValueError, match="batch, features"):
        srank(torch.zeros(2, 3, 4))


# ------------------------------------------------------------------------------ ND score
def checkerboard(c, h, w):
    i, j = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return ((-1.0) ** (i + j)).expand(c, h, w)


def planted_loss_gradient(field):
    """A feature map and a loss whose gradient with respect to it is ``field`` (batch of 2)."""
    feature_map = torch.randn(2, *field.shape, requires_grad=True)
    return (feature_map * field).sum() / 2, feature_map


def test_nd_score_under_a_loss_is_zero_for_a_smooth_gradient_and_high_for_a_checkerboard():
    smooth_loss, smooth_map = planted_loss_gradient(torch.full((3, 8, 8), 0.7))
    rough_loss, rough_map = planted_loss_gradient(checkerboard(3, 8, 8))
    smooth, rough = nd_under(smooth_loss, smooth_map).item(), nd_under(rough_loss, rough_map).item()
    assert smooth == 0.0  # every cell equals its neighbours: no noise
    # +-1 checkerboard, signal 1 everywhere. Inside (6 x 6 cells) and at the corners (whose replicate
    # pad copies 3 same-sign cells): 4 neighbours of the other sign, noise 4 x 2^2 / 8 = 2, log(1 + 2).
    # Other border cells (4 x 6): the pad copies 2 cells of the other sign, 5 in all: noise 2.5, log 3.5.
    assert rough == pytest.approx((40 * math.log(3) + 24 * math.log(3.5)) / 64, rel=1e-6)
    assert rough > ND_TARGET


def test_nd_under_leaves_parameter_gradients_alone():
    layer = torch.nn.Conv2d(1, 2, 3, padding=1)
    feature_map = layer(torch.randn(2, 1, 6, 6))
    nd_under(feature_map.pow(2).sum(), feature_map)
    assert layer.weight.grad is None


# ------------------------------------------------------------------------------ DR3
def test_feature_dot_is_the_batch_mean_of_rowwise_dot_products():
    phi = torch.tensor([[1.0, 2.0], [0.0, 1.0]])
    phi_next = torch.tensor([[3.0, 1.0], [2.0, 2.0]])
    assert feature_dot(phi, phi_next).item() == pytest.approx((5.0 + 2.0) / 2)  # 1*3 + 2*1 = 5; 0*2 + 1*2 = 2
    # Twin critics: the mean over the heads; the second head's dots are 1 and 0.
    second, second_next = torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.tensor([[1.0, 5.0], [7.0, 7.0]])
    assert dr3_penalty((phi, second), (phi_next, second_next)).item() == pytest.approx((3.5 + 0.5) / 2)
    with pytest.raises(ValueError):
        feature_dot(phi, phi_next[:1])


SPEC_ATARI = EnvSpec((4, 84, 84), 1, num_actions=3)
SPEC_DMC = EnvSpec((9, 84, 84), 3, action_dim=2)
# The value-based learner as NDDQN (configs/nddqn_atari.yaml) and with its defaults, DER.
NDDQN = partial(Rainbow, num_atoms=1, noisy=False, prioritized=False, target_update_period=1)


def held_batch(spec, n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    action = (torch.randint(0, spec.num_actions, (n,), generator=g) if spec.discrete
              else torch.rand(n, spec.action_dim, generator=g) * 2 - 1)
    return {"obs": torch.randint(0, 256, (n, *spec.obs_shape), generator=g, dtype=torch.uint8),
            "next_obs": torch.randint(0, 256, (n, *spec.obs_shape), generator=g, dtype=torch.uint8),
            "action": action, "reward": torch.randn(n, generator=g), "discount": torch.full((n,), 0.9),
            "mc_return": torch.randn(n, generator=g), "mc_valid": torch.arange(n) % 2 == 0}


def training_loss(agent_class, spec, dr3_coef):
    """The loss ``training_step`` backpropagates on one fixed batch (critic loss only), and its logs."""
    torch.manual_seed(0)
    agent = agent_class(hidden=32, dr3_coef=dr3_coef)
    agent.build(spec)
    optimizers = agent.configure_optimizers()
    agent.optimizers = lambda: optimizers
    losses, logged = [], {}
    agent.log_scalars = logged.update
    agent.manual_backward = lambda loss: (losses.append(loss.item()), loss.backward())
    torch.manual_seed(1)
    agent.training_step(held_batch(spec), 0)
    return losses[0], logged


@pytest.mark.parametrize("agent_class, spec", [(NDDQN, SPEC_ATARI), (Rainbow, SPEC_ATARI), (SAC, SPEC_DMC), (DrQv2, SPEC_DMC)])
def test_the_dr3_coefficient_adds_coef_times_the_feature_dot_to_the_loss(agent_class, spec):
    plain, plain_logs = training_loss(agent_class, spec, 0.0)
    regularized, logs = training_loss(agent_class, spec, 0.25)
    assert "train/dr3_dot" not in plain_logs  # off: training is what it was
    dot = logs["train/dr3_dot"].item()
    assert dot > 0  # ReLU features of fresh networks point the same way
    assert regularized == pytest.approx(plain + 0.25 * dot, rel=1e-5)


# ------------------------------------------------------------------------------ Monte-Carlo returns and bias
def trajectory_replay():
    """One column: episode A = rows 0..3 (rewards on arrival 1, 0, 2; terminal at row 3), episode B
    from row 4 (rewards 5, 5, ...), still running at the write head (row 6)."""
    replay = Replay(100, frame_stack=1, frame_channels=1)
    rewards = [0.0, 1.0, 0.0, 2.0, 0.0, 5.0, 5.0]
    for t, r in enumerate(rewards):
        replay.add(np.zeros((1, 1, 2, 2), np.uint8), np.zeros(1, np.int64), np.array([r], np.float32),
                   np.array([t == 3]), np.array([False]), np.array([t in (0, 4)]))
    return replay


def test_return_to_go_sums_discounted_rewards_to_the_terminal_and_flags_running_episodes():
    t = torch.arange(7)
    returns, complete = return_to_go(trajectory_replay(), t, torch.zeros_like(t), gamma=0.5)
    # Row 0: 1 + 0.5 * 0 + 0.25 * 2 = 1.5; row 1: 0 + 0.5 * 2 = 1; row 2: 2; row 3 (terminal): 0.
    assert returns[:4].tolist() == pytest.approx([1.5, 1.0, 2.0, 0.0])
    assert complete.tolist() == [True, True, True, True, False, False, False]  # episode B has not ended
    assert returns[4].item() == pytest.approx(5 + 0.5 * 5)  # its partial sum, not to be compared


def test_overestimation_is_the_mean_q_minus_return_over_states_with_a_known_return():
    returns, complete = return_to_go(trajectory_replay(), torch.arange(4), torch.zeros(4, dtype=torch.long), 0.5)
    q = torch.tensor([2.0, 1.0, 1.0, 0.5])  # gaps 0.5, 0, -1, 0.5
    assert overestimation(q, returns, complete).item() == pytest.approx(0.0)
    assert overestimation(q[:2], returns[:2]).item() == pytest.approx(0.25)
    assert math.isnan(overestimation(q, returns, torch.zeros(4, dtype=torch.bool)).item())


def test_a_return_known_for_the_effective_horizon_counts_as_complete():
    assert effective_horizon(0.5) == 10  # 0.5^10 < 1e-3 <= 0.5^9
    replay = Replay(100, frame_stack=1, frame_channels=1)
    for t in range(12):  # one long episode of reward 1, still running
        replay.add(np.zeros((1, 1, 2, 2), np.uint8), np.zeros(1, np.int64), np.ones(1, np.float32),
                   np.array([False]), np.array([False]), np.array([t == 0]))
    returns, complete = return_to_go(replay, torch.tensor([0, 1, 2]), torch.zeros(3, dtype=torch.long), 0.5)
    assert complete.tolist() == [True, True, False]  # rows 1..10 and 2..11 are stored; 3..12 is not
    assert returns[0].item() == pytest.approx(sum(0.5 ** j for j in range(10)))


def test_discounted_returns_restart_after_an_episode_end():
    reward = torch.tensor([0.0, 1.0, 1.0, 1.0, 0.0, 2.0])
    last = torch.tensor([False, False, False, True, False, False])
    returns, ended = discounted_returns(reward, last, 0.5)
    assert returns.tolist() == pytest.approx([1.75, 1.5, 1.0, 0.0, 2.0, 0.0])
    assert ended.tolist() == [True, True, True, True, False, False]


def test_augmentation_gap_is_the_mean_squared_q_difference():
    assert augmentation_gap(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 4.0])).item() == pytest.approx(2.0)


# ------------------------------------------------------------------------------ the agents' health
@pytest.mark.parametrize("agent_class, spec", [(NDDQN, SPEC_ATARI), (Rainbow, SPEC_ATARI), (SAC, SPEC_DMC), (DrQv2, SPEC_DMC)])
def test_agent_health_reports_every_figure_and_leaves_the_networks_untouched(agent_class, spec):
    torch.manual_seed(0)
    agent = agent_class(hidden=32)
    agent.build(spec)
    before = {k: v.clone() for k, v in agent.state_dict().items()}
    out = agent.health(held_batch(spec))
    assert set(out) == {"q_mean", "mc_return_mean", "mc_return_ms", "q_overestimation", "critic_srank", "encoder_srank",
                        "critic_feature_dot", "augmentation_gap", "td_loss", "nd_score"}
    assert all(p.grad is None for p in agent.parameters())
    assert all(torch.equal(before[k], v) for k, v in agent.state_dict().items())
    assert 1 <= out["critic_srank"] <= 8 and 1 <= out["encoder_srank"] <= 8  # at most the 8 rows
    assert out["augmentation_gap"] > 0 and out["td_loss"] > 0


# ------------------------------------------------------------------------------ warnings
def test_a_rank_collapse_warning_fires_once_when_srank_falls_below_half_its_peak():
    monitor = HealthMonitor()
    for rank in (100, 120, 90, 61):  # down by half of 120 only below 60
        assert monitor.observe({"critic_srank": rank})[1] == []
    (warning,) = monitor.observe({"critic_srank": 59})[1]
    assert warning[0] == "rank" and "critic_srank" in warning[1] and "DR3" in warning[1]
    assert monitor.observe({"critic_srank": 30})[1] == []  # once per run


def test_steady_signals_raise_no_warning():
    monitor = HealthMonitor()
    for i in range(50):
        _, warnings = monitor.observe({"critic_srank": 100 - i % 3, "nd_score": 0.5, "q_overestimation": 1.0 - i % 2})
        assert warnings == []


def test_nd_warning_needs_a_long_unbroken_stretch_above_the_a_lix_target():
    monitor = HealthMonitor()
    for _ in range(ND_STRETCH_CHECKS - 1):
        assert monitor.observe({"nd_score": 0.9})[1] == []
    assert monitor.observe({"nd_score": 0.5})[1] == []  # the stretch breaks
    for _ in range(ND_STRETCH_CHECKS - 1):
        assert monitor.observe({"nd_score": 0.9})[1] == []
    (warning,) = monitor.observe({"nd_score": 0.9})[1]
    assert warning[0] == "nd" and "A-LIX" in warning[1]


def test_overestimation_warning_needs_a_positive_gap_rising_check_after_check():
    monitor = HealthMonitor()
    assert monitor.observe({"q_overestimation": -5.0})[1] == []
    for gap in range(1, OVERESTIMATION_GROWTH_CHECKS):  # -5 -> 1 is not a rise of a positive gap
        assert monitor.observe({"q_overestimation": float(gap)})[1] == []
    (warning,) = monitor.observe({"q_overestimation": 10.0})[1]
    assert warning[0] == "overestimation" and "replay ratio" in warning[1]


def test_td_loss_trend_compares_the_last_five_checks_with_the_five_before():
    monitor = HealthMonitor()
    derived = [monitor.observe({"td_loss": loss})[0] for loss in [1.0] * 5 + [1.5] * 5]
    assert derived[-2] == {} and derived[-1]["td_loss_trend"] == pytest.approx(0.5)


# ------------------------------------------------------------------------------ the callback
class PlantedCollapse(Agent):
    """An agent whose critic rank halves after its second check."""

    def __init__(self):
        super().__init__()
        self.hparams.gamma = 0.5
        self.view = TransitionView(batch_size=4, n_step=1, gamma=0.5)
        self.ranks = iter([40, 40, 12])

    def replay_view(self):
        return self.view

    def health(self, batch):
        torch.rand(3)  # draws from the global generator, as augmentations do
        return {"critic_srank": next(self.ranks), "q_overestimation": float("nan"), "td_loss": torch.tensor(0.3)}


class Recorder:
    def __init__(self):
        self.rows = []

    def log_metrics(self, metrics, step):
        self.rows.append(metrics)


def test_the_callback_logs_health_prints_a_warning_once_and_keeps_the_random_state(tmp_path, capsys):
    replay = trajectory_replay()
    clock = RunClock()
    counters = clock.counters
    recorder = Recorder()
    trainer = SimpleNamespace(loggers=[recorder], default_root_dir=str(tmp_path), global_step=0,
                              global_rank=0, callbacks=[])
    agent, health = PlantedCollapse(), Health(every_updates=2)
    health.attach(SimpleNamespace(clock=clock, replay=replay))
    for update in range(1, 7):
        counters.updates = update
        state = torch.get_rng_state()
        health.on_train_batch_end(trainer, agent, None, None, update)
        assert torch.equal(torch.get_rng_state(), state)  # training's random draws are unchanged
    assert [row["health/critic_srank"] for row in recorder.rows] == [40, 40, 12]  # at updates 2, 4, 6
    assert math.isnan(recorder.rows[0]["health/q_overestimation"])  # logged as not known; no warning from it
    assert 0 < recorder.rows[0]["health/mc_coverage"] < 1  # starts 0, 1, 2 have ended; 4 and 5 have not
    assert recorder.rows[-1]["health/warning_rank"] == 1.0 and "health/warning_rank" not in recorder.rows[1]
    printed = [line for line in capsys.readouterr().out.splitlines() if "health warning" in line]
    assert len(printed) == 1 and "critic_srank fell to 12 from a peak of 40" in printed[0]
    assert (tmp_path / "health_warnings.txt").read_text().strip() == printed[0]


class PlantedNdAbove(PlantedCollapse):
    """An A-LIX agent (Table 7's target 0.75) whose ND score sits between the DMC target 0.535 and its own
    for ND_STRETCH_CHECKS checks, then above its own for as many."""

    def __init__(self):
        super().__init__()
        self.alix_strength = AdaptiveStrength(init=1.0, target_nd=0.75)
        self.nd = iter([0.70] * ND_STRETCH_CHECKS + [0.80] * ND_STRETCH_CHECKS)

    def health(self, batch):
        return {"nd_score": next(self.nd)}


def test_an_a_lix_agent_is_warned_against_its_own_nd_target_not_the_default(tmp_path, capsys):
    clock = RunClock()
    trainer = SimpleNamespace(loggers=[Recorder()], default_root_dir=str(tmp_path), global_step=0,
                              global_rank=0, callbacks=[])
    agent, health = PlantedNdAbove(), Health(every_updates=1)
    health.attach(SimpleNamespace(clock=clock, replay=trajectory_replay()))
    assert ND_TARGET < 0.70 < 0.75
    for update in range(1, 2 * ND_STRETCH_CHECKS + 1):
        clock.counters.updates = update
        health.on_train_batch_end(trainer, agent, None, None, update)
        printed = [line for line in capsys.readouterr().out.splitlines() if "health warning" in line]
        if update < 2 * ND_STRETCH_CHECKS:  # 0.70 is below the agent's 0.75: no stretch, no warning
            assert printed == []
    (line,) = printed  # the tenth check in a row above 0.75
    assert f"target 0.75 for {ND_STRETCH_CHECKS} checks (now 0.800)" in line and "clamp of 1" in line
