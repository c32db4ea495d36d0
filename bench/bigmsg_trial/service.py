"""The service of the big-message trial (``bigmsg_trial.service:BigEchoService``): checks every
request byte, counts applications per key and answers with a reply of the size asked for."""
from __future__ import annotations

import hashlib
import json
import os
from typing import Dict

import aeronpy
from aeronpy.service import ClusteredService
from aeronpy.testing.services import _write_hash_file

from bigmsg_trial import plan

NEGATIVE_ENV = "BIGMSG_TRIAL_NEGATIVE_AT"     # negative control: at application N, apply twice
#                                               and flip one byte of the reply


class BigEchoService(ClusteredService):
    """On terminate writes ``member-<id>.json`` ({"applied": {key: times}, "corrupt": [...]})
    into ``$AERONPY_HASH_DIR``."""

    def __init__(self) -> None:
        self.applied: Dict[str, int] = {}
        self.corrupt: list = []                 # keys whose request bytes differed from the sent
        self.applications = 0
        self.negative_at = int(os.environ.get(NEGATIVE_ENV, "0"))

    def on_start(self, cluster, snapshot) -> None:
        if snapshot is not None:
            state = json.loads(snapshot.read().decode())
            self.applied, self.corrupt = state["applied"], state["corrupt"]
            self.applications = state["applications"]

    def on_session_message(self, session, timestamp_ns, message) -> None:
        self.applications += 1
        try:
            key, reply_size, intact = plan.parse_request(message)
        except ValueError:
            key, reply_size, intact = f"?{self.applications}", 0, False
        if not intact and len(self.corrupt) < 100:
            self.corrupt.append(key)
        negative = self.applications == self.negative_at
        self.applied[key] = self.applied.get(key, 0) + (2 if negative else 1)
        if session is None:
            return
        reply = plan.reply_payload(key, self.applied[key], hashlib.sha256(message).digest(), reply_size)
        if negative:
            reply = reply[:-1] + bytes([reply[-1] ^ 1])
        try:
            session.offer(reply)
        except aeronpy.MessageTooLargeError as e:       # the same on every member: state stays equal
            session.offer(plan.REFUSED_PREFIX + f"{type(e).__name__}: {e}".encode())

    def on_take_snapshot(self, writer) -> None:
        writer.write(json.dumps({"applied": self.applied, "corrupt": self.corrupt,
                                 "applications": self.applications}).encode())

    def on_terminate(self, cluster) -> None:
        _write_hash_file(cluster, f"{len(self.applied)}:{self.applications}",
                         {"applied": self.applied, "corrupt": self.corrupt})
