"""Review: members that reach one log index by different routes hold the same state.

A scripted service exercises the whole Cluster facade from every log-ordered callback
(schedule / cancel / reschedule, cluster.offer, close_client_session, offers to its own, to
other and to closed sessions) and records every call's result with cluster time. Three members
on fake cores build a log through leader changes, partial replication and session timeouts;
then the committed log is applied again by (a) a fresh member through ``apply_ready`` in random
batches (the compiled run), (b) a fresh member entry by entry through ``apply``, (c) members
restored from a snapshot taken at random indexes of (a) that apply the rest. All must agree
with the live members: service records, snapshot bytes of the module state, and the service
streams. Every loop is bounded.
"""
from __future__ import annotations

import io
import json
import random
from types import SimpleNamespace

import pytest

from aeronpy.cluster import protocol as P
from aeronpy.cluster.module import ConsensusModule
from aeronpy.service import ClusteredService, Role

from .fakes import FakeCore, FakeWorld

MS = 1_000_000


class Scripted(ClusteredService):
    """Runs the commands in a message (b"cmd;cmd;..."), records every result."""

    single_reply = False     # at most one reply per client message (the sim's clients check it)

    def __init__(self):
        self.cluster = None
        self.record: list = []
        self._sender_replied = False

    def on_start(self, cluster, snapshot):
        self.cluster = cluster
        self.record = json.loads(snapshot.read()) if snapshot is not None else []
        if snapshot is None and cluster.service_id == 0:
            # a fresh start runs on every member before the first entry: may change state
            self.record.append(["start", cluster.schedule_timer(1, 50 * MS),
                                cluster.offer(b"n started")])

    def _note(self, *what):
        self.record.append(list(what) + [self.cluster.time_ns])

    def _run(self, session, ts, text: str):
        c = self.cluster
        for cmd in text.split(";"):
            parts = cmd.split()
            if not parts:
                continue
            op, args = parts[0], [int(a) if a.lstrip("-").isdigit() else a for a in parts[1:]]
            if op == "s":        # schedule cid in ms
                self._note("s", args[0], c.schedule_timer(args[0], ts + args[1] * MS))
            elif op == "c":
                self._note("c", args[0], c.cancel_timer(args[0]))
            elif op == "o":      # service message carrying the rest as commands
                self._note("o", c.offer(" ".join(parts[1:]).replace(",", ";").encode()))
            elif op == "x":      # close a session (0: the sender), maybe twice
                sid = session.id if (args[0] == 0 and session is not None) else args[0]
                self._note("x", sid, c.close_client_session(sid), c.close_client_session(sid))
            elif op == "r":      # reply to every open session, and to the sender
                for other in c.client_sessions:
                    self._note("r", other.id, self._offer(session, other, b"to %d" % other.id))
                if session is not None:
                    self._note("r0", self._offer(session, session, b"mine"))
            elif op == "g":      # get a session by id and offer to it
                s = c.get_client_session(args[0])
                self._note("g", args[0], None if s is None else (s.is_closed,
                                                                 self._offer(session, s, b"g")))
            elif op == "n":      # a note
                self._note("n", args[0] if args else "")
            else:
                self._note("?", op)

    def _offer(self, sender, to, data):
        if to == sender and self.single_reply:
            if self._sender_replied:
                return "skipped"
            self._sender_replied = True
        return to.offer(data)

    def on_session_open(self, session, timestamp_ns):
        self._note("open", session.id, timestamp_ns)
        if self.cluster.service_id == 1:
            self._note("s-open", self.cluster.schedule_timer(1000 + session.id, timestamp_ns + 5 * MS))
            if session.id % 3 == 0:
                self._note("x-open", self.cluster.close_client_session(session.id))

    def on_session_close(self, session, timestamp_ns, reason):
        c = self.cluster
        self._note("close", session.id, timestamp_ns, int(reason), session.is_closed,
                   session.offer(b"bye"), c.close_client_session(session.id),
                   c.get_client_session(session.id) is not None,
                   c.offer(b"n closed %d" % session.id), c.cancel_timer(1000 + session.id))

    def on_session_message(self, session, timestamp_ns, message):
        text = bytes(message).decode()
        self._note("msg", None if session is None else session.id, timestamp_ns, text)
        self._sender_replied = False
        self._run(session, timestamp_ns, text)

    def on_timer_event(self, correlation_id, timestamp_ns):
        c = self.cluster
        self._note("timer", correlation_id, timestamp_ns, c.cancel_timer(correlation_id))
        if correlation_id % 2 == 1 and correlation_id < 100:
            self._note("resched", c.schedule_timer(correlation_id + 2, timestamp_ns + 7 * MS))
        if correlation_id % 3 == 0:
            self._note("o-timer", c.offer(b"r;s %d 3" % (correlation_id + 1)))
        if correlation_id >= 1000:
            self._note("r-timer", [s.offer(b"t") for s in c.client_sessions])

    def on_take_snapshot(self, writer):
        writer.write(json.dumps(self.record).encode())


COMMANDS = ["s {a} {b}", "c {a}", "o s {a} {b}", "o c {a},n x", "x 0", "x {sid}", "r",
            "g {sid}", "s {a} 0", "s {a} {b};c {a}", "s {a} {b};s {a} {c}", "o o n deep",
            "n plain", "n plain", "n plain", "o x {sid}", "c 1;s 1 {b}"]


def services(cls=Scripted):
    return [cls(), cls()]


def build_log(seed: int, steps: int = 160) -> FakeWorld:
    rng = random.Random(seed)
    w = FakeWorld(members=3, services=services, session_timeout_ns=400 * MS,
                  reply_cache_messages=3, max_timers=12, service_message_queue_max=6,
                  proposals_per_tick_max=4)
    w.elect(0)
    w.settle()
    clients = {}          # endpoint -> [sid, next seq, nonce]
    nonce = 100
    for step in range(steps):
        leader = w.leader()
        roll = rng.random()
        if roll < 0.10 or not clients:
            nonce += 1
            ep = f"c{nonce}:7000"
            w.ingress(leader, ep, P.SessionConnect(nonce, nonce, ep, b""))
            if rng.random() < 0.8:
                w.settle()
            events = [e for e in w.take(leader, P.SessionEvent, ep) if e.code == P.EVENT_OK]
            if events:
                clients[ep] = [events[-1].session_id, 1, nonce]
        elif roll < 0.65:
            ep = rng.choice(sorted(clients))
            sid, seq, _ = clients[ep]
            open_sids = [s.session_id for s in w.modules[leader].sessions] or [sid]
            text = ";".join(rng.choice(COMMANDS).format(
                a=rng.randint(1, 20), b=rng.randint(0, 300), c=rng.randint(0, 300),
                sid=rng.choice(open_sids)) for _ in range(rng.randint(1, 3)))
            service_id = rng.choice((0, 0, 1))
            w.ingress(leader, ep, P.SessionMessage(sid, seq, seq, service_id, text.encode()))
            if rng.random() < 0.3:    # a re-send of the same message (exactly once)
                w.ingress(leader, ep, P.SessionMessage(sid, seq, seq, service_id, text.encode()))
            clients[ep][1] += 1
            if rng.random() < 0.2:
                w.ingress(leader, ep, P.SessionKeepAlive(sid, w.term))
        elif roll < 0.70:
            ep = rng.choice(sorted(clients))
            w.ingress(leader, ep, P.SessionClose(clients[ep][0], w.term))
        elif roll < 0.85:
            w.tick(rng.choice((1, 5, 20, 60, 200)) * MS)
        elif roll < 0.93:
            # partial replication then commit a prefix, then maybe a leader change
            last = w.cores[leader].log.last_index
            upto = rng.randint(max(1, last - 5), last)
            to = set(rng.sample(range(3), rng.randint(0, 2))) - {leader}
            w.replicate(to=to, upto=upto)
            if rng.random() < 0.5:
                w.commit(index=min(upto, max(c.commit_index for c in w.cores)),
                         members=None)
        else:
            # a new leader: the one with the longest log among a majority
            candidates = [m for m in range(3) if m != leader]
            best = max(candidates, key=lambda m: (w.cores[m].log.last_index, -m))
            w.elect(best)
            w.replicate()
            w.commit()
            w.tick(1 * MS)
        if rng.random() < 0.5:
            w.settle()
        # clients re-send what they think is unacknowledged after a NEW_LEADER event: the
        # fake ones simply carry on with their next seq; the cluster must cope with gaps
    for _ in range(30):               # drain: timers and service messages until quiet
        w.tick(100 * MS)
        w.settle()
    w.settle()
    return w


def state_of(module: ConsensusModule) -> tuple:
    streams = [io.BytesIO() for _ in module.container.services]
    module.take_service_snapshots(streams)
    return (module.applied_index, module.cluster_time_ns, module.snapshot_state(),
            [s.getvalue() for s in streams])


def fresh(w: FakeWorld, log) -> ConsensusModule:
    core = FakeCore(9)
    core.role, core.term, core.leader_id = Role.FOLLOWER, w.term, w.leader()
    core.log.entries = list(log)
    core.commit_index = len(log)
    module = ConsensusModule(9, core, services(), w.modules[0].config, 0)
    return module


def restored_from(w, log, blob_state, k) -> ConsensusModule:
    _, _, module_state, streams = blob_state
    module = fresh(w, log)
    module.restore_state(module_state)
    module.start([io.BytesIO(s) for s in streams])
    assert module.applied_index == k
    return module


@pytest.mark.parametrize("seed", range(12))
def test_every_route_to_the_end_of_the_log_reaches_the_same_state(seed):
    w = build_log(seed)
    rng = random.Random(seed * 7 + 1)
    leader = w.leader()
    log = list(w.cores[leader].log.entries)
    end = w.cores[leader].commit_index
    assert end == len(log)
    live = [state_of(m) for m in w.modules]
    assert live[0] == live[1] == live[2], "live members diverged"

    by_apply = fresh(w, log)
    by_apply.start()
    by_ready = fresh(w, log)
    by_ready.start()
    cut_points = sorted(rng.sample(range(1, end), min(6, end - 1)))
    snapshots = {}
    lo = 1
    for k in cut_points + [end]:
        by_ready.apply_ready(SimpleNamespace(apply_lo=lo, apply_hi=k + 1), 0)
        for index in range(lo, k + 1):
            by_apply.apply(index, *log[index - 1])
        snapshots[k] = state_of(by_ready)
        assert snapshots[k] == state_of(by_apply), f"apply_ready and apply differ at {k}"
        lo = k + 1
    assert state_of(by_ready) == live[leader]
    for k in cut_points:
        module = restored_from(w, log, snapshots[k], k)
        module.apply_ready(SimpleNamespace(apply_lo=k + 1, apply_hi=end + 1), 0)
        assert state_of(module) == live[leader], f"restored at {k} diverged"
    # the run exercised what it is meant to
    record = json.dumps(json.loads(live[leader][3][0]) + json.loads(live[leader][3][1]))
    for what in ('"timer"', '"close"', '"msg", null'):
        assert what in record, what
