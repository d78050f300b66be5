"""``simkit summary``: mean and std over seeds, grouped by configuration."""
import csv

import pytest

from simkit.cli import main
from simkit.training.rundir import RunDir


def _run(path, rule, seed, accs, status="finished"):
    r = RunDir(path)
    r.create({"config": {"rule": rule, "dataset": "mnist", "seed": seed, "lr": 0.1,
                         "rule_opts": {"x": 1} if rule == "dfa" else {}},
              "data": {"task": "classification"}, "summary": {"avg_time_per_epoch": 2.0}})
    r.write_metrics([{"epoch": e, "split": "test", "metric": "acc", "value": a}
                     for e, a in enumerate(accs)])
    r.update_info(status=status)


def test_summary_pools_seeds_and_labels_the_difference(tmp_path, capsys):
    _run(tmp_path / "bp1", "bp", 1, [0.1, 0.90, 0.95])
    _run(tmp_path / "bp2", "bp", 2, [0.1, 0.97, 0.93])
    _run(tmp_path / "dfa1", "dfa", 1, [0.1, 0.80, 0.85])
    _run(tmp_path / "dfa2", "dfa", 2, [0.1, 0.99, 0.99], status="interrupted")   # skipped
    rc = main(["summary", str(tmp_path), "--csv", str(tmp_path / "t.csv")])
    out, err = capsys.readouterr()
    assert rc == 0 and "skipped" in err and "dfa2" in err
    rows = {r["run"]: r for r in csv.DictReader(open(tmp_path / "t.csv"))}
    assert set(rows) == {"rule=bp", "rule=dfa, rule_opts.x=1"}
    bp = rows["rule=bp"]
    assert bp["seeds"] == "1 2" and float(bp["last_mean"]) == pytest.approx(0.94)
    assert float(bp["last_std"]) == pytest.approx(0.0141421356, rel=1e-6)   # sample std of .95, .93
    assert float(bp["best_mean"]) == pytest.approx(0.96)                    # best epochs: .95, .97
    assert rows["rule=dfa, rule_opts.x=1"]["seeds"] == "1"
    assert "| rule=bp | 1,2 | 2 | acc 94.00% ± 1.41 | 96.00% ± 1.41 | 2.00 |" in out


def test_unfinished_runs_are_listed_on_request_in_rows_of_their_own(tmp_path, capsys):
    _run(tmp_path / "bp1", "bp", 1, [0.1, 0.90, 0.95])
    _run(tmp_path / "bp2", "bp", 2, [0.1, 0.97], status="running")
    assert main(["summary", str(tmp_path), "--unfinished", "--csv", str(tmp_path / "t.csv")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "t.csv")))
    assert len(rows) == 2                                       # not pooled with seed 1
    running = [r for r in rows if "status=running" in r["run"]][0]
    assert "folder=bp2" in running["run"] and running["epochs"] == "1"
    assert float(running["last_mean"]) == pytest.approx(0.97)
    finished = [r for r in rows if "status" not in r["run"]][0]
    assert finished["seeds"] == "1" and float(finished["last_mean"]) == pytest.approx(0.95)


def test_gait_runs_are_labelled_by_their_own_options(tmp_path, capsys):
    """A ``simkit gait`` run stores run.py's options, not simkit's: no simkit defaults (lr,
    rule, ...) leak into its label."""
    for name, algorithm, seed in (("bp", "BP", 1), ("gait", "GAIT", 1), ("gait2", "GAIT", 2)):
        r = RunDir(tmp_path / name)
        r.create({"config": {"algorithm": algorithm, "seed": seed, "dataset": "MNIST",
                             "learning_rate": 1e-4}, "paper_command": "gait"})
        r.write_metrics([{"epoch": 1, "split": "test", "metric": "acc", "value": 0.9}])
        r.update_info(status="finished", summary={"train_seconds_per_epoch": 80.0 + seed,
                                                  "eval_seconds_per_epoch": 2.0})
    assert main(["summary", str(tmp_path), "--csv", str(tmp_path / "t.csv")]) == 0
    rows = {r["run"]: r for r in csv.DictReader(open(tmp_path / "t.csv"))}
    assert set(rows) == {"algorithm=BP", "algorithm=GAIT"}
    assert rows["algorithm=GAIT"]["seeds"] == "1 2"
    assert float(rows["algorithm=GAIT"]["s_per_epoch"]) == pytest.approx(83.5)   # (83 + 84) / 2


def test_copies_of_one_run_are_flagged_not_pooled_silently(tmp_path, capsys):
    """Four runs of one seed and configuration are copies, not replicates: their "± 0.00" comes
    with one warning line per row."""
    for k in range(4):
        _run(tmp_path / f"bp{k}", "bp", 1, [0.1, 0.9, 0.95])
    _run(tmp_path / "dfa1", "dfa", 1, [0.1, 0.8, 0.85])
    _run(tmp_path / "dfa1b", "dfa", 1, [0.1, 0.8, 0.85])
    _run(tmp_path / "dfa2", "dfa", 2, [0.1, 0.8, 0.86])
    assert main(["summary", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 2, err
    bp = next(w for w in warnings if "rule=bp:" in w)
    assert "4 runs share seed 1" in bp and "not replicates" in bp
    assert "3 runs share seed 1 " in next(w for w in warnings if "rule=dfa" in w)
    assert "| rule=bp | 1,1,1,1 |" in out                  # still reported, with the warning


def test_distinct_seeds_give_no_warning(tmp_path, capsys):
    _run(tmp_path / "bp1", "bp", 1, [0.1, 0.90, 0.95])
    _run(tmp_path / "bp2", "bp", 2, [0.1, 0.97, 0.93])
    assert main(["summary", str(tmp_path)]) == 0
    assert "warning" not in capsys.readouterr().err


def test_summary_of_nothing_is_a_user_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["summary", str(tmp_path / "empty")]) == 2
    assert main(["summary", str(tmp_path / "missing")]) == 2
