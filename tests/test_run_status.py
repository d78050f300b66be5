"""A run directory never stays ``running`` once its process has left the loop."""
import pytest

from simkit.errors import NumericalError, UserError
from simkit.training.rundir import RunDir, recording_status


@pytest.mark.parametrize("exc,status,reason", [
    (KeyboardInterrupt(), "interrupted", None),
    (BrokenPipeError(), "interrupted", None),
    (NumericalError("loss is nan"), "failed", "loss is nan"),
    (UserError("bad flag"), "failed", "UserError: bad flag"),
    (RuntimeError("boom"), "failed", "RuntimeError: boom"),
])
def test_the_status_says_how_the_block_ended(tmp_path, exc, status, reason):
    run = RunDir(tmp_path / "run")
    run.create({"config": {}})
    assert run.read_info()["status"] == "running"
    with pytest.raises(type(exc)), recording_status(run):
        raise exc
    info = run.read_info()
    assert info["status"] == status and info.get("reason") == reason


def test_a_block_that_ends_normally_leaves_the_status_alone(tmp_path):
    run = RunDir(tmp_path / "run")
    run.create({"config": {}})
    with recording_status(run):
        pass
    assert run.read_info()["status"] == "running"
