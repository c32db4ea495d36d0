"""The load clients of the loss trial, one process each:
``python -c "import sys; from loss_trial.clients import client_main; client_main(sys.argv[1:])" ...``."""
from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Sequence, Tuple

import aeronpy
import aeronpy.aio

from loss_trial.checker import ACKED, CLOSED, TIMED_OUT

REQUEST_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 5.0
MAX_REQUESTS_PER_CLIENT = 400_000
ASYNC_TASKS = 4


def _pacing(next_send: float, rate: float) -> Tuple[float, float]:
    """(seconds to wait, next due time) for a request due at ``next_send`` (monotonic s); a
    client that fell behind catches up at most 0.5 s of missed requests. Rate 0: no wait."""
    if rate <= 0:
        return 0.0, next_send
    now = time.monotonic()
    return max(0.0, next_send - now), max(next_send + 1.0 / rate, now - 0.5)


def _run_sync(tag: str, endpoints: str, end_s: float, rate: float, records: list) -> None:
    client, seq, next_send = None, 0, time.monotonic()
    while time.time() < end_s and seq < MAX_REQUESTS_PER_CLIENT:
        if client is None:
            try:
                client = aeronpy.ClusterClient.connect(endpoints, timeout_s=CONNECT_TIMEOUT_S)
            except aeronpy.AeronpyError:
                time.sleep(0.2)
                continue
        delay_s, next_send = _pacing(next_send, rate)
        time.sleep(delay_s)
        payload, seq = f"{tag}:{seq}", seq + 1
        sent_at, start_ns = time.time(), time.perf_counter_ns()
        try:
            reply, outcome = client.request(payload.encode(), timeout_s=REQUEST_TIMEOUT_S).decode(), ACKED
        except aeronpy.ClusterTimeoutError:
            reply, outcome = None, TIMED_OUT
        except (aeronpy.ClusterClosedError, aeronpy.NotConnectedError):
            reply, outcome = None, CLOSED
            client.close()
            client = None
        records.append([sent_at, time.perf_counter_ns() - start_ns, outcome, payload, reply])
    if client is not None:
        client.close()


async def _run_async(tag: str, endpoints: str, end_s: float, rate: float, records: list) -> None:
    shared = {"client": None}
    connecting = asyncio.Lock()

    async def current_client():
        async with connecting:          # one task reconnects; the others wait for its session
            if shared["client"] is None:
                try:
                    shared["client"] = await aeronpy.aio.AsyncClusterClient.connect(
                        endpoints, timeout_s=CONNECT_TIMEOUT_S)
                except aeronpy.AeronpyError:
                    await asyncio.sleep(0.2)
            return shared["client"]

    async def task(task_id: int) -> None:
        seq, next_send = 0, time.monotonic()
        while time.time() < end_s and seq < MAX_REQUESTS_PER_CLIENT // ASYNC_TASKS:
            client = await current_client()
            if client is None:
                continue
            delay_s, next_send = _pacing(next_send, rate)
            await asyncio.sleep(delay_s)
            payload, seq = f"{tag}.{task_id}:{seq}", seq + 1
            sent_at, start_ns = time.time(), time.perf_counter_ns()
            try:
                reply, outcome = (await client.request(payload.encode(), timeout_s=REQUEST_TIMEOUT_S)).decode(), ACKED
            except aeronpy.ClusterTimeoutError:
                reply, outcome = None, TIMED_OUT
            except (aeronpy.ClusterClosedError, aeronpy.NotConnectedError):
                reply, outcome = None, CLOSED
                if shared["client"] is client:
                    shared["client"] = None
                    await client.close()
            records.append([sent_at, time.perf_counter_ns() - start_ns, outcome, payload, reply])

    await asyncio.gather(*(task(i) for i in range(ASYNC_TASKS)))
    if shared["client"] is not None:
        await shared["client"].close()


def client_main(argv: Sequence[str]) -> None:
    """argv: kind (sync|async) tag endpoints duration_s rate out_json. Writes every request."""
    kind, tag, endpoints, duration_s, rate, out_path = argv
    end_s, rate, records = time.time() + float(duration_s), float(rate), []
    if kind == "async":
        asyncio.run(_run_async(tag, endpoints, end_s, rate, records))
    else:
        _run_sync(tag, endpoints, end_s, rate, records)
    with open(out_path + ".tmp", "w") as f:
        json.dump({"tag": tag, "paced": rate > 0, "records": records}, f)
    os.replace(out_path + ".tmp", out_path)
