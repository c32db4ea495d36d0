"""The core must stay sans-I/O: no clock, no global randomness, no sockets, files or threads."""
from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import aeronpy.core

FORBIDDEN = {"time", "random", "socket", "os", "threading", "select", "datetime", "asyncio", "io",
             "subprocess", "signal"}
CORE_DIR = pathlib.Path(aeronpy.core.__file__).parent


def _imported_names(path: pathlib.Path) -> set:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_core_sources_import_nothing_impure():
    files = sorted(CORE_DIR.glob("*.py"))
    assert len(files) >= 8
    for path in files:
        bad = _imported_names(path) & FORBIDDEN
        assert not bad, f"{path.name} imports {sorted(bad)}"


def test_source_check_catches_an_impure_import(tmp_path):
    """Negative control: the source check does see a forbidden import."""
    impure = tmp_path / "impure.py"
    impure.write_text("import os\nfrom time import monotonic_ns\n")
    assert _imported_names(impure) & FORBIDDEN == {"os", "time"}


_PROBE = r"""
import sys
import aeronpy, aeronpy.service, aeronpy._logindex   # the package itself may load what it likes
before = set(sys.modules)
import aeronpy.core, aeronpy.core.raft, aeronpy.core.election, aeronpy.core.replication
import aeronpy.core.progress, aeronpy.core.quorum, aeronpy.core.ready, aeronpy.core.config
new = {name.split(".")[0] for name in set(sys.modules) - before}
print(",".join(sorted(new)))
"""


def test_importing_the_core_loads_no_impure_module():
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60,
                         cwd=str(CORE_DIR.parent.parent))
    assert out.returncode == 0, out.stderr
    loaded = set(filter(None, out.stdout.strip().split(",")))
    assert not loaded & FORBIDDEN, f"importing aeronpy.core loaded {sorted(loaded & FORBIDDEN)}"
