"""docs/programming.md runs as written.

The guide's ```python blocks run in order, in one namespace, in a child process whose working
directory is a temporary one (a block preceded by ``<!-- file: NAME -->`` is written there
instead: the ProcessCluster example's service module and the cluster.toml). Every port the guide names is replaced by a free one on 127.0.0.1.
Each line that ``print``s with a ``# => text`` comment must print exactly ``text``, and a
block prints nothing else. ``<!-- not run -->`` on the line before a fence marks a fragment
that is not run. The whole run is bounded by one timeout.

Besides running the examples: the guide's ``aeronpy.*`` names must exist, the result codes it
quotes must have the values it quotes, its callback and ``Cluster`` tables must list exactly
the callbacks of ``ClusteredService`` and the public members of ``Cluster``, and the
ClientConfig fields it tabulates must exist with the defaults it gives.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

from aeronpy.testing.process_cluster import child_env

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DOC = os.path.join(ROOT, "docs", "programming.md")
RUN_TIMEOUT_S = 120          # the run takes a few seconds; this only bounds a hang
EXPECT = re.compile(r"#\s*=>\s?(.*)$")
MARKER = re.compile(r"^<!--\s*(.*?)\s*-->$")


def parse_blocks(text: str) -> list:
    """Every fenced block: dict(lang, code, line (1-based, of the fence), marker)."""
    blocks = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        start = i
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        assert j < len(lines), f"unclosed fence at programming.md:{start + 1}"
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        marker = MARKER.match(lines[k].strip()) if k >= 0 else None
        blocks.append({"lang": fence.group(1), "code": "\n".join(lines[start + 1:j]) + "\n",
                       "line": start + 1, "marker": marker.group(1) if marker else None})
        i = j + 1
    return blocks


def expectations(block: dict) -> list:
    """The ``# => text`` of each print line, in order; a ``# =>`` elsewhere is a doc error."""
    out = []
    for offset, line in enumerate(block["code"].split("\n"), start=1):
        match = EXPECT.search(line)
        if match:
            assert "print(" in line, (f"programming.md:{block['line'] + offset}: '# =>' only "
                                      f"belongs on a print line: {line!r}")
            out.append(match.group(1).rstrip())
    return out


def runnable(blocks: list) -> list:
    """(kind, name, code, line, expected) in document order: "file" or "python" steps."""
    steps = []
    for block in blocks:
        marker = block["marker"] or ""
        if marker == "not run":
            continue
        if marker.startswith("file:"):
            steps.append(("file", marker[len("file:"):].strip(), block["code"], block["line"], []))
        elif block["lang"] == "python":
            steps.append(("python", None, block["code"], block["line"], expectations(block)))
    return steps


def renumber_ports(steps: list) -> list:
    """Replace every port the guide names (``*_port = N`` / ``"*_port": N``) by a free one."""
    from aeronpy.testing.process_cluster import free_udp_ports
    ports = sorted({int(p) for _, _, code, _, _ in steps
                    for p in re.findall(r"""_port["']?\s*[=:]\s*(\d{4,5})\b""", code)})
    free = free_udp_ports(len(ports))
    mapping = {str(old): str(new) for old, new in zip(ports, free)}

    def swap(text: str) -> str:
        return re.sub(r"\b(\d{4,5})\b", lambda m: mapping.get(m.group(1), m.group(1)), text)
    return [(kind, name, swap(code), line, [swap(e) for e in expected])
            for kind, name, code, line, expected in steps], mapping


# Runs in the child: each step in order; stdout of each python block is compared with its
# expectations. Ends with os._exit so a thread an example left running cannot hang it.
DRIVER = textwrap.dedent(r'''
    import contextlib, io, json, os, sys, traceback
    steps = json.load(open(sys.argv[1]))
    namespace = {"__name__": "__programming_doc__"}
    code = 0
    for kind, name, text, line, expected in steps:
        if kind == "file":
            with open(name, "w") as f:
                f.write(text)
            continue
        captured = io.StringIO()
        try:
            with contextlib.redirect_stdout(captured):
                exec(compile(text, f"programming.md:{line}", "exec"), namespace)
        except BaseException:
            sys.stderr.write(f"\nblock at programming.md:{line} raised:\n{traceback.format_exc()}"
                             f"printed so far: {captured.getvalue()!r}\n")
            code = 1
            break
        got = captured.getvalue().splitlines()
        if got != expected:
            sys.stderr.write(f"\nblock at programming.md:{line} printed {got!r}\n"
                             f"                   the guide says {expected!r}\n")
            code = 1
            break
        print(f"ok programming.md:{line} ({len(expected)} outputs checked)", flush=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
''')


@pytest.fixture(scope="module")
def doc_text() -> str:
    with open(DOC, encoding="utf-8") as f:
        return f.read()


def test_the_programming_guide_runs_and_prints_what_it_says(doc_text, tmp_path):
    steps = runnable(parse_blocks(doc_text))
    python_steps = [s for s in steps if s[0] == "python"]
    # a guide that lost its examples (or its checks) must not pass by running nothing
    assert len(python_steps) >= 12, [s[3] for s in python_steps]
    assert sum(len(s[4]) for s in python_steps) >= 25
    # upper.py: the service module of the ProcessCluster example (real node processes)
    assert [s[1] for s in steps if s[0] == "file"] == ["upper.py", "cluster.toml"]
    steps, mapping = renumber_ports(steps)
    assert len(mapping) >= 5, mapping           # the 3-member cluster and the single nodes
    (tmp_path / "steps.json").write_text(json.dumps(steps))
    (tmp_path / "driver.py").write_text(DRIVER)
    try:
        done = subprocess.run([sys.executable, str(tmp_path / "driver.py"), str(tmp_path / "steps.json")],
                              cwd=tmp_path, env=child_env(), capture_output=True, text=True,
                              timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the guide's examples did not finish within {RUN_TIMEOUT_S}s\n"
                    f"{exc.stdout or ''}\n{(exc.stderr or '')[-4000:]}")
    assert done.returncode == 0, done.stdout + done.stderr[-6000:]
    ran = [line for line in done.stdout.splitlines() if line.startswith("ok programming.md:")]
    assert len(ran) == len(python_steps), done.stdout


def test_blocks_not_run_are_few(doc_text):
    skipped = [b["line"] for b in parse_blocks(doc_text) if b["marker"] == "not run"]
    assert len(skipped) <= 3, skipped


def _resolve(dotted: str):
    """The object ``aeronpy.a.b.c`` names, importing submodules on the way."""
    obj = importlib.import_module("aeronpy")
    path = "aeronpy"
    for part in dotted.split(".")[1:]:
        path += "." + part
        try:
            obj = getattr(obj, part)
        except AttributeError:
            obj = importlib.import_module(path)
    return obj


def test_every_aeronpy_name_in_the_guide_exists(doc_text):
    names = sorted(set(re.findall(r"\baeronpy(?:\.[A-Za-z_]\w*)+", doc_text)))
    assert len(names) >= 20, names
    missing = []
    for name in names:
        try:
            _resolve(name)
        except (AttributeError, ImportError) as exc:
            missing.append(f"{name}: {exc}")
    assert not missing, missing


def test_the_result_codes_the_guide_quotes(doc_text):
    import aeronpy
    quoted = re.findall(r"`aeronpy\.([A-Z_]+)` \((-?\d+)\)", doc_text)
    assert {name for name, _ in quoted} == {"BACK_PRESSURED", "NOT_CONNECTED", "CLOSED"}, quoted
    for name, value in quoted:
        assert getattr(aeronpy, name) == int(value), name


def _first_column_names(doc_text: str, heading: str) -> set:
    """The identifiers in backticks in the first column of the first table after ``heading``."""
    start = doc_text.index(heading)
    table_start = doc_text.index("\n|", start)
    table = doc_text[table_start:doc_text.index("\n\n", table_start)]
    names = set()
    for row in table.strip().split("\n")[2:]:
        first_cell = row.split("|")[1]
        names.update(re.findall(r"`([A-Za-z_]\w*)", first_cell))
    return names


def test_every_service_callback_and_cluster_member_is_documented(doc_text):
    import aeronpy
    callbacks = {name for name in dir(aeronpy.ClusteredService) if name.startswith("on_")}
    assert _first_column_names(doc_text, "### The callbacks") == callbacks
    facade = {name for name in dir(aeronpy.Cluster) if not name.startswith("_")}
    assert _first_column_names(doc_text, "## 2. The `Cluster` facade") == facade


def test_the_client_config_table_matches_client_config(doc_text):
    from aeronpy.cluster import ClientConfig
    start = doc_text.index("**`ClientConfig`**")
    table = doc_text[start:doc_text.index("\n\n", doc_text.index("| field |", start))]
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \|", table, flags=re.M)
    assert len(rows) >= 5, table
    defaults = {f.name: f.default for f in dataclasses.fields(ClientConfig)}
    units = {"ms": 1_000_000, "s": 1_000_000_000, "MiB": 1 << 20}
    for field, text in rows:
        assert field in defaults, f"ClientConfig has no field {field!r}"
        number, _, unit = text.strip().replace(",", "").partition(" ")
        value = (float(number) * units[unit]) if unit else int(number)
        assert defaults[field] == value, (field, text, defaults[field])
