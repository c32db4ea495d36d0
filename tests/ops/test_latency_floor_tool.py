"""bench/latency_floor.py: the open-loop cluster path answers every request once, on the first
follower answer, and bad arguments are refused. (The figures themselves are benchmark output,
never asserted.)"""
import pytest

from benchscript import load


def _tool():
    return load("latency_floor")


def test_open_loop_cluster_path_answers_every_request():
    tool = _tool()
    lost = [None]
    out = tool._run_open_loop(rate=2_000, requests=300, lost=lost)
    assert lost == [0]
    assert len(out) == 300                      # the warm-up requests are not counted
    assert all(ns > 0 for ns in out)


def test_one_at_a_time_shapes_answer_every_request():
    tool = _tool()
    assert len(tool._run("cluster path", False, 100)) == 100
    assert len(tool._run("ping-pong", False, 100)) == 100


@pytest.mark.parametrize("argv", [["--rate", "0"], ["--requests", "-5"]])
def test_bad_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        _tool().main(argv)
    assert exc.value.code == 2
    assert "must be positive" in capsys.readouterr().err
