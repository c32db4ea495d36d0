"""The load clients of the big-message trial, one process each:
``python -c "import sys; from bigmsg_trial.clients import client_main; client_main(sys.argv[1:])" ...``.

Kinds: ``seq`` (blocking requests, closed loop or paced, cycling through size pairs), ``limits``
(the sizes scenario's cases once each) and ``flood`` (offer() as fast as it accepts, replies
taken by poll_egress). Every reply is checked byte for byte (plan.check_reply); each record is
[sent_at, latency_ns, outcome, key, verdict, request_bytes, reply_bytes] (verdict "1": exact)."""
from __future__ import annotations

import json
import os
import time
from typing import Dict, List, Sequence, Tuple

import aeronpy

from bigmsg_trial import plan
from loss_trial.checker import ACKED, CLOSED, TIMED_OUT

CONNECT_TIMEOUT_S = 5.0
# A 1 MiB message is 767 fragments, 8 windows of 128 KiB: at 5 % loss each window is repaired in
# a few NAK rounds (nak_retry 5 ms); an election (< 1 s) and the client's re-send of its window
# (resend_timeout 0.5 s) fit too. 10 s is far above all of it and still ends a hung reassembly.
REQUEST_TIMEOUT_S = 10.0
MAX_REQUESTS = 200_000
FLOOD_DRAIN_S = 15.0                   # after the flood, wait this long for outstanding replies
RSS_EVERY_S = 0.25


def rss_anon(pid: int = 0) -> Tuple[int, int]:
    """(RssAnon, VmRSS) in bytes of a process (0: this one); (0, 0) if unreadable."""
    values = {}
    try:
        with open(f"/proc/{pid or os.getpid()}/status") as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name in ("RssAnon", "VmRSS"):
                    values[name] = int(rest.split()[0]) * 1024
    except (OSError, ValueError):
        return 0, 0
    return values.get("RssAnon", 0), values.get("VmRSS", 0)


def _connect(endpoints: str, end_s: float):
    while time.time() < end_s:
        try:
            return aeronpy.ClusterClient.connect(endpoints, timeout_s=CONNECT_TIMEOUT_S)
        except aeronpy.AeronpyError:
            time.sleep(0.2)
    return None


def _request(client, tag: str, seq: int, size: int, reply_size: int, records: list) -> bool:
    """One request; False when the session is gone (the caller reconnects)."""
    key = f"{tag}:{seq}"
    payload = plan.request_payload(key, size, reply_size)
    sent_at, start_ns = time.time(), time.perf_counter_ns()
    alive = True
    try:
        reply = client.request(payload, timeout_s=REQUEST_TIMEOUT_S)
        outcome, verdict = ACKED, plan.check_reply(key, payload, reply_size, reply)
    except aeronpy.ClusterTimeoutError:
        outcome, verdict = TIMED_OUT, None
    except (aeronpy.ClusterClosedError, aeronpy.NotConnectedError):
        outcome, verdict, alive = CLOSED, None, False
    records.append([sent_at, time.perf_counter_ns() - start_ns, outcome, key, verdict, size, reply_size])
    return alive


def run_seq(tag: str, endpoints: str, end_s: float, rate: float, sizes: str, records: list) -> None:
    cycle = plan.size_cycle(sizes)
    client, seq, next_send = None, 0, time.monotonic()
    while time.time() < end_s and seq < MAX_REQUESTS:
        if client is None:
            client = _connect(endpoints, end_s)
            if client is None:
                break
        if rate > 0:
            now = time.monotonic()
            time.sleep(max(0.0, next_send - now))
            next_send = max(next_send + 1.0 / rate, now - 0.5)
        size, reply_size = cycle[seq % len(cycle)]
        seq += 1
        if not _request(client, tag, seq, size, reply_size, records):
            client.close()
            client = None
    if client is not None:
        client.close()


def run_limits(tag: str, endpoints: str, end_s: float, records: list, cases: list) -> None:
    """Each case once; "too-large" cases must raise MessageTooLargeError at offer()."""
    client = _connect(endpoints, end_s)
    if client is None:
        return
    for seq, (name, size, reply_size, expected) in enumerate(plan.limit_cases()):
        key = f"{tag}:{seq}"
        if expected == "too-large":
            try:
                client.offer(plan.request_payload(key, size, reply_size))
                cases.append([name, expected, "offer() accepted it"])
            except aeronpy.MessageTooLargeError as e:
                cases.append([name, expected, f"raised: {e}"])
            continue
        before = len(records)
        _request(client, tag, seq, size, reply_size, records)
        record = records[before]
        got = record[4] if record[2] == ACKED else record[2]
        cases.append([name, expected, got])
    client.close()


def run_flood(tag: str, endpoints: str, end_s: float, sizes: str, records: list, rss: list) -> Dict[str, object]:
    """offer() as fast as it accepts until ``end_s``, then drain replies; returns figures."""
    cycle = plan.size_cycle(sizes)
    client = _connect(endpoints, end_s)
    if client is None:
        return {}
    outstanding: Dict[int, list] = {}        # correlation id -> record (outcome filled on reply)
    acked_bytes, seq, started = [0], 0, time.monotonic()
    next_rss = 0.0

    def on_reply(correlation_id: int, payload) -> None:
        record = outstanding.pop(correlation_id, None)
        if record is None:
            return
        key, size, reply_size = record[3], record[5], record[6]
        record[1] = time.perf_counter_ns() - record[1]
        record[2] = ACKED
        record[4] = plan.check_reply(key, plan.request_payload(key, size, reply_size), reply_size, payload)
        acked_bytes[0] += size

    back_pressured = 0
    while time.time() < end_s and seq < MAX_REQUESTS:
        if time.monotonic() >= next_rss:
            rss.append([round(time.monotonic() - started, 3), *rss_anon()])
            next_rss = time.monotonic() + RSS_EVERY_S
        size, reply_size = cycle[seq % len(cycle)]
        key = f"{tag}:{seq + 1}"
        payload = plan.request_payload(key, size, reply_size)
        sent_at, start_ns = time.time(), time.perf_counter_ns()
        try:
            cid = client.offer(payload)
        except aeronpy.ClusterClosedError:
            break
        if cid > 0:
            seq += 1
            record = [sent_at, start_ns, TIMED_OUT, key, None, size, reply_size]
            records.append(record)
            outstanding[cid] = record
        else:
            back_pressured += 1
            if cid == aeronpy.CLOSED:
                break
            client.wait_for_egress(0.001)
        client.poll_egress(on_reply)
    flood_s = time.monotonic() - started
    acked_during = acked_bytes[0]
    drain_end = time.monotonic() + FLOOD_DRAIN_S
    while outstanding and time.monotonic() < drain_end:
        client.wait_for_egress(0.05)
        try:
            client.poll_egress(on_reply)
        except aeronpy.ClusterClosedError:
            break
    rss.append([round(time.monotonic() - started, 3), *rss_anon()])
    for record in outstanding.values():
        record[1] = time.perf_counter_ns() - record[1]
    counters = {k: v for k, v in client.counters.items() if k in ("redirects", "window_resends", "back_pressured")}
    udp = getattr(client._transport, "_udp", None)       # the stream's refusals offer() ignored
    counters["stream_back_pressured"] = udp.counters.back_pressured if udp is not None else None
    client.close()
    return {"flood_s": round(flood_s, 3), "acked_bytes_during": acked_during, "offered": seq,
            "back_pressured_offers": back_pressured, "unanswered": len(outstanding), "client_counters": counters}


def client_main(argv: Sequence[str]) -> None:
    """argv: kind tag endpoints duration_s rate sizes out_json. Writes every request."""
    kind, tag, endpoints, duration_s, rate, sizes, out_path = argv
    end_s, records, extra = time.time() + float(duration_s), [], {}
    rss: List[list] = []
    if kind == "limits":
        cases: List[list] = []
        run_limits(tag, endpoints, end_s, records, cases)
        extra["cases"] = cases
    elif kind == "flood":
        extra["flood"] = run_flood(tag, endpoints, end_s, sizes, records, rss)
        extra["rss"] = rss
    else:
        run_seq(tag, endpoints, end_s, float(rate), sizes, records)
    with open(out_path + ".tmp", "w") as f:
        json.dump({"tag": tag, "kind": kind, "paced": float(rate) > 0, "records": records, **extra}, f)
    os.replace(out_path + ".tmp", out_path)
