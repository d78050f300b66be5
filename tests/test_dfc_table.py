"""figures/dfc_table.py: the DFC / Strong-DFC table and curves from saved run folders."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from simkit.commands.dfc_published import PUBLISHED, method_of
from simkit.training.rundir import RunDir

spec = importlib.util.spec_from_file_location(
    "dfc_table", Path(__file__).parents[1] / "figures" / "dfc_table.py")
fig = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fig)


def fake_run(path, command, rule_opts, test, val, status="running"):
    r = RunDir(path)
    r.create({"config": {"rule": "dfc", "rule_opts": rule_opts}, "paper_command": command})
    rows = [{"epoch": 0, "split": "test", "metric": "acc", "value": 0.1}]
    for e, (a, v) in enumerate(zip(test, val), start=1):
        rows += [{"epoch": e, "split": "test", "metric": "acc", "value": a},
                 {"epoch": e, "split": "val", "metric": "acc", "value": v},
                 {"epoch": e, "split": "test", "metric": "loss", "value": 9.0}]
    r.write_metrics(rows)
    r.update_info(status=status)


def test_method_of_tells_the_three_commands_apart():
    assert method_of({"rule_opts": {"single_phase": True, "strong_feedback": True}}) == "Strong-DFC"
    assert method_of({"rule_opts": {"strong_feedback": True, "ss": True}}) == "Strong-DFC 2-phase"
    assert method_of({"rule_opts": {}}) == "DFC"
    assert [p.command for p in PUBLISHED.values()] == ["run_dfc", "run_dfc_single_phase", "run_dfc"]


def test_table_takes_test_accuracy_at_the_best_validation_epoch(tmp_path, capsys):
    fake_run(tmp_path / "dfc", "run_dfc", {}, [0.95, 0.97, 0.96], [0.96, 0.98, 0.97])
    fake_run(tmp_path / "sdfc", "run_dfc_single_phase", {"single_phase": True},
             [0.90, 0.975], [0.99, 0.95], status="finished")
    res = fig.main(["--runs", str(tmp_path / "dfc"), str(tmp_path / "sdfc"),
                    "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert "| DFC | dfc | 3 | 96.00% | 97.00% (2) | 97.80% | >= 97.6% | running |" in out
    assert "| Strong-DFC | sdfc | 2 | 97.50% | 90.00% (1) | 97.72% | >= 97.5% | finished |" in out
    assert (tmp_path / "out" / "dfc_table.png").stat().st_size > 0
    np.testing.assert_array_equal(res["epoch_0"], [1, 2, 3])              # epoch 0 left out
    again = fig.main(["--plot-only", "--out", str(tmp_path / "out")])
    assert list(again["methods"]) == ["DFC", "Strong-DFC"]


def test_one_epoch_plot_has_integer_ticks_markers_and_a_title_inside_the_figure(tmp_path,
                                                                                monkeypatch):
    drawn = []
    monkeypatch.setattr(fig, "save_figure", lambda f, out, name: drawn.append(f))
    res = {"methods": np.array(list(PUBLISHED)), "status": np.array(["finished"] * 3),
           "folders": np.array([m.replace(" ", "_") for m in PUBLISHED]),
           "quick": np.asarray(True)}
    for i in range(3):
        res[f"epoch_{i}"], res[f"test_{i}"], res[f"val_{i}"] = \
            np.array([1]), np.array([0.1 + i / 100]), np.array([0.1])
    fig.plot(res, tmp_path)
    (f,) = drawn
    f.canvas.draw()
    ax = f.axes[0]
    assert ax.get_xlim() == (0.5, 1.5)
    assert [t for t in ax.get_xticks() if 0.5 <= t <= 1.5] == [1]          # integer epochs
    simkit = [line for line in ax.get_lines() if line.get_label().endswith(": simkit")]
    assert len(simkit) == 3 and all(line.get_marker() == "o" for line in simkit)
    box, title = f.bbox, ax.title.get_window_extent()
    assert box.x0 <= title.x0 and title.x1 <= box.x1 and title.y1 <= box.y1
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1                       # beside the data


def test_a_folder_that_is_not_a_dfc_run_is_a_one_line_error(tmp_path, capsys):
    r = RunDir(tmp_path / "bp")
    r.create({"config": {"rule": "bp"}, "paper_command": "run_bp"})
    with pytest.raises(SystemExit) as e:
        fig.main(["--runs", str(tmp_path / "bp"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "not a simkit run_dfc" in err[0]


def test_no_runs_and_no_quick_says_what_to_pass(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        fig.main(["--out", str(tmp_path / "out")])
    assert e.value.code == 2 and "pass --runs DIR" in capsys.readouterr().err


def test_full_starts_missing_runs_continues_unfinished_ones_and_keeps_finished_ones(
        tmp_path, monkeypatch, capsys):
    """--full: a run with no folder starts, a running one gets --resume, a finished one is not
    run again; each command is the published one verbatim plus --threads and --out_dir."""
    calls = []

    def fake_main(argv):
        calls.append(argv)
        out = Path(argv[argv.index("--out_dir") + 1])
        if "--resume" not in argv:
            fake_run(out, argv[0], {"single_phase": argv[0] == "run_dfc_single_phase"}, [], [])
        RunDir(out).update_info(status="finished")
        return 0

    monkeypatch.setattr(fig, "simkit_main", fake_main)
    root = tmp_path / "runs"
    fake_run(root / "Strong-DFC", "run_dfc_single_phase", {"single_phase": True}, [0.9], [0.9])
    fake_run(root / "DFC", "run_dfc", {}, [0.97], [0.97], status="finished")
    res = fig.main(["--full", str(root), "--methods", "DFC", "Strong-DFC", "Strong-DFC 2-phase",
                    "--out", str(tmp_path / "out")])
    assert [c[0] for c in calls] == ["run_dfc_single_phase", "run_dfc"]      # DFC is finished
    single, two_phase = calls
    assert single[-1] == "--resume" and "--resume" not in two_phase
    assert single[1:len(single) - 5] == shlex_split(PUBLISHED["Strong-DFC"].flags)
    assert single[-5:-1] == ["--threads", "1", "--out_dir", str(root / "Strong-DFC")]
    assert list(res["folders"]) == ["DFC", "Strong-DFC", "Strong-DFC_2-phase"]
    assert "| Strong-DFC | Strong-DFC | 1 |" in capsys.readouterr().out


def test_full_stops_with_one_line_when_a_run_fails(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fig, "simkit_main", lambda argv: 2)
    with pytest.raises(SystemExit) as e:
        fig.main(["--full", str(tmp_path / "runs"), "--methods", "DFC", "--out",
                  str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and "the run of DFC" in err[-1] and "again to continue" in err[-1]


def shlex_split(flags):
    import shlex
    return shlex.split(flags)
