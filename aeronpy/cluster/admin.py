"""Cluster-wide admin actions of ``aeronpy tool``: the commands that need a running cluster.

Each action (snapshot, suspend, resume, shutdown, abort) must go through the replicated log so
that every member agrees on where it happened; ``recording-log`` and ``recovery-plan`` read the
archive. ``snapshot`` (issue 7) sends an AdminRequest to the member's ingress endpoint (found in
its counters file) and follows a not-leader answer to the leader, which appends a CLUSTER_ACTION
snapshot entry; ``recording-log`` and ``recovery-plan`` read a data dir locally, read-only (safe
on a running node). ``suspend``, ``resume``, ``shutdown`` and ``abort`` (issue 8) go the same
way (`aeronpy.cluster.admin_actions`); the node side is `aeronpy.cluster.node_admin`. Each
returns ``completed`` False when the effect was not seen on this member within ``timeout_s``
(the CLI then exits with status 1). ``timeout_s`` must be a finite number of seconds above 0
(ValueError otherwise: a NaN or infinite one would wait for ever on a member that does not
answer).

The signatures are the seam: the implementation replaces each body, the CLI stays as it is.
Every function returns plain data (a dict) that the CLI prints or dumps as JSON.
"""
from __future__ import annotations

import math
import numbers
import os
import struct
import time

from aeronpy.errors import AeronpyError


ADMIN_COMMANDS = ("snapshot", "suspend", "resume", "shutdown", "abort", "transfer-leadership",
                  "recording-log", "recovery-plan")


class AdminNotAvailableError(AeronpyError):
    """The admin command exists in the CLI but its implementation has not landed yet."""


def check_timeout(timeout_s: float) -> float:
    """``timeout_s`` as a float, or ValueError: a NaN or infinite timeout never expires (the
    request would wait for ever on a member that does not answer), and one of 0 or less has
    expired before the request is sent."""
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, numbers.Real) \
            or not math.isfinite(timeout_s) or timeout_s <= 0:
        raise ValueError(f"timeout_s must be a finite number of seconds above 0, got {timeout_s!r}")
    return float(timeout_s)


def snapshot(data_dir: "str | os.PathLike", timeout_s: float = 10.0) -> dict:
    """Ask the cluster to take a snapshot on every member at one log position.

    Returns once the leader has appended the snapshot entry and this member's recording log
    shows a snapshot at or after it (or ``timeout_s`` passed: then ``recorded`` is False).
    A member that is not running is refused at once (AdminError), as by the actions below."""
    from aeronpy.cluster.admin_client import request_snapshot
    return request_snapshot(os.fspath(data_dir), check_timeout(timeout_s))


def suspend(data_dir: "str | os.PathLike", timeout_s: float = 10.0) -> dict:
    """Stop the cluster sequencing new client messages (until `resume`).

    Returns once this member has applied the suspend entry (its counters show SUSPENDED)."""
    return _cluster_action(os.fspath(data_dir), "suspend", timeout_s)


def resume(data_dir: "str | os.PathLike", timeout_s: float = 10.0) -> dict:
    """Let a suspended cluster sequence client messages again."""
    return _cluster_action(os.fspath(data_dir), "resume", timeout_s)


def shutdown(data_dir: "str | os.PathLike", timeout_s: float = 30.0) -> dict:
    """Orderly stop: every member takes the same final snapshot, then exits.

    Returns once this member has stopped; ``snapshot`` is its final snapshot (from its
    recording log), ``stopped_at_index`` the log index every member stops at."""
    return _cluster_action(os.fspath(data_dir), "shutdown", timeout_s)


def abort(data_dir: "str | os.PathLike", timeout_s: float = 10.0) -> dict:
    """Stop every member at one log position without a snapshot."""
    return _cluster_action(os.fspath(data_dir), "abort", timeout_s)


def transfer_leadership(data_dir: "str | os.PathLike", to: "int | None" = None,
                        timeout_s: float = 10.0) -> dict:
    """Hand the leadership from the cluster's leader to member ``to`` (default: the follower
    most up to date), as a leader stopped with SIGTERM does, without stopping anything: before
    maintenance of the leader's machine, or when clients cannot reach it while its peers can.
    Sent through this member (followed to the leader). Returns once this member's counters
    name the successor as leader (``completed``), or ``timeout_s`` passed."""
    from aeronpy.cluster.admin_client import (_members_from_counters, request_through_member,
                                              require_running)
    from aeronpy.cluster.counters import CountersReader, CountersUnavailableError
    from aeronpy.cluster.node_admin import ADMIN_TRANSFER_LEADERSHIP

    timeout_s = check_timeout(timeout_s)
    if to is not None and (isinstance(to, bool) or not isinstance(to, int) or to < 0):
        raise ValueError(f"to must be a member id (an int >= 0) or None, got {to!r}")
    member_id, members = _members_from_counters(data_dir := os.fspath(data_dir))
    require_running(data_dir, member_id, "transfer-leadership")

    def read() -> dict:
        try:
            with CountersReader(data_dir) as reader:
                return reader.read()
        except CountersUnavailableError:
            return {}

    values = read()
    term_before = values.get("leadership_term")
    deadline = time.monotonic() + timeout_s
    endpoint, successor = request_through_member(
        data_dir, member_id, members, ADMIN_TRANSFER_LEADERSHIP, "the leadership transfer",
        timeout_s, struct.pack("<q", -1 if to is None else to))
    result = {"leader_endpoint": endpoint, "to": successor, "member_id": member_id,
              "term_before": term_before}

    def successor_leads(values: dict) -> bool:
        return values.get("leader_id") == successor and \
            (values.get("leadership_term") or 0) > (term_before or 0)

    while True:
        values = read() or values
        if successor_leads(values) or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    result["leader"] = values.get("leader_id")
    result["term"] = values.get("leadership_term")
    result["completed"] = successor_leads(values)
    if not result["completed"]:
        result["problem"] = (f"this member did not see member {successor} lead within "
                             f"{timeout_s:g} s (leader {result['leader']}, term {result['term']}); "
                             "a transfer the successor does not take up ends after an election "
                             "timeout with the old leader still leading: see 'aeronpy tool "
                             "describe' and the node logs")
    return result


def _cluster_action(data_dir: str, action: str, timeout_s: float) -> dict:
    """Send the action to this member (followed to the leader), then watch this member's
    counters until the action shows: SUSPENDED / ACTIVE with the entry committed here, or the
    node stopped. A member already SUSPENDED (ACTIVE) when a suspend (resume) is sent gets
    ``note`` "already ..."; it is ``completed`` only once the entry reached it, as any other."""
    from aeronpy.cluster.admin_client import (_entry_dict, _members_from_counters, _recording_entries,
                                              request_through_member, require_running)
    from aeronpy.cluster.counters import ConsensusModuleState, CountersReader, CountersUnavailableError
    from aeronpy.cluster.node_admin import ADMIN_ABORT, ADMIN_RESUME, ADMIN_SHUTDOWN, ADMIN_SUSPEND
    from aeronpy.archive.recording_log import SnapshotEntry

    timeout_s = check_timeout(timeout_s)
    request_type = {"suspend": ADMIN_SUSPEND, "resume": ADMIN_RESUME, "shutdown": ADMIN_SHUTDOWN,
                    "abort": ADMIN_ABORT}[action]
    member_id, members = _members_from_counters(data_dir)
    require_running(data_dir, member_id, action)

    def read() -> tuple:
        try:
            with CountersReader(data_dir) as reader:
                return reader.read(), reader.status()
        except CountersUnavailableError:
            return {}, None

    want = {"suspend": ConsensusModuleState.SUSPENDED, "resume": ConsensusModuleState.ACTIVE}.get(action)
    already = want is not None and read()[0].get("consensus_module_state") == want
    deadline = time.monotonic() + timeout_s
    endpoint, index = request_through_member(data_dir, member_id, members, request_type,
                                             f"'{action}'", timeout_s)
    result = {"action": action, "index": index, "leader_endpoint": endpoint, "member_id": member_id}
    if already:
        result["note"] = (f"already {want.name.lower()}: this member was {want.name} when the "
                          "request was sent")
    state = None
    stopped = seen = False
    commit_index = None
    while True:
        values, status = read()
        if values:
            commit_index = values["commit_index"]
            state = ConsensusModuleState(values["consensus_module_state"]).name \
                if values["consensus_module_state"] in ConsensusModuleState._value2member_map_ else None
            if want is not None and values["consensus_module_state"] == want \
                    and commit_index >= index:
                seen = True
                break
            stopped = status is not None and not status.running
            if want is None and stopped:
                result["stopped_at_index"] = values.get("stopped_at_index", 0)
                break
        if time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    result["state"] = state
    if want is not None:
        # the state alone says nothing when the member was in it already: the entry must
        # have reached it too
        result["completed"] = seen
    else:
        result["stopped"] = stopped
        result["completed"] = stopped and result.get("stopped_at_index") == index
        if action == "shutdown":
            final = [e for e in _recording_entries(data_dir) if isinstance(e, SnapshotEntry)
                     and e.index == index]
            result["snapshot"] = _entry_dict(final[-1]) if final else None
            result["completed"] = result["completed"] and bool(final)
    if not result["completed"] and want is None and action == "shutdown" and stopped \
            and result.get("stopped_at_index") == index:
        result["problem"] = (f"this member stopped at the shutdown (log index {index}) without "
                             "its final snapshot, which it could not write (see 'aeronpy tool "
                             "errors' and the node log); nothing is lost: at its next start it "
                             "replays the log instead")
    elif not result["completed"]:
        result["problem"] = (f"this member did not show the {action} (log index {index}) within "
                             f"{timeout_s:g} s (state {state}, commit_index {commit_index}, "
                             f"stopped {stopped}); see 'aeronpy tool describe' and the node logs")
    return result


def recording_log(data_dir: "str | os.PathLike") -> dict:
    """The recording log of a data dir: term starts and snapshots (read-only)."""
    from aeronpy.cluster.admin_client import read_recording_log
    return read_recording_log(os.fspath(data_dir))


def recovery_plan(data_dir: "str | os.PathLike") -> dict:
    """What a node started on this data dir would load and replay (read-only)."""
    from aeronpy.cluster.admin_client import plan_recovery
    return plan_recovery(os.fspath(data_dir))


def new_member(data_dir: "str | os.PathLike") -> dict:
    """Prepare a missing or empty data dir for a member that has never run: it votes from its
    first start instead of counting as rejoining (new_member.py). Never for one that ran."""
    from aeronpy.cluster.new_member import prepare_new_member
    return prepare_new_member(os.fspath(data_dir))


COMMAND_FUNCTIONS = {
    "snapshot": snapshot, "suspend": suspend, "resume": resume, "shutdown": shutdown,
    "abort": abort, "transfer-leadership": transfer_leadership,
    "recording-log": recording_log, "recovery-plan": recovery_plan,
    "new-member": new_member,
}
