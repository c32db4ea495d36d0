"""Small clustered services used by the process tests, the benchmark and the docs.

Each is deterministic (cluster time only), snapshots its state, and exposes ``state_hash()``.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct

from aeronpy.service import ClusteredService

_COUNTER = struct.Struct("<q")


def _write_hash_file(cluster, state_hash: str, extra: dict | None = None,
                     name: str | None = None) -> None:
    """When AERONPY_HASH_DIR is set (by tests and the demo), record this member's final state
    in ``member-<id>.json`` (service 0), ``member-<id>-s<service id>.json`` (any other service
    on the node, which would otherwise overwrite service 0's record), or ``name``."""
    directory = os.environ.get("AERONPY_HASH_DIR")
    if not directory or cluster is None:
        return
    service_id = getattr(cluster, "service_id", 0)
    record = {"member_id": cluster.member_id, "service_id": service_id,
              "commit_index": cluster.commit_index, "state_hash": state_hash, **(extra or {})}
    if name is None:
        name = (f"member-{cluster.member_id}.json" if service_id == 0
                else f"member-{cluster.member_id}-s{service_id}.json")
    path = os.path.join(directory, name)
    with open(path + ".tmp", "w") as f:
        json.dump(record, f)
    os.replace(path + ".tmp", path)


class EchoService(ClusteredService):
    """Replies to every message with the same bytes."""

    def __init__(self):
        self.messages = 0

    def on_session_message(self, session, timestamp_ns, message):
        self.messages += 1
        if session is not None:
            session.offer(message)

    def state_hash(self) -> str:
        return str(self.messages)


class CounterService(ClusteredService):
    """Adds the signed 8-byte integer in each message to a total and replies with the new total."""

    def __init__(self):
        self.total = 0
        self.applied = 0
        self.cluster = None

    def on_start(self, cluster, snapshot):
        self.cluster = cluster
        if snapshot is not None:
            self.total, self.applied = struct.unpack("<qq", snapshot.read(16))

    def on_session_message(self, session, timestamp_ns, message):
        self.total += _COUNTER.unpack_from(message)[0] if len(message) >= 8 else 1
        self.applied += 1
        if session is not None:
            session.offer(_COUNTER.pack(self.total))

    def on_take_snapshot(self, writer):
        writer.write(struct.pack("<qq", self.total, self.applied))

    def state_hash(self) -> str:
        return f"{self.total}:{self.applied}"

    def on_terminate(self, cluster):
        _write_hash_file(cluster, self.state_hash(), {"total": self.total, "applied": self.applied})


class KeyValueService(ClusteredService):
    """A key-value store with read / write / compare-and-set, for linearizability tests.

    Requests are JSON: {"op": "read"|"write"|"cas", "key": k, "value": v, "expect": e};
    replies are JSON {"ok": bool, "value": v}.
    """

    def __init__(self):
        self.data: dict = {}
        self.cluster = None

    def on_start(self, cluster, snapshot):
        self.cluster = cluster
        if snapshot is not None:
            self.data = json.loads(snapshot.read().decode())

    def on_session_message(self, session, timestamp_ns, message):
        try:
            req = json.loads(bytes(message))
            op, key = req["op"], str(req["key"])
        except (ValueError, KeyError, TypeError):
            reply = {"ok": False, "error": "malformed"}
        else:
            current = self.data.get(key)
            if op == "read":
                reply = {"ok": True, "value": current}
            elif op == "write":
                self.data[key] = req.get("value")
                reply = {"ok": True, "value": None}
            elif op == "cas":
                ok = current == req.get("expect")
                if ok:
                    self.data[key] = req.get("value")
                reply = {"ok": ok, "value": current}
            else:
                reply = {"ok": False, "error": "unknown op"}
        if session is not None:
            session.offer(json.dumps(reply).encode())

    def on_take_snapshot(self, writer):
        writer.write(json.dumps(self.data, sort_keys=True).encode())

    def state_hash(self) -> str:
        return hashlib.blake2b(json.dumps(self.data, sort_keys=True).encode(), digest_size=16).hexdigest()

    def on_terminate(self, cluster):
        _write_hash_file(cluster, self.state_hash())
