"""The offline workflow's verdicts on planted dataset-Q and TD-error curves, worked out by hand."""

from pathlib import Path
from types import SimpleNamespace

import pytest

from worldmodels.errors import ConfigError
from worldmodels.training import RunClock, Workflow
from worldmodels.training.workflow import WorkflowMonitor


def verdicts(q, td, returns_ms: float = 1.0, **kw) -> list[str]:
    monitor = WorkflowMonitor(**kw)
    return [monitor.observe(a, b, returns_ms)[0] for a, b in zip(q, td)]


FALLING_TD = [0.2, 0.1, 0.05, 0.04, 0.03, 0.02, 0.02]  # at most a fifth of the returns' mean square 1


def test_a_dataset_q_that_falls_three_checks_after_its_peak_is_overfitting():
    # Peak 0.5 at the third check; 0.4, 0.35, 0.3 are three falls in a row: overfitting at the sixth.
    q = [0.1, 0.3, 0.5, 0.4, 0.35, 0.3, 0.2]
    assert verdicts(q, FALLING_TD, falls=3) == ["fine"] * 5 + ["overfitting"] * 2


def test_a_q_that_dips_and_recovers_is_not_overfitting():
    # 0.4 < 0.5, then 0.45 rises again: the count of falls restarts; 0.42, 0.41 are only two falls.
    q = [0.1, 0.5, 0.4, 0.45, 0.42, 0.41, 0.6]
    assert verdicts(q, FALLING_TD, falls=3) == ["fine"] * 7


def test_a_td_error_large_against_the_returns_scale_is_underfitting_and_a_small_one_is_not():
    rising_q = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    high_td = [0.5, 0.4, 0.45, 0.4, 0.35, 0.3, 0.3]
    # At the fifth check the last five average (0.5 + 0.4 + 0.45 + 0.4 + 0.35) / 5 = 0.42 of the returns'
    # mean square 1, at or above 0.25: underfitting (the first four checks are too few to say).
    assert verdicts(rising_q, high_td, patience=5) == ["fine"] * 4 + ["underfitting"] * 3
    # The same TD errors against returns four times larger (mean square 16): 0.42 / 16 = 0.026, fine.
    assert verdicts(rising_q, high_td, returns_ms=16.0, patience=5) == ["fine"] * 7
    # (0.1 + 0.05 + 0.04 + 0.03 + 0.02) / 5 = 0.048 < 0.25: fine.
    assert verdicts(rising_q, FALLING_TD, patience=5) == ["fine"] * 7


def test_the_logged_figures_are_the_q_its_distance_from_the_peak_and_the_td_error_against_returns_and_start():
    monitor = WorkflowMonitor(patience=2)
    monitor.observe(0.5, 2.0, 4.0)
    verdict, new_peak, figures = monitor.observe(0.2, 1.0, 4.0)
    assert not new_peak and verdict == "underfitting"
    # td_vs_returns: (2 / 4 + 1 / 4) / 2 = 0.375 >= 0.25; td_vs_start: 1 / 2.
    assert figures == {"dataset_q": 0.2, "dataset_q_from_peak": pytest.approx(-0.3), "td_vs_returns": 0.375,
                       "td_vs_start": 0.5, "verdict": 2.0}


class Health:
    """The health callback as the workflow reads it: its latest check."""

    last = None


class Trainer:
    """What the callback reads of Lightning's trainer, recording the checkpoints it is asked to save."""

    def __init__(self, root: Path):
        self.health = Health()
        self.callbacks = [self.health]
        self.clock = RunClock(offline=True)  # what the loop hands its callbacks
        self.default_root_dir, self.loggers, self.global_step, self.should_stop = str(root), [], 0, False
        self.saved: list[tuple[str, int]] = []

    def save_checkpoint(self, path, weights_only=False):
        self.saved.append((Path(path).name, self.clock.counters.updates))

    def check(self, updates: int, q: float, td: float):
        self.clock.counters.updates = updates
        self.health.last = (updates, {"q_mean": q, "td_loss": td, "mc_return_ms": 1.0})


def test_overfitting_keeps_the_checkpoint_of_the_peak_writes_the_verdicts_and_stops_when_asked(tmp_path):
    trainer, workflow = Trainer(tmp_path), Workflow(falls=2, early_stop=True)
    workflow.attach(SimpleNamespace(clock=trainer.clock))
    for updates, q in [(100, 0.1), (200, 0.4), (300, 0.3), (400, 0.2)]:
        trainer.check(updates, q, 0.1 / updates)
        workflow.on_train_batch_end(trainer, None, None, None, 0)
        workflow.on_train_batch_end(trainer, None, None, None, 0)  # the same check is read once
    assert trainer.saved == [("early_stop.ckpt", 100), ("early_stop.ckpt", 200)]  # the last one: the peak's
    assert trainer.should_stop
    lines = (tmp_path / "workflow.txt").read_text().splitlines()
    assert [line.split(":")[:2] for line in lines] == [["update 100", " fine"], ["update 400", " overfitting"]]
    assert "early_stop.ckpt" in lines[1]


def test_an_online_run_gets_no_verdict_unless_asked(tmp_path):
    trainer, workflow = Trainer(tmp_path), Workflow()
    workflow.attach(SimpleNamespace(clock=trainer.clock))
    trainer.clock.offline = False
    trainer.check(100, 0.1, 1.0)
    workflow.on_train_batch_end(trainer, None, None, None, 0)
    assert not (tmp_path / "workflow.txt").exists() and not trainer.saved


def test_bad_workflow_settings_are_one_sentence():
    with pytest.raises(ConfigError, match="workflow.falls"):
        Workflow(falls=0)
