"""What the ``python -m`` tools and ``aeronpy bench`` print names things a user can act on.
Before (a fresh user's report): ``python -m aeronpy.testing.soak --help`` printed
``usage: soak.py`` (a file nobody runs), and ``aeronpy bench`` headed its goals with
"targets (issue 9, ...)", a reference to the project's own tracker."""
from __future__ import annotations

import os
import sys

import pytest

from aeronpy import bench
from aeronpy.testing import pysyncobj_harness, soak, swarm


def _usage(main, argv0, monkeypatch, capsys) -> str:
    monkeypatch.setattr(sys, "argv", [argv0, "--help"])
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    return capsys.readouterr().out.splitlines()[0]


@pytest.mark.parametrize("module", [soak, swarm, pysyncobj_harness])
def test_a_module_run_with_dash_m_names_itself_so(module, monkeypatch, capsys):
    # under `python -m`, sys.argv[0] is the module's file
    usage = _usage(module.main, os.path.abspath(module.__file__), monkeypatch, capsys)
    assert usage.startswith(f"usage: python -m {module.__name__} "), usage


def test_the_pysyncobj_script_wrapper_keeps_its_own_name(monkeypatch, capsys):
    usage = _usage(pysyncobj_harness.main, "bench/pysyncobj_bench.py", monkeypatch, capsys)
    assert usage.startswith("usage: pysyncobj_bench.py "), usage


def test_bench_says_what_its_targets_are():
    rows = []
    report = {"machine": {}, "duration_s": 1.0, "rows": rows, "aeronpy": [], "pysyncobj": [],
              "targets": bench.check_targets([], rows)}
    text = bench.format_table(report)
    heading = next(line for line in text.splitlines() if line.startswith("targets"))
    assert "issue" not in text
    assert heading == "targets (aeronpy's performance goals, for 32-byte messages):"
    assert "throughput >= 200,000 msgs/s" in text
