"""The offline workflow's verdicts on planted dataset-Q and TD-error curves, worked out by hand."""

from pathlib import Path
from types import SimpleNamespace

import pytest

from worldmodels.errors import ConfigError
from worldmodels.training import Counters, Workflow
from worldmodels.training.workflow import WorkflowMonitor


def verdicts(q, td, **kw) -> list[str]:
    monitor = WorkflowMonitor(**kw)
    return [monitor.observe(a, b)[0] for a, b in zip(q, td)]


FALLING_TD = [1.0, 0.6, 0.4, 0.3, 0.2, 0.1, 0.1]


def test_a_dataset_q_that_falls_three_checks_after_its_peak_is_overfitting():
    # Peak 0.5 at the third check; 0.4, 0.35, 0.3 are three falls in a row: overfitting at the sixth.
    q = [0.1, 0.3, 0.5, 0.4, 0.35, 0.3, 0.2]
    assert verdicts(q, FALLING_TD, falls=3) == ["fine"] * 5 + ["overfitting"] * 2


def test_a_q_that_dips_and_recovers_is_not_overfitting():
    # 0.4 < 0.5, then 0.45 rises again: the count of falls restarts; 0.42, 0.41 are only two falls.
    q = [0.1, 0.5, 0.4, 0.45, 0.42, 0.41, 0.6]
    assert verdicts(q, FALLING_TD, falls=3) == ["fine"] * 7


def test_a_td_error_that_stays_near_its_start_is_underfitting_and_one_that_falls_is_not():
    rising_q = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    # Last five checks at the sixth: (0.9 + 0.95 + 0.9 + 0.85 + 0.8) / 5 = 0.88 of the start 1.0 >= 0.5.
    assert verdicts(rising_q, [1.0, 0.9, 0.95, 0.9, 0.85, 0.8, 0.8], patience=5) == ["fine"] * 5 + ["underfitting"] * 2
    # (0.6 + 0.4 + 0.3 + 0.2 + 0.1) / 5 = 0.32 < 0.5: fine.
    assert verdicts(rising_q, FALLING_TD, patience=5) == ["fine"] * 7


def test_the_logged_figures_are_the_q_its_distance_from_the_peak_and_the_td_error_against_its_start():
    monitor = WorkflowMonitor(patience=2)
    monitor.observe(0.5, 2.0)
    _, new_peak, figures = monitor.observe(0.2, 1.0)
    assert not new_peak
    assert figures == {"dataset_q": 0.2, "dataset_q_from_peak": pytest.approx(-0.3), "td_vs_start": 0.75,
                       "verdict": 0.0}  # (2.0 + 1.0) / 2 / 2.0


class Health:
    """The health callback as the workflow reads it: its latest check."""

    last = None


class Trainer:
    """What the callback reads of Lightning's trainer, recording the checkpoints it is asked to save."""

    def __init__(self, root: Path):
        self.health = Health()
        self.callbacks = [self.health]
        self.datamodule = SimpleNamespace(offline=True, counters=Counters())
        self.default_root_dir, self.loggers, self.global_step, self.should_stop = str(root), [], 0, False
        self.saved: list[tuple[str, int]] = []

    def save_checkpoint(self, path, weights_only=False):
        self.saved.append((Path(path).name, self.datamodule.counters.updates))

    def check(self, updates: int, q: float, td: float):
        self.datamodule.counters.updates = updates
        self.health.last = (updates, {"q_mean": q, "td_loss": td})


def test_overfitting_keeps_the_checkpoint_of_the_peak_writes_the_verdicts_and_stops_when_asked(tmp_path):
    trainer, workflow = Trainer(tmp_path), Workflow(falls=2, early_stop=True)
    for updates, q in [(100, 0.1), (200, 0.4), (300, 0.3), (400, 0.2)]:
        trainer.check(updates, q, 1.0 / updates)
        workflow.on_train_batch_end(trainer, None, None, None, 0)
        workflow.on_train_batch_end(trainer, None, None, None, 0)  # the same check is read once
    assert trainer.saved == [("early_stop.ckpt", 100), ("early_stop.ckpt", 200)]  # the last one: the peak's
    assert trainer.should_stop
    lines = (tmp_path / "workflow.txt").read_text().splitlines()
    assert [line.split(":")[:2] for line in lines] == [["update 100", " fine"], ["update 400", " overfitting"]]
    assert "early_stop.ckpt" in lines[1]


def test_an_online_run_gets_no_verdict_unless_asked(tmp_path):
    trainer, workflow = Trainer(tmp_path), Workflow()
    trainer.datamodule.offline = False
    trainer.check(100, 0.1, 1.0)
    workflow.on_train_batch_end(trainer, None, None, None, 0)
    assert not (tmp_path / "workflow.txt").exists() and not trainer.saved


def test_bad_workflow_settings_are_one_sentence():
    with pytest.raises(ConfigError, match="workflow.falls"):
        Workflow(falls=0)
