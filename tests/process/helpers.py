"""Helpers shared by the process tests: counters of live nodes, bounded waits, a counting client.

Every wait here is bounded by a deadline; nothing sleeps for a fixed "long enough".
"""
from __future__ import annotations

import json
import os
import struct
import time
from typing import Callable, Iterable, Optional

from aeronpy.testing.waits import wait_until as _wait_until
from aeronpy.errors import ClusterTimeoutError, NotConnectedError

COUNTER_SERVICE = "aeronpy.testing.services:CounterService"
ADD = struct.Struct("<q")
LEADER = 2


def counters(pc, member: int) -> dict:
    """The member's counters (empty dict when the file is unreadable, e.g. during a restart)."""
    return pc.read_counters(member) or {}


def wait_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.02) -> bool:
    return _wait_until(predicate, timeout_s, interval_s)


def _one_index(pc, members) -> Optional[tuple]:
    seen = [counters(pc, m) for m in members]
    indexes = {(c.get("commit_index"), c.get("append_index")) for c in seen}
    if len(indexes) != 1:
        return None
    commit, append = indexes.pop()
    return (commit, append) if commit is not None and commit == append else None


def settled(pc, members: Iterable[int], hold_s: float = 0.08) -> bool:
    """True when every member in ``members`` has committed all it appended, at one index, and
    still shows that index ``hold_s`` later (more than a heartbeat interval).

    Before stopping members to compare their final states, equal commit indexes alone are not
    enough: a client can hold the last reply before the leader's counters show that commit, and
    then every member still reads the previous index (a follower stopped then records one add
    fewer). Waiting until nothing appended is uncommitted anywhere narrows that window; it
    remained open while every member's counters were a publish behind (the leader's and the
    followers' alike still showing the index before the last add: a follower one add short,
    once under load, 2026-11-29). Within ``hold_s`` the leader publishes its new commit, which
    the followers learn from its next heartbeat, so a stale agreement does not hold."""
    members = list(members)
    first = _one_index(pc, members)
    if first is None:
        return False
    time.sleep(hold_s)
    return _one_index(pc, members) == first


def add(client, amount: int = 1, timeout_s: float = 5.0) -> int:
    """Ask the CounterService to add ``amount``; returns the running total it replied with."""
    return ADD.unpack(client.request(ADD.pack(amount), timeout_s=timeout_s))[0]


def add_retrying(client, amount: int = 1, within_s: float = 10.0) -> int:
    """`add`, retried on timeouts until ``within_s`` (a timed-out request may still apply, so
    callers that count exactly must use one long `add` instead)."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return add(client, amount, timeout_s=max(0.05, min(1.0, deadline - time.monotonic())))
        except (ClusterTimeoutError, NotConnectedError):
            if time.monotonic() >= deadline:
                raise


def caught_up(pc, member: int, others: Iterable[int]) -> bool:
    """True when ``member``'s commit index has reached every other live member's."""
    mine = counters(pc, member).get("commit_index", -1)
    return all(mine >= counters(pc, o).get("commit_index", 0) for o in others if pc.alive(o))


def read_hash_files(directory: str) -> dict:
    """member id -> the record a CounterService wrote at on_terminate (AERONPY_HASH_DIR)."""
    out = {}
    for name in os.listdir(directory):
        if name.startswith("member-") and name.endswith(".json"):
            with open(os.path.join(directory, name)) as f:
                record = json.load(f)
            if record.get("service_id", 0) == 0:     # another service's record: not this one's
                out[record["member_id"]] = record
    return out


def describe(pc, members: Optional[Iterable[int]] = None) -> str:
    """A one-line-per-member view of roles and indexes, for assertion messages."""
    lines = []
    for i in range(pc.members) if members is None else members:
        c = counters(pc, i)
        lines.append(f"member {i}: alive={pc.alive(i)} role={c.get('role')} term={c.get('leadership_term')} "
                     f"commit={c.get('commit_index')} append={c.get('append_index')}")
    return "\n".join(lines)
