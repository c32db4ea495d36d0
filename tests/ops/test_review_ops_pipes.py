"""``aeronpy tool ... | head``: a reader that goes away early.

Outside the test harness stdout is block-buffered (no ``PYTHONUNBUFFERED``), so the tool's
answer was written only when the interpreter flushed stdout at exit, after ``main`` had
returned: ``Exception ignored ... BrokenPipeError`` on stderr and exit status 120 instead of
the command's own status. And when the pipe broke inside ``main``, the status was always 0,
so ``aeronpy tool is-leader | head`` said "yes" for a follower or a stopped node.
"""
import subprocess
import sys

import pytest

from aeronpy.cluster.counters import CountersWriter
from aeronpy.cluster.nodefiles import ErrorLog
from aeronpy.testing.process_cluster import child_env

MEMBERS = [{"id": 0, "host": "127.0.0.1", "consensus_port": 20100, "ingress_port": 20101}]


def run_with_reader_gone(tmp_path, *args, unbuffered=False):
    """Run ``python -m aeronpy ARGS`` with stdout a pipe whose reader is already gone, as
    an operator's shell runs it (stdout block-buffered unless ``unbuffered``); return
    (status, stderr)."""
    env = child_env()
    env.pop("PYTHONUNBUFFERED", None)
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    child = subprocess.Popen([sys.executable, "-m", "aeronpy", *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env, cwd=str(tmp_path))
    child.stdout.close()
    _, err = child.communicate(timeout=60)
    return child.returncode, err.decode(errors="replace")


@pytest.fixture
def stopped_dir(tmp_path):
    """The data dir of a member that stopped cleanly, with many distinct errors recorded."""
    data_dir = tmp_path / "d"
    CountersWriter(data_dir, member_id=0, cluster_id=7, members=MEMBERS).close()
    log = ErrorLog(data_dir)
    for i in range(300):          # `errors` prints far more than a pipe buffer
        try:
            raise RuntimeError(f"boom {i}")
        except RuntimeError as exc:
            log.record(exc)
    log.close()
    return str(data_dir)


@pytest.mark.parametrize("unbuffered", [False, True])
@pytest.mark.parametrize("command, status", [("is-leader", 1), ("pid", 1), ("describe", 0),
                                             ("errors", 0), ("metrics", 0)])
def test_a_reader_that_goes_away_keeps_the_exit_status_and_gets_no_noise(tmp_path, stopped_dir,
                                                                      command, status,
                                                                      unbuffered):
    code, err = run_with_reader_gone(tmp_path, "tool", command, "--data-dir", stopped_dir,
                                     unbuffered=unbuffered)
    assert "BrokenPipe" not in err and "Traceback" not in err and "Exception ignored" not in err, err
    assert code == status, (code, err)


def test_a_request_commands_answer_to_a_gone_reader_keeps_its_status(tmp_path):
    """The admin-path commands print through another route (``recording-log`` here)."""
    from opsfiles import one_member_node
    node = one_member_node(tmp_path)
    node.close()
    code, err = run_with_reader_gone(tmp_path, "tool", "recording-log", "--data-dir",
                                     str(tmp_path / "n0"))
    assert "BrokenPipe" not in err and "Exception ignored" not in err, err
    assert code == 0, (code, err)
