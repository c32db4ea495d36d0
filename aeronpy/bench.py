"""``aeronpy bench``: the cluster benchmark, aeronpy next to PySyncObj in the same run.

Both systems run 3 separate processes on 127.0.0.1 and replicate every message before it is
answered. aeronpy hosts :class:`aeronpy.testing.services.EchoService` (the reply is the message)
and is driven by one :class:`aeronpy.ClusterClient` in this process; PySyncObj replicates a
counter whose command carries the same payload, submitted from its leader process (it has no
separate client), see :mod:`aeronpy.testing.pysyncobj_harness`; its one-at-a-time latency is
also measured with the commands sent from a client process over UDP, the same path as
aeronpy's (client -> leader -> followers -> leader -> client). Parts, per message size:

* **throughput**: aeronpy with windowed asynchronous offers (``THROUGHPUT_WINDOW`` in flight,
  client window and reply cache raised to match; also with the default window of 256);
  PySyncObj in its batched setting (its default) with asynchronous callbacks.
* **latency** at a fixed offered rate (10k/s): aeronpy offers on an open-loop schedule (several
  in flight when needed) and times each offer to its reply; PySyncObj in its unbatched setting,
  one synchronous call at a time (it cannot pipeline a synchronous call). HDR-style histogram
  (p50, p90, p99, p99.9, max). Both also report the achieved rate, since a system that cannot
  keep up with the offered rate shows it there. aeronpy's open loop also reports the CPU per
  request of each of its processes (Linux), which is what decides how its tail copes with a
  CPU taken by something else (bench/results/perf.md, "The open-loop tail at 10k/s").
* **failover gap**: kill -9 the leader while a request is offered every millisecond; the gap is
  from the kill to the first reply to a message offered after the kill (PySyncObj: first
  command committed after the kill). Default settings for both.

Figures on a shared machine are noisy: compare the two systems through the ratios, which are
measured in the same run. ``--quick`` (1 s per part, 32 B) is what the test suite runs.
``--file-sync data`` (or ``full``) runs aeronpy's cluster with that durability: every member
fsyncs each append before its copy counts (PySyncObj keeps its defaults, which do not fsync).

Scheduling: by default aeronpy's part of the run, its nodes and the client, runs with Linux's
SCHED_BATCH policy (set on this thread and inherited by the processes it starts; put back
before PySyncObj's part, which runs under the OS default, its better setting: in one run
with SCHED_BATCH its one-at-a-time p50 was 340 us at 32 B and 267 us at 256 B, against
178-268 us in the earlier runs under the default). Four processes share the machine's cores
here, and a batch process that wakes does not preempt the one running, so a duty cycle runs
to its end instead of being cut by the next datagram's wake-up. On the 2-core VM
(2026-11-27, 6 alternating pairs of ``--no-pysyncobj --sizes 32`` runs) open-loop p90 was
327-363 vs 401-491 us, p99 452-561 vs 568-836 us (one more, unpaired, batch run: 834),
throughput 259-296k vs 244-250k msgs/s (the last 4 pairs); one request at a time no
different. ``--sched-policy normal`` runs aeronpy under the OS default too. A node's
``sched_policy`` key sets the same for its duty-cycle thread.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import glob
import json
import os
import platform
import shlex
import signal
import sys
import time
from array import array
from typing import Callable, Dict, List, Optional, Sequence

from aeronpy.cluster.config import SCHED_POLICIES
from aeronpy.testing.histogram import Histogram

ECHO_SERVICE = "aeronpy.testing.services:EchoService"
# aeronpy offers in flight in the throughput part. The client's window and the cluster's reply
# cache are raised to match (window_messages = reply_cache_messages = 2048; both default to 256):
# with 256 in flight the four processes take turns on one window's worth of work and leave the
# cores partly idle (3 processes + client, same minutes: 110k msgs/s at 256, 133k at 1024,
# 155-179k at 2048, 150k at 4096; bench/results/perf.md). The default window is measured too.
THROUGHPUT_WINDOW = 2048
DEFAULT_WINDOW = 256
LATENCY_RATE = 10_000.0
MAX_LATENCY_IN_FLIGHT = 256        # open loop, but bounded
FAILOVER_PROBE_INTERVAL_S = 0.001
FAILOVER_LIMIT_S = 15.0
STARTUP_TIMEOUT_S = 30.0
TARGETS = {"throughput_msgs_per_s": 200_000, "p50_us": 100, "p99_us": 500,
           "ratio_vs_pysyncobj": 5.0, "failover_gap_ms": 1000}


# -- machine -------------------------------------------------------------------------------------

def machine_info() -> Dict[str, object]:
    """CPU count and model, memory, load, OS and Python: printed with every result."""
    info: Dict[str, object] = {"nproc": os.cpu_count(), "python": platform.python_version(),
                               "os": f"{platform.system()} {platform.release()}",
                               "date": _dt.datetime.now().strftime("%Y-%m-%d %H:%M")}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
            info["memory_gib"] = round(kib / (1 << 20), 1)
        info["loadavg"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    except (OSError, ValueError, IndexError):
        info.setdefault("cpu", platform.processor() or "unknown")
    halt_poll = _guest_halt_poll_ns()
    if halt_poll is not None:
        info["guest_halt_poll_ns"] = halt_poll
    return info


HALT_POLL_PATH = "/sys/module/haltpoll/parameters/guest_halt_poll_ns"


def _guest_halt_poll_ns(path: str = HALT_POLL_PATH) -> Optional[int]:
    """A Linux guest's halt polling limit (None where there is none). On a VM it moves every
    latency figure: 0 halts an idle vCPU at once and each wake-up then costs a round trip
    through the host (a blocking loopback ping-pong of ~60 us on the development VM against
    ~14 us polling; docs/operations.md, "Latency tuning on a virtual machine")."""
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


# -- aeronpy side --------------------------------------------------------------------------------

def _cluster(members: int = 3, file_sync: str = "none", sched_policy: str = "normal",
             host: str = "127.0.0.1"):
    from aeronpy.testing.process_cluster import ProcessCluster
    # ProcessCluster's children import this aeronpy (testing.process_cluster.child_env)
    cluster = ProcessCluster(members, services=[ECHO_SERVICE], host=host,
                             config={"reply_cache_messages": THROUGHPUT_WINDOW, "file_sync": file_sync,
                                     "sched_policy": sched_policy})
    cluster.start()
    if cluster.leader(timeout_s=STARTUP_TIMEOUT_S) is None:
        log = cluster.tail_log(0)
        cluster.close()
        raise RuntimeError(f"aeronpy cluster elected no leader in {STARTUP_TIMEOUT_S:.0f} s:\n{log}")
    try:
        # a leader needs only a majority: figures from 2 of 3 members would flatter the leader
        cluster.check_running(wait_up_s=STARTUP_TIMEOUT_S)
    except RuntimeError:
        cluster.close()
        raise
    return cluster


def _connect(cluster):
    from aeronpy import ClusterClient
    from aeronpy.cluster.client_core import ClientConfig
    return ClusterClient.connect(cluster.ingress_endpoints, timeout_s=STARTUP_TIMEOUT_S,
                                 config=ClientConfig(window_messages=THROUGHPUT_WINDOW))


def _counter_changes(before: Dict[str, int], after: Dict[str, int]) -> Dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items()
            if isinstance(v, int) and v != before.get(k, 0) and k != "offers"}


def aeronpy_throughput(client, msg_size: int, duration_s: float,
                       window: int = THROUGHPUT_WINDOW) -> Dict[str, object]:
    """Replies per second with up to ``window`` asynchronous offers in flight."""
    payload = b"x" * msg_size
    in_flight = [0]
    replies = [0]

    def on_reply(_cid: int, _payload: memoryview) -> None:
        in_flight[0] -= 1
        replies[0] += 1

    refused = 0
    # Like PySyncObj's submitter (which blocks on a semaphore), the client gives the CPU
    # away while its window is full and nothing came back: it parks on its socket, as
    # request() does (vs the spin-yield-sleep backoff, same cluster, alternating 1 s runs:
    # 0.96x / 1.07x / 1.21x the msgs/s).
    idle = client.backoff()
    start = time.monotonic()
    deadline = start + duration_s
    while time.monotonic() < deadline:
        while in_flight[0] < window:
            if client.offer(payload) > 0:
                in_flight[0] += 1
            else:
                refused += 1
                break
        idle(client.poll_egress(on_reply))
    elapsed = time.monotonic() - start
    done_in_time = replies[0]
    drain = time.monotonic() + 5.0
    while in_flight[0] > 0 and time.monotonic() < drain:
        idle(client.poll_egress(on_reply))
    default = window == DEFAULT_WINDOW
    return {"system": "aeronpy", "mode": "throughput-default-window" if default else "throughput",
            "msg_size": msg_size, "window": window,
            "messages": done_in_time, "elapsed_s": round(elapsed, 3),
            "msgs_per_s": done_in_time / elapsed, "refused_offers": refused,
            "unanswered": in_flight[0],
            "settings": f"1 client, async offers, {window} in flight"
                        + (" (the default window)" if default else
                           f" (client window_messages = node reply_cache_messages = {window})")}


def open_loop(client, payload: bytes, duration_s: float, rate: float,
              on_answer: Callable[[int, int, int], object]) -> Dict[str, object]:
    """Offer ``payload`` on an open-loop schedule of ``rate``/s for ``duration_s``, at most
    MAX_LATENCY_IN_FLIGHT unanswered; ``on_answer(scheduled_ns, sent_ns, answered_ns)`` for
    every reply. Returns elapsed_s, skipped (offers refused or over the in-flight bound) and
    unanswered (still waiting 5 s after the end)."""
    sent: Dict[int, tuple] = {}

    def on_reply(cid: int, _payload: memoryview) -> None:
        times = sent.pop(cid, None)
        if times is not None:
            on_answer(times[0], times[1], time.monotonic_ns())

    gap_ns = int(1e9 / rate)
    wait = client.wait_for_egress
    start = time.monotonic_ns()
    end = start + int(duration_s * 1e9)
    scheduled = start
    skipped = 0
    while True:
        now = time.monotonic_ns()
        if now >= end:
            break
        work = 0
        while scheduled <= now:
            if len(sent) < MAX_LATENCY_IN_FLIGHT:
                cid = client.offer(payload)
                if cid > 0:
                    sent[cid] = (scheduled, time.monotonic_ns())
                    work += 1
                else:
                    skipped += 1
            else:
                skipped += 1
            scheduled += gap_ns
        work += client.poll_egress(on_reply)
        if not work:
            # Nothing to send or receive: park on the client's socket until a reply comes or
            # the next offer is due. Spinning here (the first version) took a whole core from
            # the 3 node processes on a 2-core machine: open-loop p50 522 us spinning.
            ahead = scheduled - time.monotonic_ns()
            if ahead > 0:
                wait(min(ahead, 1_000_000) / 1e9)
    elapsed = (time.monotonic_ns() - start) / 1e9
    drain = time.monotonic() + 5.0
    while sent and time.monotonic() < drain:
        client.poll_egress(on_reply)
    return {"elapsed_s": elapsed, "skipped": skipped, "unanswered": len(sent)}


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of ``pid`` so far, in ns, from the scheduler's exact account
    (``/proc/<pid>/task/*/schedstat``; 0 where there is no such file, e.g. off Linux)."""
    total = 0
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(path) as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass              # a thread that ended between listing and reading
    return total


def _cpu_per_request(pids: Dict[str, int], before: Dict[str, int], requests: int) -> Dict[str, float]:
    """CPU us per request of each named process since ``before``, and their sum."""
    out = {name: round((cpu_ns(pid) - before[name]) / 1000 / max(1, requests), 1)
           for name, pid in pids.items()}
    if out:
        out["all"] = round(sum(out.values()), 1)
    return out


def aeronpy_latency(client, msg_size: int, duration_s: float, rate: float,
                    pids: Optional[Dict[str, int]] = None) -> Dict[str, object]:
    """Open-loop offers at ``rate``/s; latency from each offer (and from its schedule) to its
    reply; with ``pids`` ({name: pid}) also the CPU per request of those processes."""
    hist, corrected = Histogram(), Histogram()
    # appended while the client runs, into histograms after: the client's process is one of
    # the four on the machine's cores, and its bookkeeping is not what is measured
    latencies, since_scheduled = array("q"), array("q")

    def on_answer(scheduled_ns: int, sent_ns: int, answered_ns: int) -> None:
        latencies.append(answered_ns - sent_ns)
        since_scheduled.append(answered_ns - scheduled_ns)

    counters_before = client.counters
    pids = dict(pids or {})
    cpu_before = {name: cpu_ns(pid) for name, pid in pids.items()}
    run = open_loop(client, b"x" * msg_size, duration_s, rate, on_answer)
    cpu = _cpu_per_request(pids, cpu_before, len(latencies))
    hist.record_many(latencies)
    corrected.record_many(since_scheduled)
    return {"system": "aeronpy", "mode": "latency", "msg_size": msg_size, "offered_rate": rate,
            # the four processes share the machine: at 10k/s this is what keeps the cores busy
            # and sets how well a stolen CPU is absorbed (bench/results/perf.md)
            "cpu_us_per_request": cpu,
            "achieved_rate": hist.count / run["elapsed_s"], "messages": hist.count,
            "skipped": run["skipped"], "unanswered": run["unanswered"],
            "latency": hist.summary_us(),
            "corrected_latency": corrected.summary_us(), "histogram": hist.to_dict(),
            # what the client did besides sending (re-sends after a stall, redirects ...), so
            # a tail in the histogram can be traced to its cause
            "client_counters": _counter_changes(counters_before, client.counters),
            "settings": f"1 client, open-loop offers at {rate:,.0f}/s, up to "
                        f"{MAX_LATENCY_IN_FLIGHT} in flight"}


def aeronpy_latency_serial(client, msg_size: int, duration_s: float, rate: float) -> Dict[str, object]:
    """PySyncObj's latency method on aeronpy: one request at a time, started on a ``rate``/s
    schedule (a late reply starts the next at once), timed from the request's start."""
    from aeronpy.errors import AeronpyError
    payload = b"x" * msg_size
    hist = Histogram()
    gap_ns = int(1e9 / rate)
    start = time.monotonic_ns()
    end = start + int(duration_s * 1e9)
    count = 0
    timeouts = 0
    while True:
        scheduled = start + count * gap_ns
        now = time.monotonic_ns()
        if now >= end:
            break
        if scheduled > now + 200_000:
            time.sleep((scheduled - now - 100_000) / 1e9)
        while time.monotonic_ns() < scheduled:
            pass
        count += 1
        begin = time.monotonic_ns()
        try:
            client.request(payload, timeout_s=1.0)
        except AeronpyError:
            timeouts += 1
            continue
        hist.record(time.monotonic_ns() - begin)
    elapsed = (time.monotonic_ns() - start) / 1e9
    return {"system": "aeronpy", "mode": "latency-serial", "msg_size": msg_size,
            "offered_rate": rate, "achieved_rate": hist.count / elapsed, "messages": hist.count,
            "timeouts": timeouts, "latency": hist.summary_us(), "histogram": hist.to_dict(),
            "settings": f"1 client, request() one at a time on a {rate:,.0f}/s schedule "
                        "(PySyncObj's method)"}


def aeronpy_failover(msg_size: int, file_sync: str = "none", sched_policy: str = "normal",
                     host: str = "127.0.0.1") -> Dict[str, object]:
    """kill -9 the leader under a 1 kHz request stream; time to the first reply to a post-kill offer."""
    cluster = _cluster(file_sync=file_sync, sched_policy=sched_policy, host=host)
    try:
        client = _connect(cluster)
        try:
            payload = b"p" * msg_size
            sent_at: Dict[int, int] = {}
            first_post_kill: List[int] = []
            kill_ns = [0]

            def on_reply(cid: int, _payload: memoryview) -> None:
                t_sent = sent_at.pop(cid, None)
                if t_sent is not None and kill_ns[0] and t_sent > kill_ns[0] and not first_post_kill:
                    first_post_kill.append(time.monotonic_ns())

            leader = cluster.leader(timeout_s=5.0)
            start = time.monotonic()
            next_offer = start
            while time.monotonic() - start < FAILOVER_LIMIT_S and not first_post_kill:
                now = time.monotonic()
                if not kill_ns[0] and now - start >= 0.5:
                    kill_ns[0] = time.monotonic_ns()
                    cluster.kill(leader)
                if now >= next_offer:
                    cid = client.offer(payload)
                    if cid > 0:
                        sent_at[cid] = time.monotonic_ns()
                    next_offer += FAILOVER_PROBE_INTERVAL_S
                if not client.poll_egress(on_reply):
                    time.sleep(0.0001)
            gap = (first_post_kill[0] - kill_ns[0]) / 1e6 if first_post_kill else None
            return {"system": "aeronpy", "mode": "failover", "msg_size": msg_size,
                    "failover_gap_ms": None if gap is None else round(gap, 1),
                    "killed_member": leader, "new_leader": cluster.leader(timeout_s=1.0, exclude=(leader,)),
                    "settings": "defaults (election_timeout_ms=200, leader_heartbeat_timeout_ms=400)"}
        finally:
            client.close()
    finally:
        cluster.close()


def _process_names(cluster) -> Dict[str, int]:
    """{"leader" / "follower N" / "client": pid} of the running cluster and this process."""
    names = {}
    for member, proc in sorted(cluster.procs.items()):
        role = (cluster.read_counters(member) or {}).get("role")
        names["leader" if role == 2 else f"follower {member}"] = proc.pid
    names["client"] = os.getpid()
    return names


def run_aeronpy(sizes: Sequence[int], duration_s: float, rate: float,
                throughput_only_sizes: Sequence[int] = (), file_sync: str = "none",
                sched_policy: str = "normal", host: str = "127.0.0.1") -> List[Dict[str, object]]:
    results: List[Dict[str, object]] = []
    cluster = _cluster(file_sync=file_sync, sched_policy=sched_policy, host=host)
    try:
        client = _connect(cluster)
        try:
            aeronpy_throughput(client, sizes[0], min(0.5, duration_s))      # warm up
            pids = _process_names(cluster)
            for size in sizes:
                results.append(aeronpy_throughput(client, size, duration_s))
                if size == sizes[0]:
                    results.append(aeronpy_throughput(client, size, duration_s, DEFAULT_WINDOW))
                results.append(aeronpy_latency(client, size, duration_s, rate, pids))
                results.append(aeronpy_latency_serial(client, size, duration_s, rate))
            for size in throughput_only_sizes:
                results.append(aeronpy_throughput(client, size, duration_s))
        finally:
            client.close()
    finally:
        cluster.close()
    results.append(aeronpy_failover(sizes[0], file_sync, sched_policy, host))
    return results


def run_pysyncobj(sizes: Sequence[int], duration_s: float, rate: float,
                  throughput_only_sizes: Sequence[int] = ()) -> List[Dict[str, object]]:
    from aeronpy.testing import pysyncobj_harness as harness
    results: List[Dict[str, object]] = []
    try:
        for size in sizes:
            results.append(harness.run("throughput", duration_s, size))
            results.append(harness.run("latency", duration_s, size, rate))
            results.append(harness.run("latency-client", duration_s, size, rate))
        for size in throughput_only_sizes:
            results.append(harness.run("throughput", duration_s, size))
        results.append(harness.run("failover", duration_s, sizes[0]))
    finally:
        harness._kill_all_children()
    return results


# -- comparison ----------------------------------------------------------------------------------

def _find(results: List[dict], mode: str, size: Optional[int] = None) -> Optional[dict]:
    for r in results:
        if r.get("mode") == mode and (size is None or r.get("msg_size") == size):
            return r
    return None


# the rows of PySyncObj's one-at-a-time run with its commands sent from a client process
CLIENT_ROWS = "PySyncObj via client,"


def compare(aeron: List[dict], pso: List[dict], sizes: Sequence[int]) -> List[dict]:
    """Rows of (metric, aeronpy, PySyncObj, ratio); ratio > 1 means aeronpy is better."""
    rows: List[dict] = []

    def row(metric: str, a, p, higher_is_better: bool) -> None:
        ratio = None
        if a and p:
            ratio = round(a / p if higher_is_better else p / a, 2)
        rows.append({"metric": metric, "aeronpy": a, "pysyncobj": p, "ratio": ratio})

    for size in sizes:
        a, p = _find(aeron, "throughput", size), _find(pso, "throughput", size)
        row(f"throughput {size} B (msgs/s)", a and round(a["msgs_per_s"]), p and round(p["msgs_per_s"]),
            True)
        d = _find(aeron, "throughput-default-window", size)
        if d is not None:
            row(f"  same, window {d['window']} (default)", round(d["msgs_per_s"]),
                p and round(p["msgs_per_s"]), True)
    for size in sizes:    # like for like: one request at a time on both
        a, p = _find(aeron, "latency-serial", size), _find(pso, "latency", size)
        for key in ("p50_us", "p90_us", "p99_us", "p99_9_us", "max_us"):
            row(f"1-at-a-time {size} B {key.replace('_us', '').replace('_', '.')} (us)",
                a and a["latency"][key], p and p["latency"][key], False)
        row(f"1-at-a-time {size} B achieved (/s)", a and round(a["achieved_rate"]),
            p and round(p["achieved_rate"]), True)
        c = _find(pso, "latency-client", size)
        if c is not None:     # the same path on both: PySyncObj's commands from a client process
            for key in ("p50_us", "p90_us", "p99_us"):
                row(f"  {CLIENT_ROWS} {size} B {key.replace('_us', '')} (us)",
                    a and a["latency"][key], c["latency"][key], False)
    for size in sizes:    # the offered rate held: aeronpy pipelines, PySyncObj cannot (sync)
        a = _find(aeron, "latency", size)
        for key in ("p50_us", "p90_us", "p99_us", "p99_9_us", "max_us"):
            row(f"open loop {size} B {key.replace('_us', '').replace('_', '.')} (us)",
                a and a["latency"][key], None, False)
        row(f"open loop {size} B achieved (/s)", a and round(a["achieved_rate"]), None, True)
    a, p = _find(aeron, "failover"), _find(pso, "failover")
    row("failover gap (ms)", a and a["failover_gap_ms"], p and p["failover_gap_ms"], False)
    return rows


def check_targets(aeron: List[dict], rows: List[dict]) -> Dict[str, dict]:
    """aeronpy's performance goals (``TARGETS``) against what this run measured (32 B messages)."""
    thr = _find(aeron, "throughput", 32)
    lat = _find(aeron, "latency", 32)
    fail = _find(aeron, "failover")
    ratios = {r["metric"]: r["ratio"] for r in rows}
    out: Dict[str, dict] = {}

    def target(name: str, achieved, goal, at_most: bool) -> None:
        met = None if achieved is None else (achieved <= goal if at_most else achieved >= goal)
        out[name] = {"target": goal, "achieved": achieved, "met": met}

    target("throughput >= 200,000 msgs/s", thr and round(thr["msgs_per_s"]),
           TARGETS["throughput_msgs_per_s"], False)
    target("throughput >= 5x PySyncObj", ratios.get("throughput 32 B (msgs/s)"), 5.0, False)
    target("p50 <= 100 us at 10k/s (open loop)", lat and lat["latency"]["p50_us"], TARGETS["p50_us"], True)
    target("p99 <= 500 us at 10k/s (open loop)", lat and lat["latency"]["p99_us"], TARGETS["p99_us"], True)
    target("p50 >= 5x better than PySyncObj", ratios.get("1-at-a-time 32 B p50 (us)"), 5.0, False)
    target("failover gap < 1 s", fail and fail["failover_gap_ms"], TARGETS["failover_gap_ms"], True)
    return out


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def format_table(report: dict) -> str:
    m = report["machine"]
    systems = (f"aeronpy vs PySyncObj {report['pysyncobj_version']}" if report.get("pysyncobj")
               else "aeronpy alone (--no-pysyncobj)")
    host = report.get("host", "127.0.0.1")
    where = ("each on 127.0.0.1" if host == "127.0.0.1" else
             f"each, aeronpy's on {host}, PySyncObj's on 127.0.0.1" if report.get("pysyncobj")
             else f"on {host}")
    lines = [f"{systems}: 3 processes {where}, same run, {report['duration_s']:g} s per part",
             f"aeronpy file_sync: {report.get('file_sync', 'none')}"
             + ("" if report.get("file_sync", "none") == "none" else
                " (every member fsyncs each append before it counts; PySyncObj does not fsync, "
                "and the targets are for file_sync none)"),
             "scheduling: " + ("SCHED_BATCH for aeronpy's nodes and client (a process that "
                               "wakes does not preempt the one running); PySyncObj under the "
                               "OS default, its better setting"
                               if report.get("sched_policy") == "batch" else
                               "the OS default (SCHED_OTHER) for both systems"),
             f"machine: {m.get('nproc')} CPUs, {m.get('cpu', '?')}, {m.get('memory_gib', '?')} GiB, "
             f"load {m.get('loadavg', '?')}, Python {m.get('python')}, {m.get('date')}"
             + (f", guest_halt_poll_ns {m['guest_halt_poll_ns']}" if "guest_halt_poll_ns" in m else ""),
             "", f"{'':38}{'aeronpy':>12}{'PySyncObj':>12}{'ratio':>8}"]
    for r in report["rows"]:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        lines.append(f"{r['metric']:38}{_fmt(r['aeronpy']):>12}{_fmt(r['pysyncobj']):>12}{ratio:>8}")
    lines += ["", "ratio: how many times better aeronpy is (higher throughput, lower latency/gap)"]
    if any(r["metric"].lstrip().startswith(CLIENT_ROWS) for r in report["rows"]):
        lines.append(f"'{CLIENT_ROWS}': PySyncObj's commands sent from a client process over "
                     "UDP, as aeronpy's are (the rows above them: submitted inside its leader)")
    lines.append("settings:")
    seen = set()
    for r in report["aeronpy"] + report["pysyncobj"]:
        key = (r["system"], r["mode"])
        if key not in seen:
            seen.add(key)
            lines.append(f"  {r['system']:9} {r['mode']:10} {r.get('settings', '')}")
    for r in report["aeronpy"]:
        cpu = r.get("cpu_us_per_request")
        if r["mode"] == "latency" and cpu:
            lines.append(f"  CPU us per request, open loop {r['msg_size']} B: "
                         + ", ".join(f"{k} {v:g}" for k, v in cpu.items()))
    lines.append("targets (aeronpy's performance goals, for 32-byte messages):")
    for name, t in report["targets"].items():
        state = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
        lines.append(f"  {name:34} achieved {_fmt(t['achieved']):>10}   {state}")
    if report.get("plots"):
        lines.append("plots: " + ", ".join(report["plots"]))
    return "\n".join(lines)


# -- plots ---------------------------------------------------------------------------------------

_PERCENTILES = [0, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99]


def write_plots(report: dict, directory: str) -> List[str]:
    """latency-distribution.png and throughput-vs-size.png under ``directory``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(directory, exist_ok=True)
    paths = []
    colors = {"aeronpy": "tab:blue", "pysyncobj": "tab:orange"}
    fig, ax = plt.subplots(figsize=(8, 5))
    curves = {("aeronpy", "latency"): ("tab:blue", "aeronpy open loop"),
              ("aeronpy", "latency-serial"): ("tab:green", "aeronpy 1 at a time"),
              ("pysyncobj", "latency"): ("tab:orange", "PySyncObj 1 at a time"),
              ("pysyncobj", "latency-client"): ("tab:red", "PySyncObj 1 at a time, client process")}
    for system in ("aeronpy", "pysyncobj"):
        for r in report[system]:
            curve = curves.get((system, r["mode"]))
            if curve is None or "histogram" not in r:
                continue
            hist = Histogram.from_dict(r["histogram"])
            if not hist.count:
                continue
            xs = [1.0 / (1.0 - p / 100.0) for p in _PERCENTILES]   # 1, 10, 100 ... = p0, p90, p99
            ys = [hist.percentile(p) / 1e3 for p in _PERCENTILES]
            style = "-" if r["msg_size"] == 32 else "--"
            ax.plot(xs, ys, style, marker="o", markersize=3, color=curve[0],
                    label=f"{curve[1]}, {r['msg_size']} B ({r['achieved_rate']:,.0f}/s achieved)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = [1, 2, 10, 100, 1000, 10000]
    ax.set_xticks(ticks)
    ax.set_xticklabels(["p0", "p50", "p90", "p99", "p99.9", "p99.99"])
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency (us, log scale)")
    ax.set_title(f"Request/response latency, {report['offered_rate']:,.0f}/s offered, 3 nodes on "
                 "loopback\n1 at a time: each request waits for the previous reply "
                 "(PySyncObj unbatched, sync); open loop: pipelined", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    path = os.path.join(directory, "latency-distribution.png")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)

    fig, ax = plt.subplots(figsize=(8, 5))
    sizes = sorted({r["msg_size"] for s in ("aeronpy", "pysyncobj") for r in report[s]
                    if r["mode"] == "throughput"})
    # a system that was not run (--no-pysyncobj) gets no bars at all, not bars labelled 0
    systems = [system for system in ("aeronpy", "pysyncobj")
               if any(r["mode"] == "throughput" for r in report[system])]
    width = 0.38 if len(systems) > 1 else 0.6
    offsets = [-width / 2, width / 2] if len(systems) > 1 else [0.0]
    for offset, system in zip(offsets, systems):
        found = [_find(report[system], "throughput", s) for s in sizes]
        values = [(r or {}).get("msgs_per_s", 0) for r in found]
        bars = ax.bar([i + offset for i in range(len(sizes))], values, width, color=colors[system],
                      label=system)
        ax.bar_label(bars, labels=[f"{v:,.0f}" if r else "not run" for v, r in zip(values, found)],
                     fontsize=8)
    ax.set_xticks(range(len(sizes)))
    ax.set_xticklabels([f"{s} B" for s in sizes])
    ax.set_xlabel("message size")
    ax.set_ylabel("replicated messages per second")
    ax.set_title("Throughput vs message size, 3 nodes on loopback\n"
                 f"aeronpy: 1 client, {THROUGHPUT_WINDOW} async offers in flight; "
                 + ("PySyncObj: batched, async, on the leader" if "pysyncobj" in systems
                    else "PySyncObj: not run (--no-pysyncobj)"), fontsize=9)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend()
    path = os.path.join(directory, "throughput-vs-size.png")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
    return paths


# -- command line --------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aeronpy bench", description=__doc__.split("\n")[0].replace("``", ""))
    p.add_argument("--duration", type=float, default=5.0, help="seconds per part (default 5)")
    p.add_argument("--sizes", default="32,256", help="message sizes in bytes (default 32,256)")
    p.add_argument("--rate", type=float, default=LATENCY_RATE,
                   help=f"offered rate of the latency parts, requests/s (default {LATENCY_RATE:,.0f})")
    p.add_argument("--quick", action="store_true",
                   help="1 s per part, 32-byte messages only (overrides --duration and --sizes)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--plots", metavar="DIR", default=None,
                   help="also measure throughput at 1024 B and write PNG plots to DIR")
    p.add_argument("--no-pysyncobj", action="store_true", help="aeronpy only")
    p.add_argument("--file-sync", choices=("none", "data", "full"), default="none",
                   help="aeronpy's file_sync (default none, as Aeron; PySyncObj keeps its defaults, "
                        "which do not fsync)")
    p.add_argument("--sched-policy", choices=SCHED_POLICIES, default="batch",
                   help="Linux scheduling policy of aeronpy's nodes and client (default batch: a "
                        "process that wakes does not preempt the one running; normal: the OS "
                        "default). PySyncObj runs under the OS default either way, its better "
                        "setting. See docs/operations.md")
    p.add_argument("--host", default="127.0.0.1",
                   help="address of this machine aeronpy's cluster runs on (default 127.0.0.1; "
                        "::1 measures IPv6). PySyncObj stays on 127.0.0.1")
    return p



@contextlib.contextmanager
def sched_policy(policy: str):
    """Run the block with this thread's scheduling policy set to ``policy`` (Linux): the
    processes it starts inherit it. Put back after. Yields the policy in force: "normal"
    where the OS has no SCHED_BATCH or refuses it (a sandbox may), which the table says."""
    if policy == "normal" or not hasattr(os, "SCHED_BATCH"):
        yield "normal"
        return
    before, param = os.sched_getscheduler(0), os.sched_getparam(0)
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except OSError as exc:
        print(f"aeronpy bench: SCHED_BATCH refused ({exc}); running under the OS default",
              file=sys.stderr)
        yield "normal"
        return
    try:
        yield policy
    finally:
        os.sched_setscheduler(0, before, param)


def command_line(argv: Optional[Sequence[str]] = None) -> str:
    """The command that reproduces this run, for the report. ``argv`` given: the ``aeronpy
    bench`` command (``aeronpy bench ...`` and ``python -m aeronpy bench ...`` pass theirs).
    Otherwise this process's own command line as it was typed (``python
    bench/cluster_bench.py ...``, ``python -m aeronpy.bench ...``)."""
    if argv is not None:
        return shlex.join(["aeronpy", "bench", *argv])
    orig = list(getattr(sys, "orig_argv", None) or [])
    if orig:
        return shlex.join([os.path.basename(orig[0]), *orig[1:]])
    return shlex.join(["python", *sys.argv])


def aeronpy_part_count(sizes: Sequence[int], extra_sizes: Sequence[int]) -> int:
    """Parts :func:`run_aeronpy` measures: per size throughput, open loop and 1-at-a-time, a
    second throughput at the default window for the first size, the extra throughput sizes,
    and the failover."""
    return 3 * len(sizes) + 1 + len(extra_sizes) + 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    opts = build_parser().parse_args(argv)
    duration = 1.0 if opts.quick else opts.duration
    try:
        sizes = [32] if opts.quick else [int(s) for s in opts.sizes.split(",") if s.strip()]
    except ValueError:
        print(f"aeronpy bench: --sizes {opts.sizes!r}: expected sizes in bytes, e.g. 32,256",
              file=sys.stderr)
        return 2
    if duration <= 0 or opts.rate <= 0 or not sizes or min(sizes) <= 0:
        print("aeronpy bench: --duration, --rate and --sizes must be positive", file=sys.stderr)
        return 2
    try:
        from aeronpy.endpoints import ip_literal
        if ip_literal(opts.host) is None:
            raise ValueError("give an IP address of this machine, such as 127.0.0.1 or ::1")
    except ValueError as exc:
        print(f"aeronpy bench: --host {opts.host!r}: {exc}", file=sys.stderr)
        return 2
    extra_sizes = [s for s in (32, 256, 1024) if s not in sizes] if opts.plots else []
    if opts.plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("aeronpy bench: --plots needs matplotlib (pip install 'aeronpy[bench]')",
                  file=sys.stderr)
            return 2
    with_pso = not opts.no_pysyncobj
    if with_pso:
        try:
            import pysyncobj  # noqa: F401
        except ImportError:
            print("aeronpy bench: pysyncobj is not installed (pip install 'aeronpy[bench]'); "
                  "use --no-pysyncobj for aeronpy alone", file=sys.stderr)
            return 2
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    report: dict = {"machine": machine_info(), "duration_s": duration, "offered_rate": opts.rate,
                    "file_sync": opts.file_sync, "sched_policy": opts.sched_policy,
                    "host": opts.host,
                    "command": command_line(argv)}
    try:
        log = (lambda text: print(text, file=sys.stderr, flush=True))
        log(f"aeronpy: {aeronpy_part_count(sizes, extra_sizes)} parts of ~{duration:g} s ...")
        with sched_policy(opts.sched_policy) as policy:
            report["sched_policy"] = policy
            report["aeronpy"] = run_aeronpy(sizes, duration, opts.rate, extra_sizes, opts.file_sync,
                                            policy, opts.host)
        report["pysyncobj"] = []
        if with_pso:
            # under the OS default, its better setting (the module docstring)
            from aeronpy.testing.pysyncobj_harness import _pysyncobj_version
            report["pysyncobj_version"] = _pysyncobj_version()
            log("PySyncObj: the same parts ...")
            report["pysyncobj"] = run_pysyncobj(sizes, duration, opts.rate, extra_sizes)
    except KeyboardInterrupt:
        print("aeronpy bench: interrupted; every child process killed", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"aeronpy bench: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    report["rows"] = compare(report["aeronpy"], report["pysyncobj"], sizes)
    report["targets"] = check_targets(report["aeronpy"], report["rows"])
    if opts.plots:
        report["plots"] = write_plots(report, opts.plots)
    if opts.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(format_table(report))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
