"""Progress without a terminal: where no tqdm bar is drawn, every schedule writes plain lines
inside its epochs, at most every ``Loop.progress_every`` seconds; ``--quiet`` writes none."""
import io
import re

import numpy as np
import pytest

from simkit.backend import get_backend
from simkit.cli import main as _main
from simkit.commands import gait as gait_cmd
from simkit.training.loop import Loop
from simkit.training.online import OnlineTrainer
from simkit.training.progress import PlainProgress

from helpers import one_blas_thread  # noqa: F401 (autouse fixture)

LINE = re.compile(r"^epoch (\d+): (\d+)% \((\d+)/(\d+) batches\), \d+\.\d s")
TRAIN = ["train", "--backend", "numpy", "--hidden", "16", "--batch-size", "100",
         "--max-batches", "5", "--epochs", "2"]


def main(argv):
    try:
        return _main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.fixture
def every_update(monkeypatch):
    """No terminal (pytest captures), tqdm off, and a rate limit below any epoch's length."""
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.setattr(Loop, "progress_every", 1e-9)


def test_plain_progress_is_rate_limited_and_says_where_it_is():
    out = io.StringIO()
    bar = PlainProgress(5, 1, "epoch 3", every=3600.0, file=out)
    bar.update(1)
    assert out.getvalue() == ""                       # within the rate limit: nothing
    bar.every = 0.0
    bar.set_postfix(loss="0.2871")
    bar.update(1)
    assert re.fullmatch(r"epoch 3: 60% \(3/5 batches\), \d+\.\d s, loss=0\.2871\n", out.getvalue())
    step = PlainProgress(10, 0, "online", unit="step", every=0.0, file=out)
    step.update(4)
    assert out.getvalue().splitlines()[-1].startswith("online: 40% (4/10 steps), ")


def test_train_without_a_terminal_prints_progress_lines(tmp_path, capsys, every_update):
    assert main(TRAIN + ["--out-dir", str(tmp_path / "r")]) == 0
    captured = capsys.readouterr()
    lines = [m.groups() for m in map(LINE.match, captured.err.splitlines()) if m]
    assert [(e, n) for e, _, n, total in lines] == [(str(e), str(k)) for e in (1, 2)
                                                     for k in range(1, 6)]
    assert {total for *_, total in lines} == {"5"}
    assert "epoch   1/2" in captured.out                     # and the line per epoch


def test_quiet_prints_no_progress(tmp_path, capsys, every_update):
    assert main(TRAIN + ["--quiet", "--out-dir", str(tmp_path / "r")]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and not any(map(LINE.match, captured.err.splitlines()))


def test_a_bar_is_drawn_where_asked_and_lines_only_where_not():
    loop = Loop(None, None, None, None, progress=True)
    assert not isinstance(loop.bar(3, 0, "epoch 1"), PlainProgress)      # tqdm's, forced
    assert Loop(None, None, None, None, progress=False).bar(3, 0, "epoch 1") is None


def test_gait_without_a_terminal_prints_progress_lines(tmp_path, monkeypatch, capsys, every_update):
    from test_gait_cli import synthetic
    monkeypatch.setattr(gait_cmd, "load_data", synthetic())
    assert main(["gait", "--backend=numpy", "--batch_size=20", "--max_batches=6",
                 "--eval_every=2", "--nb_epochs=1", "--out_dir", str(tmp_path / "g")]) == 0
    lines = [m.groups() for m in map(LINE.match, capsys.readouterr().err.splitlines()) if m]
    assert [n for _, _, n, _ in lines] == [str(k) for k in range(1, 7)]


def test_the_online_schedule_prints_progress_lines(tmp_path, capsys, every_update):
    bk = get_backend("numpy", "float64")
    seen = []
    loop = OnlineTrainer(bk, [object()], [None], 6, lambda e, i, j: seen.append(j),
                         lambda: [float(len(seen))], names=["m"], eval_every=3, progress=None)
    loop.fit()
    err = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in err] == [f"online: {100 * k / 6:.0f}% ({k}/6 steps)"
                                                    for k in range(1, 7)]
    assert np.array_equal(seen, range(1, 7))
