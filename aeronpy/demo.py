"""``aeronpy demo``: a clustered matching engine that keeps trading while its leader is killed.

What it does, in one run (no arguments needed):

1. starts a cluster of ``--members`` (3) ``aeronpy node`` child processes on 127.0.0.1, each
   hosting :class:`aeronpy.examples.recording_engine.RecordingMatchingEngine`;
2. connects ``--clients`` clients that send an order flow at ``--rate`` orders/s in total: new
   orders (limit, some immediate-or-cancel and good-till-time) around a drifting mid price on a
   few instruments, a share of them crossing the spread so trades happen, plus cancels and
   replaces of each client's own resting orders;
3. kills the leader with SIGKILL a third of the way in and restarts it later;
4. stops the flow, waits for every answer and for every member to reach the same commit index,
   stops the members cleanly (SIGTERM: each writes its state hash and state), and checks
   * every member reported, with the identical state hash, and
   * every order a client saw acknowledged is in the book or finished with at least the fills
     that client saw (``OrderLedger.missing_from`` against each member's final state);
5. prints a report (``--json`` for a machine-readable one); exit status 1 if a check failed.

Every child process is killed and the demo's temporary directory removed on exit, on an error,
on Ctrl-C (pressed again during that clean-up too), SIGTERM and SIGHUP (a closed terminal);
``--keep`` instead restarts the members after the checks and leaves them running, printing how
to inspect and stop them.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional, Sequence

from aeronpy.errors import AeronpyError
from aeronpy.examples import orders as wire
from aeronpy.testing.histogram import Histogram

ENGINE_SERVICE = "aeronpy.examples.recording_engine:RecordingMatchingEngine"
KILL_AT_FRACTION = 0.35          # of the run: when the leader is killed
RESTART_AT_FRACTION = 0.6        # when the killed member is started again
FAILOVER_WINDOW_S = 5.0          # pauses that start within this after the kill are failover
MAX_INFLIGHT_PER_CLIENT = 256    # open-loop flow, but never more than this unanswered
MAX_OPEN_PER_CLIENT = 300        # above this a client cancels more than it adds
GTT_CUTOFF_S = 3.0               # no good-till-time orders this close to the end
STARTUP_TIMEOUT_S = 30.0
DRAIN_TIMEOUT_S = 15.0
CONVERGE_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 15.0
# instrument -> starting mid price in ticks
INSTRUMENTS = {1: 10_000, 2: 2_500, 3: 48_000, 4: 730}


# -- the order flow ------------------------------------------------------------------------------

class Market:
    """Mid prices that drift by a tick now and then, shared by every client."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.mid = dict(INSTRUMENTS)

    def step(self, instrument: int) -> int:
        if self.rng.random() < 0.1:
            self.mid[instrument] = max(10, self.mid[instrument] + self.rng.choice((-1, 1)))
        return self.mid[instrument]


class FlowClient:
    """One client session: generates orders, tracks its resting orders, its latencies and a
    ledger of everything the engine told it."""

    def __init__(self, index: int, client, rng: random.Random, market: Market) -> None:
        self.index = index
        self.client = client
        self.rng = rng
        self.market = market
        self.ledger = wire.OrderLedger()
        self.resting: Dict[int, List[int]] = {}     # order_id -> [instrument, price, leaves]
        self.pending: Dict[int, int] = {}           # correlation id -> offer time (ns)
        self.next_coid = 1
        self.cluster_ns = 0                         # latest cluster time seen in a report
        self.sent = {"new": 0, "cancel": 0, "replace": 0}
        self.acked = 0
        self.rejected = 0
        self.fill_events = 0
        self.refused_offers = 0

    def send_one(self, allow_gtt: bool) -> bool:
        """Offer the next order; False when it could not be offered (window full, no leader)."""
        if len(self.pending) >= MAX_INFLIGHT_PER_CLIENT:
            return False
        rng, coid = self.rng, self.next_coid
        roll = rng.random()
        if self.resting and (roll < 0.2 or len(self.resting) > MAX_OPEN_PER_CLIENT):
            kind = "cancel"
            order_id = rng.choice(list(self.resting))
            instrument = self.resting[order_id][0]
            payload = wire.encode_cancel(instrument, coid, order_id)
        elif self.resting and roll < 0.4:
            kind = "replace"
            order_id = rng.choice(list(self.resting))
            instrument, price, leaves = self.resting[order_id]
            payload = wire.encode_replace(instrument, coid, order_id,
                                          max(1, price + rng.randint(-2, 2)),
                                          max(1, leaves + rng.randint(-5, 5)))
        else:
            kind = "new"
            payload = self._new_order(coid, allow_gtt)
        cid = self.client.offer(payload)
        if cid <= 0:
            self.refused_offers += 1
            return False
        self.pending[cid] = time.monotonic_ns()
        self.next_coid += 1
        self.sent[kind] += 1
        return True

    def _new_order(self, coid: int, allow_gtt: bool) -> bytes:
        rng = self.rng
        instrument = rng.choice(tuple(INSTRUMENTS))
        mid = self.market.step(instrument)
        side = rng.choice((wire.BUY, wire.SELL))
        # mostly passive (away from the mid), about a quarter crossing it so trades print
        offset = rng.randint(-3, 12)
        price = max(1, mid - offset if side == wire.BUY else mid + offset)
        quantity = rng.choice((1, 5, 10, 10, 20, 50, 100))
        roll = rng.random()
        if roll < 0.1:
            return wire.encode_new_order(instrument, coid, side, price, quantity, wire.IOC)
        if roll < 0.2 and allow_gtt and self.cluster_ns:
            expire_ns = self.cluster_ns + rng.randint(500, 2_000) * 1_000_000
            return wire.encode_new_order(instrument, coid, side, price, quantity, wire.GTT, expire_ns)
        return wire.encode_new_order(instrument, coid, side, price, quantity)

    def on_message(self, correlation_id: int, payload: memoryview) -> None:
        event = wire.decode_optional(payload)
        if event is None:
            return
        self.ledger.apply(event)
        if isinstance(event, wire.Fill):
            self.fill_events += 1
            entry = self.resting.get(event.order_id)
            if entry is not None:
                if event.leaves_qty == 0:
                    del self.resting[event.order_id]
                else:
                    entry[2] = event.leaves_qty
            return
        self.cluster_ns = max(self.cluster_ns, event.timestamp_ns)
        self.fill_events += len(event.fills)
        if event.status in (wire.ACCEPTED, wire.REPLACED) and event.leaves_qty > 0:
            self.resting[event.order_id] = [event.instrument, event.price, event.leaves_qty]
        else:                       # finished, or a cancel/replace of an order already gone
            self.resting.pop(event.order_id, None)
        sent_ns = self.pending.pop(correlation_id, None)
        if sent_ns is not None:
            self.acked += 1
            if event.status == wire.REJECTED:
                self.rejected += 1
            self.on_ack(time.monotonic_ns(), sent_ns)

    def on_ack(self, now_ns: int, sent_ns: int) -> None:   # replaced by the driver
        pass

    def poll(self) -> int:
        return self.client.poll_egress(self.on_message)


# -- watching acknowledgements -------------------------------------------------------------------

class AckWatch:
    """Latency histogram plus the pauses in acknowledgements, split by the leader kill."""

    def __init__(self) -> None:
        self.latency = Histogram()
        self.first_ack_ns = 0
        self.last_ack_ns = 0
        self.kill_ns: Optional[int] = None
        self.failover_pause_ns = 0
        self.other_pause_ns = 0
        self.first_post_kill_reply_ns: Optional[int] = None

    def on_ack(self, now_ns: int, sent_ns: int) -> None:
        self.latency.record(max(0, now_ns - sent_ns))
        if self.last_ack_ns:
            pause = now_ns - self.last_ack_ns
            kill = self.kill_ns
            if kill is not None and now_ns > kill and self.last_ack_ns < kill + FAILOVER_WINDOW_S * 1e9:
                self.failover_pause_ns = max(self.failover_pause_ns, pause)
            else:
                self.other_pause_ns = max(self.other_pause_ns, pause)
        else:
            self.first_ack_ns = now_ns
        self.last_ack_ns = now_ns
        if self.kill_ns is not None and sent_ns > self.kill_ns and self.first_post_kill_reply_ns is None:
            self.first_post_kill_reply_ns = now_ns - self.kill_ns


# -- final-state checks --------------------------------------------------------------------------

def check_final_state(expected_members: int, records: Dict[int, dict], states: Dict[int, bytes],
                      ledgers: Sequence[wire.OrderLedger]) -> dict:
    """The demo's invariants, from what the members wrote on terminate and what clients saw.

    ``records``: member id -> its hash record; ``states``: member id -> canonical state bytes.
    Returns ``{"invariants": {name: bool}, "problems": [str], "orders_checked": n}``.
    """
    from aeronpy.examples.recording_engine import engine_from_state

    problems: List[str] = []
    missing = sorted(set(range(expected_members)) - set(records))
    if missing:
        problems.append(f"members {missing} wrote no final state")
    hashes = {m: r.get("state_hash") for m, r in sorted(records.items())}
    identical = len(set(hashes.values())) == 1 and not missing
    if len(set(hashes.values())) > 1:
        problems.append(f"state hashes differ: {hashes}")
    accounted = bool(states) and not missing
    checked = sum(len(ledger.orders) for ledger in ledgers)
    for member, state in sorted(states.items()):
        try:
            engine = engine_from_state(state)
        except ValueError as exc:             # damaged or truncated state file
            problems.append(f"member {member}: unreadable final state: {exc}")
            accounted = False
            continue
        if engine.state_hash() != hashes.get(member):
            problems.append(f"member {member}: state file does not match its recorded hash")
            accounted = False
        for i, ledger in enumerate(ledgers):
            found = ledger.missing_from(engine)
            if found:
                accounted = False
                problems += [f"member {member}, client {i}: {p}" for p in found[:5]]
    return {"invariants": {"all_members_reported": not missing, "identical_state_hashes": identical,
                           "no_acknowledged_order_missing": accounted},
            "problems": problems, "orders_checked": checked}


def read_final_states(hash_dir: str) -> "tuple[Dict[int, dict], Dict[int, bytes]]":
    records: Dict[int, dict] = {}
    states: Dict[int, bytes] = {}
    for name in sorted(os.listdir(hash_dir)):
        if name.startswith("member-") and name.endswith(".json"):
            with open(os.path.join(hash_dir, name)) as f:
                record = json.load(f)
            member = int(record["member_id"])
            records[member] = record
            state_file = record.get("state_file")
            if state_file:
                with open(os.path.join(hash_dir, state_file), "rb") as f:
                    states[member] = f.read()
    return records, states


# -- the run -------------------------------------------------------------------------------------

class Progress:
    """A one-line text progress bar on stderr (``\\r``); a line every quarter when not a tty."""

    WIDTH = 30

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.last_s = 0.0
        self.last_quarter = -1

    def update(self, fraction: float, text: str, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        quarter = int(fraction * 4)
        if self.tty and (force or now - self.last_s >= 0.2):
            filled = int(self.WIDTH * min(1.0, fraction))
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            sys.stderr.write(f"\r[{bar}] {fraction * 100:3.0f}%  {text}\x1b[K")
            sys.stderr.flush()
            self.last_s = now
        elif not self.tty and (force or quarter > self.last_quarter):
            sys.stderr.write(f"{fraction * 100:3.0f}%  {text}\n")
            sys.stderr.flush()
            self.last_quarter = quarter

    def note(self, text: str) -> None:
        if self.enabled:
            self.error(text)

    def error(self, text: str) -> None:
        """A line said even with ``--quiet``: why the demo stopped."""
        sys.stderr.write(("\r\x1b[K" if self.tty and self.enabled else "") + text + "\n")
        sys.stderr.flush()


def _commit_indexes(cluster) -> Dict[int, Optional[int]]:
    out: Dict[int, Optional[int]] = {}
    for member in range(cluster.members):
        counters = cluster.read_counters(member) if cluster.alive(member) else None
        out[member] = None if counters is None else counters.get("commit_index")
    return out


def _wait_converged(cluster, timeout_s: float) -> "tuple[bool, Dict[int, Optional[int]]]":
    """Every member alive and at the same commit index on two reads 0.3 s apart."""
    deadline = time.monotonic() + timeout_s
    previous: Dict[int, Optional[int]] = {}
    while True:
        current = _commit_indexes(cluster)
        values = set(current.values())
        if len(values) == 1 and None not in values and current == previous:
            return True, current
        if time.monotonic() >= deadline:
            return False, current
        previous = current
        time.sleep(0.3)


def run_demo(opts: argparse.Namespace, progress: Progress) -> dict:
    """Run the whole demo and return its report (see the module docstring)."""
    from aeronpy import ClusterClient
    from aeronpy.testing.process_cluster import ProcessCluster, _LIVE

    seed = opts.seed if opts.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    clients: List[FlowClient] = []
    keep = False
    base_dir: Optional[str] = None
    cluster = None
    try:
        base_dir = tempfile.mkdtemp(prefix="aeronpy-demo-")
        hash_dir = os.path.join(base_dir, "final-state")
        os.makedirs(hash_dir)
        cluster = ProcessCluster(opts.members, services=[ENGINE_SERVICE], base_dir=base_dir,
                                 env={"AERONPY_HASH_DIR": hash_dir})   # it sets PYTHONPATH
        report: dict = {"members": opts.members, "clients": opts.clients,
                        "duration_s": opts.duration, "offered_rate": opts.rate, "seed": seed,
                        "base_dir": base_dir}
        progress.note(f"starting {opts.members} members in {base_dir} ...")
        cluster.start()
        first_leader = cluster.leader(timeout_s=STARTUP_TIMEOUT_S)
        if first_leader is None:
            raise RuntimeError("no leader elected within "
                               f"{STARTUP_TIMEOUT_S:.0f} s; node 0 log:\n{cluster.tail_log(0)}")
        cluster.check_running(wait_up_s=STARTUP_TIMEOUT_S)   # every member, not just a majority
        market = Market(random.Random(rng.random()))
        watch = AckWatch()
        for i in range(opts.clients):
            session = ClusterClient.connect(cluster.ingress_endpoints, timeout_s=STARTUP_TIMEOUT_S)
            flow = FlowClient(i, session, random.Random(rng.random()), market)
            flow.on_ack = watch.on_ack
            clients.append(flow)
        report["failover"] = failover = {"killed_member": first_leader}
        _drive(opts, cluster, clients, watch, failover, progress)
        report["drained"] = _drain(clients, progress)
        sent = sum(sum(c.sent.values()) for c in clients)
        acked = sum(c.acked for c in clients)
        active_s = max(1e-9, (watch.last_ack_ns - watch.first_ack_ns) / 1e9)
        report.update({
            "orders_sent": sent,
            "sent_by_kind": {k: sum(c.sent[k] for c in clients) for k in ("new", "cancel", "replace")},
            "acknowledged": acked, "rejected": sum(c.rejected for c in clients),
            "unanswered": sum(len(c.pending) for c in clients),
            "refused_offers": sum(c.refused_offers for c in clients),
            "fill_events_seen": sum(c.fill_events for c in clients),
            "throughput_per_s": round(acked / active_s, 1),
            "latency_us": watch.latency.summary_us()})
        failover["longest_ack_pause_ms"] = round(watch.failover_pause_ns / 1e6, 1)
        failover["longest_other_ack_pause_ms"] = round(watch.other_pause_ns / 1e6, 1)
        failover["first_post_kill_reply_ms"] = (None if watch.first_post_kill_reply_ns is None
                                                else round(watch.first_post_kill_reply_ns / 1e6, 1))
        for c in clients:
            c.client.close()
        progress.note("waiting for every member to reach the same commit index ...")
        converged, indexes = _wait_converged(cluster, CONVERGE_TIMEOUT_S)
        report["converged"] = converged
        report["commit_indexes"] = indexes
        progress.note("stopping the members cleanly (SIGTERM) to collect their final state ...")
        # followers first: a leader stopped first hands over, and its successor's new-term
        # entry would leave the members' final commit indexes one apart (same state)
        order = sorted(range(opts.members),
                       key=lambda m: (cluster.read_counters(m) or {}).get("role") == 2)
        for member in order:
            cluster.kill(member, signal.SIGTERM, wait_s=STOP_TIMEOUT_S)
        records, states = read_final_states(hash_dir)
        result = check_final_state(opts.members, records, states, [c.ledger for c in clients])
        result["invariants"]["every_order_answered"] = report["unanswered"] == 0
        report.update(result)
        report["members_final"] = {m: {k: r.get(k) for k in ("state_hash", "commit_index", "open_orders",
                                                             "fills", "volume", "requests")}
                                   for m, r in sorted(records.items())}
        report["ok"] = all(report["invariants"].values())
        if opts.keep:
            _keep_running(cluster, report, progress)
            _LIVE.discard(cluster)          # not reaped at exit: the user asked to keep it
            keep = True
        return report
    finally:
        if not keep:
            # a second Ctrl-C (or a SIGTERM, SIGHUP) must not cut the clean-up short: members
            # would be left running (each in a session of its own) or the directory behind
            with _SignalsHeld():
                _clean_up(clients, cluster, base_dir)


class _SignalsHeld:
    """SIGINT, SIGTERM and SIGHUP handled by Python are held while the body runs, then the
    first one held is handled as it would have been (KeyboardInterrupt, SystemExit)."""

    SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                    if hasattr(signal, name))

    def __enter__(self) -> "_SignalsHeld":
        self.held: List[int] = []
        self.previous: dict = {}
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                handler = signal.getsignal(signum)
                if callable(handler):
                    self.previous[signum] = signal.signal(
                        signum, lambda received, _frame: self.held.append(received))
        return self

    def __exit__(self, exc_type, *_exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        if self.held and exc_type is None:
            self.previous[self.held[0]](self.held[0], None)


def _clean_up(clients: List["FlowClient"], cluster, base_dir: Optional[str]) -> None:
    for c in clients:
        try:
            c.client.close()
        except Exception:
            pass
    if cluster is not None:
        cluster.close(remove=False)
    if base_dir is not None:
        shutil.rmtree(base_dir, ignore_errors=True)


def _drive(opts, cluster, clients: List[FlowClient], watch: AckWatch, failover: dict,
           progress: Progress) -> None:
    """The open-loop flow: orders due at ``rate``/s spread over the clients; kill and restart."""
    rate, duration_s = opts.rate, opts.duration
    start = time.monotonic()
    end = start + duration_s
    kill_at, restart_at = start + KILL_AT_FRACTION * duration_s, start + RESTART_AT_FRACTION * duration_s
    killed: Optional[int] = None
    restarted = False
    offered = 0
    turn = 0
    leader_text = f"leader {failover['killed_member']}"
    next_leader_look = 0.0
    while True:
        now = time.monotonic()
        if now >= end:
            break
        due = min(int((now - start) * rate) - offered, 256)
        allow_gtt = end - now > GTT_CUTOFF_S
        for _ in range(max(0, due)):
            clients[turn % len(clients)].send_one(allow_gtt)   # a refused order is skipped
            turn += 1
            offered += 1
        work = sum(c.poll() for c in clients)
        if killed is None and now >= kill_at:
            killed = failover["killed_member"]
            watch.kill_ns = time.monotonic_ns()
            cluster.kill(killed)
            failover["killed_at_s"] = round(now - start, 2)
            progress.note(f"killed the leader, member {killed} (SIGKILL) at {now - start:.1f} s")
            leader_text = f"leader killed ({killed})"
            next_leader_look = now + 0.1
        elif killed is not None and not restarted and now >= restart_at:
            new_leader = cluster.leader(timeout_s=0.0, exclude=(killed,))
            failover["new_leader"] = new_leader
            cluster.start_member(killed)
            restarted = True
            failover["restarted_at_s"] = round(now - start, 2)
            progress.note(f"restarted member {killed} at {now - start:.1f} s (leader now {new_leader})")
            leader_text = f"leader {new_leader}"
        elif killed is not None and not restarted and now >= next_leader_look:
            # the progress line names the new leader once elected, not only at the restart
            next_leader_look = now + 0.1
            elected = cluster.leader(timeout_s=0.0, exclude=(killed,))
            if elected is not None:
                leader_text = f"leader {elected} (member {killed} down)"
        acked = sum(c.acked for c in clients)
        progress.update((now - start) / duration_s,
                        f"{now - start:5.1f}/{duration_s:.0f} s  sent {offered:,}  acked {acked:,}  "
                        f"{leader_text}")
        if not work:
            time.sleep(0.0001)
    progress.update(1.0, f"{duration_s:.0f} s done, {offered:,} orders offered", force=True)


def _drain(clients: List[FlowClient], progress: Progress) -> bool:
    """Poll until every offered order is answered (bounded)."""
    progress.note("waiting for the last answers ...")
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while any(c.pending for c in clients):
        if time.monotonic() >= deadline:
            return False
        if not sum(c.poll() for c in clients):
            time.sleep(0.0005)
    return True


def _keep_running(cluster, report: dict, progress: Progress) -> None:
    """Start every member again from its data dir (log replay) and leave them running."""
    cluster.start()
    leader = cluster.leader(timeout_s=STARTUP_TIMEOUT_S)
    pids = [cluster.procs[m].pid for m in range(cluster.members)]
    report["kept"] = {"leader": leader, "pids": pids, "config": cluster.config_path,
                      "data_dirs": [cluster.data_dir(m) for m in range(cluster.members)]}


# -- the report ----------------------------------------------------------------------------------

def format_report(r: dict) -> str:
    lat = r.get("latency_us", {})
    f = r.get("failover", {})
    kinds = r.get("sent_by_kind", {})
    lines = [
        f"aeronpy demo: {r['members']}-member matching-engine cluster on 127.0.0.1, "
        f"{r['clients']} clients, {r['duration_s']:g} s at {r['offered_rate']:,.0f} orders/s offered "
        f"(seed {r['seed']})",
        f"  orders sent        {r['orders_sent']:,} (new {kinds.get('new', 0):,}, cancel "
        f"{kinds.get('cancel', 0):,}, replace {kinds.get('replace', 0):,})",
        f"  acknowledged       {r['acknowledged']:,} ({r['rejected']:,} rejected: cancels/replaces of "
        f"orders already filled or expired); unanswered {r['unanswered']}",
        f"  throughput         {r['throughput_per_s']:,.0f} orders/s acknowledged",
        f"  latency            p50 {lat.get('p50_us')} us  p90 {lat.get('p90_us')}  p99 "
        f"{lat.get('p99_us')}  p99.9 {lat.get('p99_9_us')}  max {lat.get('max_us')} us "
        "(offer -> execution report, whole run)",
        f"  failover           leader {f.get('killed_member')} killed (SIGKILL) at "
        f"{f.get('killed_at_s')} s, new leader {f.get('new_leader')}; longest pause in "
        f"acknowledgements {f.get('longest_ack_pause_ms')} ms (elsewhere at most "
        f"{f.get('longest_other_ack_pause_ms')} ms); first reply to an order sent after the kill "
        f"{f.get('first_post_kill_reply_ms')} ms after it; restarted at {f.get('restarted_at_s')} s",
    ]
    finals = r.get("members_final", {})
    if finals:
        any_final = next(iter(finals.values()))
        lines.append(f"  fills              {any_final.get('fills'):,} trades, "
                     f"{any_final.get('volume'):,} lots; {any_final.get('open_orders'):,} orders resting "
                     f"at the end; {r['fill_events_seen']:,} fill notices received by clients")
    for member, final in finals.items():
        lines.append(f"  member {member} state    {final['state_hash']}  (commit index "
                     f"{final['commit_index']})")
    lines.append(f"  orders checked     {r.get('orders_checked', 0):,} acknowledged orders against "
                 "every member's book and finished orders")
    for name, ok in r.get("invariants", {}).items():
        lines.append(f"  [{'ok' if ok else 'FAILED'}] {name.replace('_', ' ')}")
    for problem in r.get("problems", [])[:20]:
        lines.append(f"  problem: {problem}")
    lines.append("RESULT: " + ("all invariants hold" if r.get("ok") else "AN INVARIANT FAILED"))
    kept = r.get("kept")
    if kept:
        lines += ["", f"The cluster is still running (leader {kept['leader']}); config {kept['config']}.",
                  "Inspect a member:"]
        lines += [f"  aeronpy tool describe --data-dir {d}" for d in kept["data_dirs"]]
        lines += ["Stop it:", f"  kill -TERM {' '.join(str(p) for p in kept['pids'])}",
                  f"  rm -rf {r['base_dir']}"]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aeronpy demo", description=__doc__.split("\n")[0].replace("``", ""))
    p.add_argument("--duration", type=float, default=20.0, help="seconds of order flow (default 20)")
    p.add_argument("--members", type=int, default=3, help="cluster members (default 3)")
    p.add_argument("--rate", type=float, default=2000.0, help="orders/s offered in total (default 2000)")
    p.add_argument("--clients", type=int, default=4, help="client sessions (default 4)")
    p.add_argument("--seed", type=int, default=None, help="seed of the order flow (default random)")
    p.add_argument("--keep", action="store_true", help="leave the cluster running at the end")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    opts = build_parser().parse_args(argv)
    if opts.duration <= 0 or opts.rate <= 0 or opts.clients < 1 or opts.members < 3:
        print("aeronpy demo: --duration and --rate must be positive, --clients >= 1, --members >= 3 "
              "(one member is killed, the rest must stay a majority)", file=sys.stderr)
        return 2

    def stop(signum: int, _frame: object) -> None:
        sys.exit(128 + signum)             # SystemExit: run_demo's clean-up runs

    previous = signal.signal(signal.SIGTERM, stop)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)  # even if inherited ignored
    # a hang-up (the terminal or ssh session went away) would kill this process outright and
    # leave the members running: cleaned up as SIGTERM is, unless ignored (nohup)
    sighup = getattr(signal, "SIGHUP", None)
    previous_hup = signal.getsignal(sighup) if sighup is not None else None
    if sighup is not None and previous_hup is not signal.SIG_IGN:
        signal.signal(sighup, stop)
    progress = Progress(enabled=not opts.quiet)
    try:
        report = run_demo(opts, progress)
    except KeyboardInterrupt:
        progress.error("aeronpy demo: interrupted: every child process killed")
        return 130
    except RuntimeError as exc:
        progress.error(f"aeronpy demo: {exc}")
        return 1
    except (AeronpyError, OSError) as exc:   # a client could not connect, no disk space, ...
        progress.error(f"aeronpy demo: {type(exc).__name__}: {exc}")
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        if sighup is not None and previous_hup is not None:
            signal.signal(sighup, previous_hup)
    print(json.dumps(report, indent=2, default=str) if opts.json else format_report(report))
    return 0 if report.get("ok") else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
