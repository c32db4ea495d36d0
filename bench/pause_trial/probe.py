"""An idle client for scenario g, one process:
``python -c "import sys; from pause_trial.probe import probe_main; probe_main(sys.argv[1:])" ...``.

It connects (while the leader is stopped: its session is one the stopped leader never saw),
then sends one request every PERIOD_S and polls in between, so it sends keepalives, and an
idle client sends each keepalive to one other member as well, in turn: some of them wait in
the stopped leader's socket. It writes the loss trial's records ([sent_at, latency_ns,
outcome, payload, reply]) and every exception with its message."""
from __future__ import annotations

import json
import os
import time
from typing import Sequence

import aeronpy

from loss_trial.checker import ACKED, CLOSED, TIMED_OUT

PERIOD_S = 1.5
REQUEST_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 5.0


def probe_main(argv: Sequence[str]) -> None:
    """argv: tag endpoints duration_s out_json."""
    tag, endpoints, duration_s, out_path = argv
    end_s = time.time() + float(duration_s)
    records, errors, client, seq = [], [], None, 0
    for _ in range(100_000):                       # bound: far above duration_s / PERIOD_S
        if time.time() >= end_s:
            break
        if client is None:
            try:
                client = aeronpy.ClusterClient.connect(endpoints, timeout_s=CONNECT_TIMEOUT_S)
                errors.append([time.time(), "connected", ""])
            except aeronpy.AeronpyError as e:
                errors.append([time.time(), type(e).__name__, str(e)[:300]])
                time.sleep(0.2)
                continue
        payload, seq = f"{tag}:{seq}", seq + 1
        sent_at, start_ns = time.time(), time.perf_counter_ns()
        try:
            reply, outcome = client.request(payload.encode(), timeout_s=REQUEST_TIMEOUT_S).decode(), ACKED
        except aeronpy.ClusterTimeoutError:
            reply, outcome = None, TIMED_OUT
        except (aeronpy.ClusterClosedError, aeronpy.NotConnectedError) as e:
            reply, outcome = None, CLOSED
            errors.append([time.time(), type(e).__name__, str(e)[:300]])
        records.append([sent_at, time.perf_counter_ns() - start_ns, outcome, payload, reply])
        idle_until = time.monotonic() + PERIOD_S
        while client is not None and outcome != CLOSED and time.monotonic() < idle_until:
            client.poll_egress(lambda correlation_id, payload: None)
            time.sleep(0.01)
        if outcome == CLOSED:
            errors.append([time.time(), "client counters", json.dumps(client.counters)[:1500]])
            client.close()
            client = None
    if client is not None:
        errors.append([time.time(), "client counters", json.dumps(client.counters)[:1500]])
        client.close()
    with open(out_path + ".tmp", "w") as f:
        json.dump({"tag": tag, "paced": True, "records": records, "errors": errors}, f)
    os.replace(out_path + ".tmp", out_path)
