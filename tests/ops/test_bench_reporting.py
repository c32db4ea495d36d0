"""What ``aeronpy bench`` writes about a run: the command that reproduces it (whichever way it
was launched), the part count of its progress line, and plots that do not draw a system that
was not run. The measurements are replaced by canned results: only the reporting is tested."""
from __future__ import annotations

import json
import sys
import types

import pytest

from aeronpy import bench

CANNED = [
    {"system": "aeronpy", "mode": "throughput", "msg_size": 32, "msgs_per_s": 300.0},
    {"system": "aeronpy", "mode": "latency-serial", "msg_size": 32, "achieved_rate": 10.0,
     "latency": {"p50_us": 100.0, "p90_us": 1, "p99_us": 1, "p99_9_us": 1, "max_us": 1}},
    {"system": "aeronpy", "mode": "failover", "msg_size": 32, "failover_gap_ms": 500.0},
]


def _run_main(monkeypatch, capsys, argv, sys_argv, orig_argv):
    monkeypatch.setattr(bench, "run_aeronpy", lambda *a, **k: [dict(r) for r in CANNED])
    monkeypatch.setattr(sys, "argv", sys_argv)
    monkeypatch.setattr(sys, "orig_argv", orig_argv, raising=False)
    assert bench.main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_the_script_wrapper_records_its_real_command_line(monkeypatch, capsys):
    args = ["--quick", "--no-pysyncobj", "--sched-policy", "normal", "--json"]
    report = _run_main(monkeypatch, capsys, None, ["bench/cluster_bench.py", *args],
                       ["python", "bench/cluster_bench.py", *args])
    # it was "aeronpy bench --no-pysyncobj ...": --quick lost, argv[2:] of a wrapper
    assert report["command"] == "python bench/cluster_bench.py " + " ".join(args)


def test_the_aeronpy_command_records_its_arguments(monkeypatch, capsys):
    args = ["--quick", "--no-pysyncobj", "--sched-policy", "normal", "--json", "--plots", "a b"]
    monkeypatch.setattr(bench, "write_plots", lambda report, d: [])
    # --plots checks matplotlib is importable; CI's test install has none, and plots are
    # replaced above anyway
    monkeypatch.setitem(sys.modules, "matplotlib", types.ModuleType("matplotlib"))
    report = _run_main(monkeypatch, capsys, args, ["python -m aeronpy", "bench", *args],
                       ["python", "-m", "aeronpy", "bench", *args])
    assert report["command"] == "aeronpy bench --quick --no-pysyncobj --sched-policy normal " \
                                "--json --plots 'a b'"


def test_the_progress_line_counts_the_parts_it_runs():
    assert bench.aeronpy_part_count([32], []) == 5          # --quick: 2 throughputs, open loop,
    assert bench.aeronpy_part_count([32], [256, 1024]) == 7  # 1 at a time, failover; + --plots
    assert bench.aeronpy_part_count([32, 256], [1024]) == 9


def test_rate_help_gives_its_default():
    text = bench.build_parser().format_help()
    assert "default 10,000" in " ".join(text.split())


def test_no_pysyncobj_plot_draws_no_pysyncobj_bars(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib.axes

    labels = []
    real_bar = matplotlib.axes.Axes.bar

    def bar(self, *a, **k):
        labels.append(k.get("label"))
        return real_bar(self, *a, **k)
    monkeypatch.setattr(matplotlib.axes.Axes, "bar", bar)
    report = {"aeronpy": [dict(r) for r in CANNED], "pysyncobj": [], "offered_rate": 10000.0}
    paths = bench.write_plots(report, str(tmp_path))
    assert len(paths) == 2
    assert labels == ["aeronpy"]
