"""The update makes no host sync of its own on a step whose metrics are not logged: no ``.item()``,
``.cpu()``, ``.tolist()``, ``.numpy()`` or Python ``bool``/``float``/``int`` of a tensor in the code of
this repository while ``training_step`` runs (on a GPU each would stall the device queue). Calls made
inside torch itself (Adam reads its CPU step counter) are not ours and are not counted."""

import collections
import contextlib
import traceback
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from model_free import DrQv2
from worldmodels.dreamer import DreamerV3
from worldmodels.training import EnvSpec

ROOT = Path(__file__).resolve().parent.parent
OURS = (str(ROOT / "worldmodels"), str(ROOT / "model_free"))
CONVERSIONS = ("item", "cpu", "tolist", "numpy", "__bool__", "__float__", "__int__")


@contextlib.contextmanager
def counted_host_syncs():
    """Counts, by (file, line, call), the conversions that code of this repository makes directly."""
    counts: collections.Counter = collections.Counter()
    originals = {name: getattr(torch.Tensor, name) for name in CONVERSIONS}

    def counting(name):
        def call(self, *args, **kwargs):
            caller = traceback.extract_stack(limit=2)[0]
            if caller.filename.startswith(OURS):
                counts[(Path(caller.filename).name, caller.lineno, name)] += 1
            return originals[name](self, *args, **kwargs)
        return call

    for name in CONVERSIONS:
        setattr(torch.Tensor, name, counting(name))
    try:
        yield counts
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


def on_a_step_not_logged(agent):
    """``training_step`` as Lightning runs it on a step whose metrics it does not write."""
    optimizers = agent.configure_optimizers()
    agent.optimizers = lambda: optimizers
    agent.manual_backward = lambda loss: loss.backward()
    agent._trainer = SimpleNamespace(fast_dev_run=False, _logger_connector=SimpleNamespace(should_update_logs=False))
    agent.counters.updates = 3
    return agent


def dreamer_case():
    agent = DreamerV3(size="XS", batch_size=2, seq_len=8, horizon=5, video_every=0)
    agent.build(EnvSpec((3, 64, 64), 3, num_actions=4))
    b, t = 2, 8
    flags = torch.zeros(b, t, dtype=torch.bool)
    return agent, {"obs": torch.randint(0, 256, (b, t, 3, 64, 64), dtype=torch.uint8), "action": torch.randint(0, 4, (b, t)),
                   "reward": torch.randn(b, t), "terminal": flags, "first": flags, "last": flags}


def drqv2_case():
    agent = DrQv2(batch_size=4, hidden=32, feature_dim=16)
    agent.build(EnvSpec((9, 84, 84), 3, action_dim=2))
    obs = lambda: torch.randint(0, 256, (4, 9, 84, 84), dtype=torch.uint8)
    return agent, {"obs": obs(), "next_obs": obs(), "action": torch.rand(4, 2) * 2 - 1, "reward": torch.randn(4),
                   "discount": torch.full((4,), 0.99)}


@pytest.mark.parametrize("case", [dreamer_case, drqv2_case], ids=["DreamerV3", "DrQ-v2"])
def test_an_update_whose_metrics_are_not_logged_makes_no_host_sync(case):
    torch.manual_seed(0)
    agent, batch = case()
    on_a_step_not_logged(agent)
    with counted_host_syncs() as syncs:
        agent.training_step(batch, 0)
    assert dict(syncs) == {}


def test_the_counter_sees_the_conversions_of_our_code_and_not_the_tests():
    # The numerical guard's report is the one deliberate host sync (every guard.every_updates updates):
    # its bool() and int() of device tensors are counted; this test's own .item() is not.
    from worldmodels.training.guard import FiniteWatch

    watch = FiniteWatch()
    watch.observe({"loss": torch.tensor(float("nan"))}, 1)
    with counted_host_syncs() as syncs:
        assert watch.report() == ("loss", 1)
        torch.ones(()).item()
    assert {call for _, _, call in syncs} == {"__bool__", "__int__"}
    assert all(file == "guard.py" for file, _, _ in syncs)


def test_dreamer_computes_its_diagnostics_only_on_the_updates_whose_metrics_are_logged():
    def one_update(logged: bool):
        torch.manual_seed(0)
        agent, batch = dreamer_case()
        on_a_step_not_logged(agent)
        agent._trainer._logger_connector.should_update_logs = logged
        seen = {}
        agent.finite_watch.observe = lambda metrics, updates: seen.update(metrics)
        agent.log_dict = lambda *args, **kwargs: None  # no Trainer to write them
        agent.training_step(batch, 0)
        return agent, seen

    quiet, quiet_metrics = one_update(logged=False)
    logged, logged_metrics = one_update(logged=True)
    assert set(quiet_metrics) == {"wm/loss", "wm/grad_norm", "actor/loss", "actor/grad_norm", "critic/loss",
                                  "critic/grad_norm"}  # the losses and norms the update computes anyway
    assert {"wm/posterior_entropy", "imagined/return", "critic/feature_dot"} <= set(logged_metrics)
    for (name, a), b in zip(quiet.state_dict().items(), logged.state_dict().values()):
        assert torch.equal(a, b), name  # the same update either way
