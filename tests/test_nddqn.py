"""NDDQN's targets and schedule against hand-computed values, and learning on the catch task."""

import pytest
import torch

from model_free.targets import double_q_target, linearly_decaying_epsilon


def test_double_q_target_picks_the_online_argmax_and_evaluates_it_with_the_target_net():
    next_q_online = torch.tensor([[1.0, 5.0, 2.0], [0.0, -1.0, 3.0]])
    next_q_target = torch.tensor([[10.0, 20.0, 30.0], [7.0, 8.0, 9.0]])
    reward = torch.tensor([1.0, 0.5])
    discount = torch.tensor([0.9, 0.0])  # the second transition ends in a terminal state
    target = double_q_target(next_q_online, next_q_target, reward, discount)
    # Online argmax: action 1 (Q_target 20) and action 2 (Q_target 9, but discount 0).
    assert target.tolist() == pytest.approx([1.0 + 0.9 * 20.0, 0.5])
    # Not max over the target net (which would pick 30), not the online value (5).
    assert target[0] != 1.0 + 0.9 * 30.0 and target[0] != 1.0 + 0.9 * 5.0


def test_epsilon_is_one_during_warmup_then_decays_linearly_to_its_floor():
    eps = lambda step: linearly_decaying_epsilon(step, warmup_steps=1600, decay_steps=5000, final=0.1)
    assert eps(0) == 1.0 and eps(1600) == pytest.approx(1.0)
    assert eps(1600 + 2500) == pytest.approx(0.55)
    assert eps(1600 + 5000) == pytest.approx(0.1) and eps(100_000) == pytest.approx(0.1)
