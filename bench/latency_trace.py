"""Where the time of one ``ClusterClient.request()`` goes, across the node processes.

    python bench/latency_trace.py [--requests N] [--gap-us G] [--no-trace]

Starts a 3-node ``ProcessCluster`` whose members run under this file's ``node`` mode, which
wraps a few ``ClusterNode`` / ``UdpTransport`` / idle-strategy methods with CLOCK_MONOTONIC
stamps (shared by every process on one host) before running ``aeronpy node``. Nothing in
the package is changed: the stamps exist only in these traced processes. The client sends
one request at a time, ``gap-us`` apart, so every stamp a node takes between a request's
start and its reply belongs to that request; the report gives, per stage of the path, the
median and p90 over the requests of the time since the request started.

``--no-trace`` runs the same nodes untraced and reports only p50/p99 (for before/after).

``--ab EXPERIMENT`` runs one untraced cluster and alternates blocks of 100 requests between A
and B (SIGUSR1 switches the nodes; the client switches itself), a paired comparison that the
machine's minute-to-minute noise does not swamp. Experiments: ``late-flush`` (B: consensus
sends wait for the end of the duty cycle), ``backoff:S,Y`` (A: 10 spins + 5 yields before a
node parks, the old default; B: S spins + Y yields), ``no-gc-tuning`` (B: ``gc.unfreeze()``).
(Two client-side experiments, ``client-park`` and ``client-late-send``, were dropped once
their B became the client's behaviour: bench/results/perf.md keeps their figures.)
``AERONPY_TRACE_GCTIME=1`` makes each node print its collector pauses at exit.

The per-stage report matches each stage to the first stamp of its name after the previous
one. Since the transport and the apply path were compiled, some stamps no longer fire where
they did (the egress drain bypasses ``_send_egress``; sends can leave inside the compiled
sender), so the later stages are matched for only part of the requests (their ``n``) and a
stage can absorb the next one's time: read it as a rough sketch, and use
``bench/perf_harness.py`` and ``bench/tail_stalls.py`` for CPU and tail figures.
"""
from __future__ import annotations

import argparse
import atexit
import bisect
import json
import os
import shutil
import signal
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:        # run as a script from anywhere: use this checkout's aeronpy
    sys.path.insert(0, REPO_ROOT)

ECHO = "aeronpy.testing.services:EchoService"


# -- traced node process -------------------------------------------------------------------------

def _install_tracer(out_path: str) -> None:
    from aeronpy.cluster import idle as idle_mod
    from aeronpy.cluster import node as node_mod
    from aeronpy.transport import udp as udp_mod

    clock = time.monotonic_ns
    events: list = []
    add = events.append
    node_cls = node_mod.ClusterNode
    transport_cls = udp_mod.UdpTransport

    def wrap(cls, name, make):
        original = getattr(cls, name)
        setattr(cls, name, make(original))

    def on_ingress(orig):
        def f(self, client_ref, payload):
            add((clock(), "ingress_msg"))
            return orig(self, client_ref, payload)
        return f

    def on_consensus(orig):
        def f(self, peer_id, payload):
            add((clock(), f"cons_msg_from{peer_id}"))
            return orig(self, peer_id, payload)
        return f

    def send_messages(orig):
        def f(self, messages):
            add((clock(), "ready_send"))     # a leader's go out before its write (send_first)
            return orig(self, messages)
        return f

    def finish_ready(orig):
        def f(self, rd, now_ns):
            t = clock()
            r = orig(self, rd, now_ns)
            if rd.apply_hi > rd.apply_lo:
                add((t, "ready_apply"))
            add((clock(), "ready_done"))
            return r
        return f

    def send_egress(orig):
        def f(self, client_ref, message):
            add((clock(), "egress_queued"))
            return orig(self, client_ref, message)
        return f

    def do_work(orig):
        def f(self):
            t = clock()
            w = orig(self)
            if w:
                add((t, "cycle_start"))
                add((clock(), "cycle_end"))
            return w
        return f

    def flush_work(orig):
        def f(self, now_ns=None):
            w = orig(self, now_ns)
            if w:
                add((clock(), f"flush{self.stream_id}"))
            return w
        return f

    def park(orig):
        def f(self, work_count):
            if work_count > 0:
                return orig(self, work_count)
            state = self._state
            t = clock()
            r = orig(self, work_count)
            if state == 3 or (state == 2 and self._state == 3):   # parked
                add((t, "park_begin"))
                add((clock(), "park_end"))
            return r
        return f

    wrap(node_cls, "_on_ingress_message", on_ingress)
    wrap(node_cls, "_on_consensus_message", on_consensus)
    wrap(node_cls, "_finish_ready", finish_ready)
    wrap(node_cls, "_send_messages", send_messages)
    wrap(node_cls, "_send_egress", send_egress)
    wrap(node_cls, "do_work", do_work)
    wrap(transport_cls, "do_work", flush_work)

    def flush(orig):
        def f(self):
            w = orig(self)
            if w:
                add((clock(), f"flush{self.stream_id}"))
            return w
        return f
    wrap(transport_cls, "flush", flush)
    wrap(idle_mod.BackoffIdleStrategy, "idle", park)

    def dump() -> None:
        with open(out_path, "w") as f:
            json.dump(events[-400_000:], f)

    atexit.register(dump)


_MODE_B = [False]


def _install_ab(experiment: str) -> None:
    """Mode A is the code as it is; SIGUSR1 toggles mode B, the alternative under test."""
    import gc
    from aeronpy.cluster import idle as idle_mod
    from aeronpy.transport import udp as udp_mod

    if experiment == "late-flush":          # B: flush only at the end of the duty cycle
        orig_flush = udp_mod.UdpTransport.flush
        udp_mod.UdpTransport.flush = lambda self: 0 if _MODE_B[0] else orig_flush(self)
    elif experiment.startswith("backoff:"):  # A: 10 spins + 5 yields; B: S spins + Y yields
        spins, yields = (int(x) for x in experiment[8:].split(","))
        orig_idle = idle_mod.BackoffIdleStrategy.idle

        def idle(self, work_count):
            if _MODE_B[0]:
                self.max_spins, self.max_yields = spins, yields
            else:
                self.max_spins, self.max_yields = 10, 5
            return orig_idle(self, work_count)
        idle_mod.BackoffIdleStrategy.idle = idle
    elif experiment == "no-gc-tuning":       # B: the interpreter's default gc settings
        def toggle_gc():
            if _MODE_B[0]:
                gc.unfreeze()
            else:
                gc.freeze()
        _GC_TOGGLE.append(toggle_gc)

    def on_usr1(_signum, _frame):
        _MODE_B[0] = not _MODE_B[0]
        for f in _GC_TOGGLE:
            f()
    signal.signal(signal.SIGUSR1, on_usr1)


_GC_TOGGLE: list = []


def _install_gc_timer() -> None:
    """Print, at exit, how long the collector's pauses were per generation (and A/B mode)."""
    import gc
    pauses: dict = {}
    started = [0]

    def callback(phase, info):
        if phase == "start":
            started[0] = time.perf_counter_ns()
        else:
            key = (_MODE_B[0], info["generation"])
            pauses.setdefault(key, []).append((time.perf_counter_ns() - started[0]) / 1000)
    gc.callbacks.append(callback)

    def report():
        for (mode, gen), v in sorted(pauses.items()):
            v.sort()
            sys.stderr.write(f"gc pauses mode {'B' if mode else 'A'} gen{gen}: n={len(v)} "
                             f"p50={v[len(v) // 2]:.0f}us max={v[-1]:.0f}us total={sum(v):.0f}us\n")
    atexit.register(report)


def node_main(argv: list) -> int:
    if os.environ.get("AERONPY_TRACE_GCTIME"):
        _install_gc_timer()
    experiment = os.environ.get("AERONPY_TRACE_AB")
    if experiment:
        _install_ab(experiment)
    out = os.environ.get("AERONPY_TRACE_OUT")
    if out:
        _install_tracer(f"{out}.{os.getpid()}.json")
    from aeronpy.cli import main
    return main(argv)


# -- driver -------------------------------------------------------------------------------------

def _pct(values, q):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def _first_after(events, t, end, name):
    """The first stamp called ``name`` (``cons_msg_from``: from any peer) in (t, end]."""
    i = bisect.bisect_right(events, (t, "\uffff"))
    while i < len(events) and events[i][0] <= end:
        if events[i][1] == name or name.endswith("_from") and events[i][1].startswith(name):
            return events[i][0]
        i += 1
    return None


def drive(requests: int, gap_us: int, trace: bool, config: dict, ab: str = "",
          ab_block: int = 100) -> dict:
    from aeronpy import ClusterClient
    from aeronpy.testing.process_cluster import ProcessCluster

    out_dir = tempfile.mkdtemp(prefix="aeronpy-trace-")
    here = os.path.abspath(__file__)
    env = {"AERONPY_TRACE_OUT": os.path.join(out_dir, "node")} if trace else {}
    if ab:
        env["AERONPY_TRACE_AB"] = ab
    if os.environ.get("AERONPY_TRACE_GCTIME"):
        env["AERONPY_TRACE_GCTIME"] = "1"

    def wrap(member, cmd):
        return [sys.executable, here, "node"] + cmd[3:]       # drop "python -m aeronpy"

    cluster = ProcessCluster(3, services=[ECHO], env=env, wrap_command=wrap, config=config)
    cluster.start()
    spans = []
    try:
        leader = cluster.leader(timeout_s=20)
        client = ClusterClient.connect(cluster.ingress_endpoints, timeout_s=20)
        for _ in range(300):
            client.request(b"w" * 32)
        time.sleep(0.05)
        payload = b"x" * 32
        if ab:
            pids = [p.pid for p in cluster.procs.values()]
            lat_ab = {False: [], True: []}
            mode_b = False
            for block in range(requests // ab_block):
                if block % 2 and not mode_b or not block % 2 and mode_b:
                    for pid in pids:
                        os.kill(pid, signal.SIGUSR1)
                    mode_b = not mode_b
                    time.sleep(0.02)
                for _ in range(ab_block):
                    begin = time.monotonic_ns()
                    client.request(payload, timeout_s=1.0)
                    lat_ab[mode_b].append((time.monotonic_ns() - begin) / 1000)
                    deadline = time.monotonic_ns() + gap_us * 1000
                    while time.monotonic_ns() < deadline:
                        time.sleep(gap_us / 4e6)
            client.close()
            out = {"leader": leader}
            for mode, name in ((False, "A"), (True, "B")):
                v = lat_ab[mode]
                out[name] = {q: round(_pct(v, x), 1) for q, x in (("p50", .5), ("p90", .9), ("p99", .99))}
            out["B/A p50"] = round(out["B"]["p50"] / out["A"]["p50"], 3)
            out["B/A p99"] = round(out["B"]["p99"] / out["A"]["p99"], 3)
            for p in cluster.procs.values():
                p.send_signal(signal.SIGTERM)
            for p in cluster.procs.values():
                p.wait(timeout=15)
            return out
        for _ in range(requests):
            begin = time.monotonic_ns()
            client.request(payload, timeout_s=1.0)
            spans.append((begin, time.monotonic_ns()))
            deadline = time.monotonic_ns() + gap_us * 1000
            while time.monotonic_ns() < deadline:
                time.sleep(gap_us / 4e6)
        client.close()
        pids = {m: p.pid for m, p in cluster.procs.items()}
        for p in cluster.procs.values():
            p.send_signal(signal.SIGTERM)
        for p in cluster.procs.values():
            p.wait(timeout=15)
    finally:
        cluster.close()
        if not trace:
            shutil.rmtree(out_dir, ignore_errors=True)
    lat = [(e - b) / 1000 for b, e in spans]
    report = {"requests": len(lat), "p50_us": _pct(lat, 0.5), "p90_us": _pct(lat, 0.9),
              "p99_us": _pct(lat, 0.99), "leader": leader}
    if not trace:
        return report
    per_member = {}
    for member, pid in pids.items():
        path = os.path.join(out_dir, f"node.{pid}.json")
        if os.path.exists(path):
            with open(path) as f:
                per_member[member] = sorted(tuple(e) for e in json.load(f))
    followers = [m for m in per_member if m != leader]
    # the path of one request, each step the first matching stamp after the previous one
    chain = [("L", "ingress_msg"), ("L", "ready_send"), ("L", "flush1"), ("F", "cons_msg_from"),
             ("F", "ready_send"), ("F", "flush1"), ("L", "cons_msg_from"), ("L", "ready_apply"),
             ("L", "egress_queued"), ("L", "flush1001")]
    stages = {}
    for begin, end in spans:
        t = begin
        prev = "client_start"
        for who, name in chain:
            if who == "L":
                found = _first_after(per_member.get(leader, []), t, end, name)
            else:       # the first follower to get there
                found = min((x for x in (_first_after(per_member[m], t, end, name) for m in followers)
                             if x is not None), default=None)
            if found is None:
                break
            stages.setdefault(f"{prev} -> {who}:{name}", []).append((found - t) / 1000)
            t, prev = found, f"{who}:{name}"
        else:
            stages.setdefault(f"{prev} -> client_reply", []).append((end - t) / 1000)
        for member, events in per_member.items():
            lo = bisect.bisect_left(events, (begin, ""))
            parks = [e for e in events[lo:] if e[0] <= end and e[1] == "park_end"]
            role = "L" if member == leader else "F"
            stages.setdefault(f"{role}{member} parks woken during request", []).append(len(parks))
    rows = []
    for key, vals in stages.items():
        rows.append((_pct(vals, 0.5), key, _pct(vals, 0.9), len(vals)))
    order = {k: i for i, k in enumerate(stages)}
    rows.sort(key=lambda r: order[r[1]])
    shutil.rmtree(out_dir, ignore_errors=True)
    report["stages"] = [{"stage": k, "p50_us": round(a, 1), "p90_us": round(b, 1), "n": n}
                        for a, k, b, n in rows]
    return report


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "node":
        return node_main(sys.argv[2:])
    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--gap-us", type=int, default=1000)
    p.add_argument("--no-trace", action="store_true")
    p.add_argument("--idle", default="backoff")
    p.add_argument("--ab", default="", help="late-flush | backoff:S,Y | no-gc-tuning: alternate "
                   "blocks of requests between the code as is (A) and the alternative (B)")
    opts = p.parse_args()
    report = drive(opts.requests, opts.gap_us, not opts.no_trace and not opts.ab,
                   {"idle_strategy": opts.idle}, opts.ab)
    stages = report.pop("stages", [])
    print(json.dumps(report))
    for row in stages:
        print(f"  {row['p50_us']:8.1f} {row['p90_us']:8.1f}  n={row['n']:5d}  {row['stage']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
