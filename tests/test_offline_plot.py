"""The offline workflow plot reads the runs' logged series (resumes included) and their verdicts."""

from worldmodels.analysis.offline_plot import plot, verdicts


def write_run(run, rows: list[str], resumed: list[str] = (), workflow: str = ""):
    header = "env_steps,eval/return_mean,health/mc_return_mean,health/q_mean,health/td_loss,updates\n"
    (run / "csv").mkdir(parents=True)
    (run / "csv" / "metrics.csv").write_text(header + "".join(r + "\n" for r in rows))
    if resumed:
        (run / "csv-resumed-1").mkdir()
        (run / "csv-resumed-1" / "metrics.csv").write_text(header + "".join(r + "\n" for r in resumed))
    (run / "workflow.txt").write_text(workflow)


def test_the_plot_draws_each_runs_dataset_q_returns_td_error_and_evaluations_by_update(tmp_path):
    write_run(tmp_path / "cql", ["0,,-0.1,0.2,0.5,100", "0,0.4,,,,200"], ["0,,-0.1,0.3,0.25,300"],
              "update 100: fine: nothing to change\nupdate 300: overfitting: stop early\n")
    write_run(tmp_path / "dqn", ["0,,-0.1,0.9,2.0,100"])
    data = plot({"CQL": tmp_path / "cql", "DQN": tmp_path / "dqn"}, tmp_path / "w.png")
    assert data["CQL"]["health/q_mean"] == [(100, 0.2), (300, 0.3)]  # the resume's rows follow the first file's
    assert data["CQL"]["health/td_loss"] == [(100, 0.5), (300, 0.25)]
    assert data["CQL"]["eval/return_mean"] == [(200, 0.4)]
    assert data["DQN"]["health/q_mean"] == [(100, 0.9)] and data["DQN"]["eval/return_mean"] == []
    assert verdicts(tmp_path / "cql") == [(100, "fine"), (300, "overfitting")]
    assert (tmp_path / "w.png").stat().st_size > 10_000
