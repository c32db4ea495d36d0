"""The clock trial's service: records, for every callback, the cluster time it was given, this
member's own wall clock (shifted by the shim) and the host's monotonic clock (never shifted, and
the same clock in every process of the host, so the driver lines records up by it alone).

Session messages:
  b"ping"               reply b"<cluster time ns>"
  b"timer <cid> <ms>"   schedule_timer(cid, the entry's cluster time + ms); reply b"<deadline ns>"
  b"chain"              timer CHAIN_CID at +CHAIN_MS, scheduled again +CHAIN_MS from each fire
Each member appends JSON lines to $CLOCK_TRIAL_OUT/m<member>.jsonl (a restarted member too).
"""
import json
import os
import time

from aeronpy import ClusteredService

OUT_ENV = "CLOCK_TRIAL_OUT"
CHAIN_CID = 1
CHAIN_MS = 1000


class ClockProbe(ClusteredService):
    def on_start(self, cluster, snapshot):
        self.cluster = cluster
        path = os.path.join(os.environ.get(OUT_ENV, "."), f"m{cluster.member_id}.jsonl")
        self.out = open(path, "a", buffering=1)
        self._record("start", cluster.time_ns)

    def _record(self, ev, ts, **fields):
        fields.update(ev=ev, ts=ts, m=self.cluster.member_id, pid=os.getpid(), mono=time.monotonic_ns(),
                      wall=time.time_ns(), role=str(self.cluster.role).rsplit(".", 1)[-1])
        self.out.write(json.dumps(fields) + "\n")

    def on_role_change(self, role):
        self._record("role", self.cluster.time_ns, new=str(role).rsplit(".", 1)[-1])

    def on_session_open(self, session, timestamp_ns):
        self._record("open", timestamp_ns, sid=session.id)

    def on_session_close(self, session, timestamp_ns, reason):
        self._record("close", timestamp_ns, sid=session.id, reason=str(reason).rsplit(".", 1)[-1])

    def on_session_message(self, session, timestamp_ns, message):
        words = bytes(message).split()
        if not words:
            return
        reply = None
        if words[0] == b"ping":
            reply = timestamp_ns
        elif words[0] in (b"timer", b"chain"):
            cid, ms = (int(words[1]), int(words[2])) if words[0] == b"timer" else (CHAIN_CID, CHAIN_MS)
            reply = timestamp_ns + ms * 1_000_000
            self.cluster.schedule_timer(cid, reply)
            self._record("sched", timestamp_ns, cid=cid, deadline=reply)
        if session is not None and reply is not None:
            session.offer(b"%d" % reply)

    def on_timer_event(self, correlation_id, timestamp_ns):
        if correlation_id == CHAIN_CID:
            self.cluster.schedule_timer(CHAIN_CID, timestamp_ns + CHAIN_MS * 1_000_000)
        self._record("timer", timestamp_ns, cid=correlation_id)

    def on_take_snapshot(self, writer):
        pass                          # nothing of its own: the cluster snapshots the timers
