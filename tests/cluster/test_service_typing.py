"""The service API type-checks: a user's typed ``ClusteredService`` passes ``mypy --strict``,
and mypy flags a wrong callback signature or a ``session.offer`` of a str. Before, the
callbacks took ``cluster: Any`` and ``session: Any``, and ``aeronpy.ClientSession`` (compiled,
with no stub) was ``Any`` to mypy, so none of it was checked (a fresh user's report)."""
from __future__ import annotations

import os
import re
import textwrap

import pytest

import aeronpy

mypy_api = pytest.importorskip(
    "mypy.api", reason="mypy is not installed (the test extra has it: pip install -e '.[test]')")


from .mypyrun import mypy_in_a_child as _mypy_in_a_child  # noqa: E402

GOOD = '''
    from typing import BinaryIO, Dict, List, Optional

    from typing_extensions import assert_type

    import aeronpy
    from aeronpy.testing.inproc import inproc_cluster
    from aeronpy.testing.process_cluster import ProcessCluster


    class Book(aeronpy.ClusteredService):
        def on_start(self, cluster: aeronpy.Cluster, snapshot: Optional[BinaryIO]) -> None:
            self.cluster = cluster
            self.orders: List[bytes] = [] if snapshot is None else snapshot.read().split()

        def on_session_open(self, session: aeronpy.ClientSession, timestamp_ns: int) -> None:
            assert_type(session.id, int)
            assert_type(session.response_endpoint, str)
            assert_type(session.is_closed, bool)

        def on_session_message(self, session: Optional[aeronpy.ClientSession], timestamp_ns: int,
                               message: memoryview) -> None:
            if session is None:                    # a service message (cluster.offer)
                return
            self.orders.append(bytes(message))
            assert_type(session.offer(bytes(message)), int)
            session.offer(message)                 # any bytes-like payload
            session.offer(bytearray(b"ok"))
            owner = self.cluster.get_client_session(session.id)
            if owner is not None:
                owner.offer(b"notice")
            assert_type(self.cluster.offer(b"audit"), int)
            assert_type(self.cluster.schedule_timer(1, timestamp_ns + 10), bool)
            for other in self.cluster.client_sessions:
                other.offer(b"broadcast")

        def on_session_close(self, session: aeronpy.ClientSession, timestamp_ns: int,
                             reason: aeronpy.CloseReason) -> None:
            pass

        def on_timer_event(self, correlation_id: int, timestamp_ns: int) -> None:
            self.cluster.cancel_timer(correlation_id)

        def on_take_snapshot(self, writer: BinaryIO) -> None:
            writer.write(b" ".join(self.orders))

        def on_role_change(self, role: aeronpy.Role) -> None:
            pass

        def on_terminate(self, cluster: aeronpy.Cluster) -> None:
            assert_type(cluster.member_id, int)


    def leader_of(pc: ProcessCluster) -> Optional[int]:
        assert_type(pc.read_counters(0), Optional[Dict[str, int]])
        return pc.leader(timeout_s=1.0)


    def in_process() -> bytes:
        with inproc_cluster(services=Book) as (nodes, pump, client):
            assert_type(nodes, List[aeronpy.ClusterNode])
            pump()
            assert_type(client, aeronpy.ClusterClient)
            return b""
'''

BAD = '''
    from typing import Optional

    import aeronpy


    class Wrong(aeronpy.ClusteredService):
        def on_session_open(self, session: int, timestamp_ns: int) -> None:  # E: session type
            pass

        def on_timer_event(self, correlation_id: int) -> None:  # E: a parameter missing
            pass

        def on_session_message(self, session: Optional[aeronpy.ClientSession], timestamp_ns: int,
                               message: memoryview) -> None:
            if session is not None:
                session.offer("a str")  # E: str is not bytes-like
'''


def _run_mypy(tmp_path, **sources: str):
    for name, text in sources.items():
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(text))
    parent = os.path.dirname(os.path.dirname(os.path.abspath(aeronpy.__file__)))
    lines = ["[mypy]", f"cache_dir = {tmp_path / 'cache'}"]
    if os.path.basename(parent) not in ("site-packages", "dist-packages"):
        lines.append(f"mypy_path = {parent}")    # a source checkout (or an editable install)
    (tmp_path / "mypy.ini").write_text("\n".join(lines) + "\n")
    stdout, stderr, status = _mypy_in_a_child([
        "--config-file", str(tmp_path / "mypy.ini"), "--strict", "--follow-imports=silent",
        "--no-error-summary", "--show-error-codes",
        *(str(tmp_path / f"{name}.py") for name in sources)])
    assert not stderr, stderr
    errors = {}
    for line in stdout.splitlines():
        m = re.match(r".*[/\\](\w+)\.py:(\d+): error: (.*)", line)
        if m:
            errors.setdefault(m[1], {}).setdefault(int(m[2]), []).append(m[3])
    return errors, stdout


def test_a_typed_service_passes_and_mistakes_are_flagged(tmp_path):
    errors, out = _run_mypy(tmp_path, good=GOOD, bad=BAD)
    assert "good" not in errors, out
    bad_lines = textwrap.dedent(BAD).splitlines()
    expected = {n for n, text in enumerate(bad_lines, 1) if "# E:" in text}
    assert set(errors.get("bad", {})) == expected, out
    by_line = {n: " ".join(msgs) for n, msgs in errors["bad"].items()}
    assert any("on_session_open" in text and "supertype" in text for text in by_line.values()), out
    assert any("on_timer_event" in text for text in by_line.values()), out
    assert any('"offer"' in text and '"str"' in text for text in by_line.values()), out
