"""Services and an authenticator hosted by the end-to-end test clusters (imported by the node
processes as ``e2e.e2e_services:...``; tests/ is on their PYTHONPATH).

``ProbeService`` records every callback it gets, in order, as one JSON line in
``$AERONPY_HASH_DIR/probe-s<service_id>-m<member_id>.jsonl``. The file is opened afresh in
``on_start`` (before a restarted member replays its log), so at any moment it is the member's
complete record of what it applied so far. Tests read the files of all members to check that
every member saw the same thing at the same position, without having to stop the cluster.
Each record is ``[position, kind, session_id, cluster_time_ns, detail]``; ``position`` counts
callbacks, which happen in log order, so equal records mean "same point of the log".
"""
from __future__ import annotations

import json
import os

from aeronpy.cluster.module_config import Authenticator
from aeronpy.service import ClusteredService

PASSWORD = b"letmein"
_MS = 1_000_000


def probe_path(directory: str, service_id: int, member_id: int) -> str:
    return os.path.join(directory, f"probe-s{service_id}-m{member_id}.jsonl")


def read_probe(directory: str, service_id: int, member_id: int) -> list:
    """The records a member's probe wrote so far (a torn last line is ignored)."""
    try:
        with open(probe_path(directory, service_id, member_id)) as f:
            lines = f.read().split("\n")
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            break
    return out


class PasswordAuthenticator(Authenticator):
    """Accepts only the credentials ``PASSWORD``."""

    def authenticate(self, credentials: bytes, response_endpoint: str) -> bool:
        return bytes(credentials) == PASSWORD


class ProbeService(ClusteredService):
    """Echo, timers and session control driven by JSON requests; records every callback.

    Requests: {"op": "echo", "data": x} -> {"service": id, "data": x};
    {"op": "schedule", "id": n, "delay_ms": d} (deadline = cluster time + d; rescheduling
    moves it) -> {"deadline_ns": ...}; {"op": "cancel", "id": n} -> {"cancelled": bool};
    {"op": "close-me"} -> {"closing": true}, then the service closes the session;
    {"op": "fired"} -> {"fired": [ids in fire order]}.
    """

    def __init__(self) -> None:
        self.cluster = None
        self.position = 0
        self.fired: list = []
        self._file = None

    def _record(self, kind: str, session_id: int, time_ns: int, detail=None) -> None:
        self.position += 1
        if self._file is not None:
            self._file.write(json.dumps([self.position, kind, session_id, time_ns, detail]) + "\n")
            self._file.flush()

    def on_start(self, cluster, snapshot) -> None:
        self.cluster = cluster
        directory = os.environ.get("AERONPY_HASH_DIR")
        if directory:
            self._file = open(probe_path(directory, cluster.service_id, cluster.member_id), "w")
        self._record("start", 0, cluster.time_ns, snapshot is not None)

    def on_session_open(self, session, timestamp_ns) -> None:
        self._record("open", session.id, timestamp_ns)

    def on_session_close(self, session, timestamp_ns, reason) -> None:
        self._record("close", session.id, timestamp_ns, reason.name)

    def on_timer_event(self, correlation_id, timestamp_ns) -> None:
        self.fired.append(correlation_id)
        self._record("timer", 0, timestamp_ns, correlation_id)

    def on_session_message(self, session, timestamp_ns, message) -> None:
        session_id = 0 if session is None else session.id
        try:
            request = json.loads(bytes(message))
            op = request["op"]
        except (ValueError, KeyError, TypeError):
            self._record("garbage", session_id, timestamp_ns, bytes(message)[:64].hex())
            return
        self._record("message", session_id, timestamp_ns, request)
        cluster = self.cluster
        if op == "echo":
            reply = {"service": cluster.service_id, "data": request.get("data")}
        elif op == "schedule":
            deadline_ns = cluster.time_ns + int(request["delay_ms"]) * _MS
            reply = {"scheduled": cluster.schedule_timer(int(request["id"]), deadline_ns),
                     "deadline_ns": deadline_ns}
        elif op == "cancel":
            reply = {"cancelled": cluster.cancel_timer(int(request["id"]))}
        elif op == "close-me":
            reply = {"closing": session is not None and cluster.close_client_session(session.id)}
        elif op == "fired":
            reply = {"fired": list(self.fired)}
        else:
            reply = {"error": f"unknown op {op!r}"}
        if session is not None:
            session.offer(json.dumps(reply).encode())

    def on_terminate(self, cluster) -> None:
        self._record("terminate", 0, cluster.time_ns)
        if self._file is not None:
            self._file.close()
            self._file = None
