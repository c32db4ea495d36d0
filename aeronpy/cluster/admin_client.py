"""The implementations behind ``aeronpy tool snapshot | recording-log | recovery-plan``.

``snapshot`` talks to a running member through its ingress endpoint (AdminRequest), and
refuses at once a member that is not running (`require_running`); the other two read a data
dir and never write to it (a live node's files are safe to inspect: a torn last
recording-log entry is ignored here, never cut as the node's own loader would).
"""
from __future__ import annotations

import os
import struct
import time
from typing import Optional

from aeronpy.archive.durable_marker import DURABLE_MARKER_FILE, DurableMarker
from aeronpy.archive.fs import OsFileSystem, read_regular
from aeronpy.archive.node_state import load_node_state
from aeronpy.archive.recording_log import (ENTRY_BYTES, RECORDING_LOG_FILE, RecordingLog, SnapshotEntry,
                                           TermStart, live_term_starts)
from aeronpy.archive.segments import SEGMENT_SUFFIX, SegmentLog
from aeronpy.archive.snapshots import verify_snapshot
from aeronpy.endpoints import format_endpoint
from aeronpy.errors import AeronpyError

_I64 = struct.Struct("<q")


class AdminError(AeronpyError):
    """An admin request could not be completed (no member answered, or it refused)."""


# ------------------------------------------------------------------------------- local reads
def _recording_entries(data_dir: str) -> list:
    path = os.path.join(data_dir, RECORDING_LOG_FILE)
    try:
        # a regular file only, read up to its size: a FIFO or a link to /dev/zero there is
        # refused (NotARegularFileError, naming it), never read without end
        raw = read_regular(path)
    except FileNotFoundError:
        return []
    entries = []
    for off in range(0, len(raw) - len(raw) % ENTRY_BYTES, ENTRY_BYTES):
        entry = RecordingLog._decode(raw, off)
        if entry is not None:
            entries.append(entry)
    return entries


def _entry_dict(e) -> dict:
    if isinstance(e, TermStart):
        return {"type": "TERM_START", "term": e.term, "index": e.index}
    return {"type": "SNAPSHOT", "term": e.term, "index": e.index, "name": e.name,
            "checksum": f"{e.checksum:08x}", "timestamp_ns": e.timestamp_ns}


def _require_node_data(data_dir: str) -> None:
    """Refuse (AdminError, exit 2 "nothing to read") a directory that holds no node data: an
    empty result read from it would look like a young node's."""
    from aeronpy.cluster.tool import no_node_data
    missing = no_node_data(data_dir)
    if missing is not None:
        raise AdminError(missing)


def read_recording_log(data_dir: str) -> dict:
    """Every entry as recorded (``entries``), and the term history: the live term starts at
    or below the log's end (``terms``: a start a truncation cut away, or one superseded by a
    rewrite, is left out, as recovery leaves it out)."""
    _require_node_data(data_dir)
    entries = _recording_entries(data_dir)
    log_end, term_at = _log_end(data_dir, entries)
    # as recovery: not past the end, nor over entries of another term (the last segment's)
    terms = [{"term": t.term, "first_index": t.index}
             for t in live_term_starts(entries, log_end, term_at)]
    return {"data_dir": data_dir, "entries": [_entry_dict(e) for e in entries],
            "snapshots": sum(isinstance(e, SnapshotEntry) for e in entries),
            "term_starts": len(terms), "terms": terms}


def _log_end(data_dir: str, entries: list) -> tuple:
    """The last index of the log as recovery would find it, reading only the last segment
    file (every record of it verified); with no segment, the newest recorded snapshot's. And
    ``term_at(index)``: the term of an entry of that segment, None outside it."""
    from aeronpy._logindex import LogIndex
    snapshots = [e.index for e in entries if isinstance(e, SnapshotEntry)]
    segments = SegmentLog(OsFileSystem(), data_dir)
    try:
        files = segments.list_segment_files()
        if not files:
            return max(snapshots, default=0), lambda _index: None
        log, stop = segments.recover(files[-1][0], None, LogIndex)
    finally:
        segments.close()
    end = stop.index - 1
    return end, lambda index: log.term_at(index) if log.base_index < index <= min(end, log.last_index) else None


def plan_recovery(data_dir: str) -> dict:
    """Which snapshot recovery would load (newest whose file verifies), which it would skip,
    the log segments present, where the log ends (every record verified), whether a node
    would refuse to start or cut the log, and the committed range it would replay."""
    _require_node_data(data_dir)
    fs = OsFileSystem()
    snapshots = [e for e in _recording_entries(data_dir) if isinstance(e, SnapshotEntry)]
    chosen, skipped = None, []
    for entry in reversed(snapshots):
        info = verify_snapshot(fs, data_dir, entry)
        if info is not None:
            chosen = info
            break
        skipped.append({"index": entry.index, "term": entry.term, "name": entry.name,
                        "reason": "missing" if not os.path.exists(os.path.join(data_dir, entry.name))
                        else "checksum mismatch"})
    marker = DurableMarker(fs, data_dir)
    if os.path.exists(os.path.join(data_dir, DURABLE_MARKER_FILE)):
        marker.load()
    acked_index, acked_commit = marker.acknowledged(fs.boot_id())
    reported = max(marker.durable_index, acked_index)
    hard = load_node_state(fs, data_dir)
    segments = sorted(n for n in os.listdir(data_dir) if n.endswith(SEGMENT_SUFFIX))
    first_indexes = [int(n[:-len(SEGMENT_SUFFIX)]) for n in segments if n[:-len(SEGMENT_SUFFIX)].isdigit()]
    start = chosen.index + 1 if chosen else 1
    stop = _scan_log(fs, data_dir, start, chosen)
    log_end = stop.index - 1
    commit = max(min(max(marker.commit_index, acked_commit), log_end), chosen.index if chosen else 0)
    gap = bool(first_indexes) and first_indexes[0] > start
    plan = {
        "data_dir": data_dir,
        "snapshot": None if chosen is None else {"index": chosen.index, "term": chosen.term,
                                                 "file": os.path.basename(chosen.path),
                                                 "bytes": chosen.size},
        "skipped_snapshots": skipped,
        "term": hard.term,
        "voted_for": None if hard.voted_for is None or hard.voted_for < 0 else hard.voted_for,
        "segments": segments,
        "durable_index": marker.durable_index,
        "written_index_this_boot": acked_index,
        "log_end": log_end,
        "log_end_reason": "clean end" if stop.clean else stop.reason,
        "replay_from": start, "replay_to": commit,
        "entries_to_replay": max(0, commit - start + 1),
    }
    if stop.index <= reported:
        plan["problem"] = (f"a node would refuse to start: the log ends at index {stop.index} "
                           f"({plan['log_end_reason']}, {stop.path} offset {stop.offset}) inside "
                           f"what it had reported kept (up to index {reported}); see "
                           "docs/archive-format.md, 'Corruption'")
    elif gap:
        # recovery does what it does with any tail past what was reported kept: it cuts it
        # (the member then catches up from the leader), it does not refuse
        why = ("no snapshot covers the gap" if not skipped else
               "the snapshot that covered the gap is unusable")
        plan["note"] = (f"a node would cut the log at index {stop.index}: the log starts at "
                        f"index {first_indexes[0]} but recovery needs it from {start} ({why}), "
                        "and the node had reported nothing past it kept; the segments after "
                        "the gap are dropped and the member catches up from the leader")
    elif not stop.clean:
        plan["note"] = (f"a node would cut the log at index {stop.index} ({stop.reason}): a torn "
                        "or damaged tail past what it had reported kept")
    return plan


def _scan_log(fs, data_dir: str, start: int, snapshot):
    """Read the log after the snapshot as recovery would, every record verified, changing
    nothing (the cut is recovery's, not ours). Holds that part of the log in memory."""
    from aeronpy._logindex import LogIndex
    segments = SegmentLog(fs, data_dir)
    try:
        _, stop = segments.recover(start, (snapshot.index, snapshot.term) if snapshot else None,
                                   LogIndex)
    finally:
        segments.close()
    return stop


# ------------------------------------------------------------------------------- admin requests
def _members_from_counters(data_dir: str) -> tuple:
    from aeronpy.cluster.counters import CountersReader, CountersUnavailableError
    if not os.path.isdir(data_dir):
        raise AdminError(f"no node data dir at {data_dir}")
    try:
        with CountersReader(data_dir) as reader:
            return reader.header.member_id, reader.members
    except CountersUnavailableError as exc:
        raise AdminError(str(exc)) from exc


def require_running(data_dir: str, member_id: int, what: str) -> None:
    """Refuse at once (AdminError) when the member whose data dir this is is not running: its
    endpoint would never answer, and waiting out the timeout tells the operator nothing."""
    from aeronpy.cluster.counters import CountersReader, CountersUnavailableError
    try:
        with CountersReader(data_dir) as reader:
            status = reader.status()
    except CountersUnavailableError as exc:
        raise AdminError(str(exc)) from exc
    if not status.running:
        raise AdminError(f"member {member_id} is not running ({status.detail}): send "
                         f"'{what}' through a running member's data dir")


def admin_request(endpoints: list, endpoint: str, request_type: int, payload: bytes,
                  timeout_s: float, max_redirects: int = 5, key: Optional[bytes] = None) -> tuple:
    """Send one AdminRequest to ``endpoint``, following not-leader answers. ``endpoints`` are
    every member's ingress endpoint in member-id order (the client transport names a member's
    stream by its position there). Returns (endpoint that answered, code, payload).

    A member that knows of no leader (an election is running) is asked again until
    ``timeout_s``: elections happen on a loaded machine, and only a redirect to another member
    counts against ``max_redirects``. A request is re-sent with the same correlation id while
    unanswered; the member answers a re-sent request again without acting on it twice.
    ``key``: the admin key (a member's ``admin.key``) to sign with, when the cluster has a
    secret (aeronpy/cluster/admin_auth.py)."""
    from aeronpy.cluster.admin_auth import SignedRequest
    from aeronpy.client import UdpClientTransport
    from aeronpy.cluster.node_snapshots import ADMIN_NOT_LEADER
    deadline = time.monotonic() + timeout_s
    # the transport is given addresses, looked up here within the timeout: the system
    # resolver can hang for many seconds; requests still name endpoints as the config does
    addresses: dict = {}
    try:
        for name in list(endpoints) + [endpoint]:
            _look_up(name, addresses, deadline, timeout_s)
        transport = UdpClientTransport([addresses[e] for e in endpoints])
    except (ValueError, OSError) as exc:    # a member's host no longer resolves, say
        raise AdminError(f"cannot send to the cluster's members: {exc}") from None
    redirects = 0
    try:
        while True:
            correlation_id = int.from_bytes(os.urandom(6), "little") or 1
            request = SignedRequest(key, correlation_id, request_type, payload, endpoint)
            next_send = 0.0
            try:
                _look_up(endpoint, addresses, deadline, timeout_s)   # a redirect's
            except (ValueError, OSError) as exc:
                raise AdminError(f"cannot send to {endpoint}: {exc}") from None
            while request.answered is None:
                now = time.monotonic()
                if now > deadline:
                    raise AdminError(f"no answer from {endpoint} within {timeout_s} s"
                                     + request.why_unanswered())
                if now >= next_send:
                    transport.send(addresses[endpoint], request.message)
                    next_send = now + 0.5
                if transport.poll(request.on_message) == 0:
                    time.sleep(0.001)
            msg = request.answered
            if msg.code == ADMIN_NOT_LEADER:
                leader = bytes(msg.payload).decode()
                if not leader or leader == endpoint:
                    if time.monotonic() + 0.05 > deadline:
                        raise AdminError(f"no leader known to {endpoint} within {timeout_s} s")
                    time.sleep(0.05)            # election in progress: ask the same member again
                    continue
                redirects += 1
                if redirects > max_redirects:
                    raise AdminError(f"too many redirects (last to {leader})")
                endpoint = leader
                continue
            return endpoint, msg.code, bytes(msg.payload)
    finally:
        transport.close()


def _look_up(endpoint: str, addresses: dict, deadline: float, timeout_s: float) -> None:
    """Note ``endpoint`` ("host:port") as "address:port" in ``addresses``, the host looked up
    on a thread given what is left of ``timeout_s`` (TimeoutError naming the host past it)."""
    import socket

    from aeronpy.cluster.config import lookup_within
    from aeronpy.endpoints import ip_literal, resolve, split_endpoint
    if endpoint in addresses:
        return
    host, port = split_endpoint(endpoint)
    try:
        literal = ip_literal(host)
    except ValueError as exc:
        raise ValueError(f"endpoint {endpoint!r}: {exc}") from None
    if literal is not None:
        addresses[endpoint] = format_endpoint(str(literal), port)    # an address: no lookup
        return
    try:
        _family, address = resolve(host, lambda fn, *args: lookup_within(
            max(0.0, deadline - time.monotonic()), fn, *args))
    except TimeoutError:
        raise TimeoutError(f"looking up host {host!r} did not finish within {timeout_s:g} s "
                           "(--timeout; the system resolver: check /etc/resolv.conf and its DNS "
                           "servers, or give members IP addresses)") from None
    except (socket.gaierror, UnicodeError) as exc:
        raise ValueError(f"cannot resolve {host!r} ({getattr(exc, 'strerror', None) or exc})") from None
    addresses[endpoint] = format_endpoint(address, port)


def request_through_member(data_dir: str, member_id: int, members: list, request_type: int,
                           what: str, timeout_s: float, args: bytes = b"") -> tuple:
    """Send one admin request through this member's ingress endpoint, following redirects to
    the leader; returns (the leader's endpoint, the log index the leader gave the action)."""
    from aeronpy.cluster.node_snapshots import ADMIN_OK
    me = next((m for m in members if m.get("id") == member_id), None)
    if me is None:
        raise AdminError(f"the counters file in {data_dir} does not name this member's endpoint")
    endpoints = [format_endpoint(m["host"], m["ingress_port"])
                 for m in sorted(members, key=lambda m: m["id"])]
    from aeronpy.cluster.admin_auth import read_key_file
    try:
        key = read_key_file(data_dir)
    except (OSError, ValueError) as exc:
        raise AdminError(f"cannot read the admin key in {data_dir}: {exc}") from exc
    endpoint, code, payload = admin_request(endpoints, format_endpoint(me["host"], me["ingress_port"]),
                                            request_type, args, timeout_s, key=key)
    if code != ADMIN_OK:
        raise AdminError(f"{endpoint} refused {what}: {payload.decode(errors='replace')}")
    return endpoint, _I64.unpack(payload)[0]


def request_snapshot(data_dir: str, timeout_s: float) -> dict:
    from aeronpy.cluster.node_snapshots import ADMIN_SNAPSHOT
    member_id, members = _members_from_counters(data_dir)
    require_running(data_dir, member_id, "snapshot")
    deadline = time.monotonic() + timeout_s
    failures_before = _snapshot_failures(data_dir)
    since_ns = time.time_ns()
    stopped_seen: Optional[float] = None
    endpoint, index = request_through_member(data_dir, member_id, members, ADMIN_SNAPSHOT,
                                             "the snapshot", timeout_s)
    recorded: Optional[dict] = None
    problem: Optional[str] = None
    failure: Optional[str] = None
    over_since: Optional[float] = None
    while time.monotonic() < deadline and recorded is None and problem is None:
        for e in _recording_entries(data_dir):
            if isinstance(e, SnapshotEntry) and e.index >= index:
                recorded = _entry_dict(e)
        if recorded is None:
            failures = _snapshot_failures(data_dir)
            failed = [text for text, count in failures.items() if count > failures_before.get(text, 0)]
            if failed:
                failure = f"{failed[0]} on this member (aeronpy tool errors shows the traceback)"
            over = failed and _snapshot_work_over(data_dir, index)
            over_since = (over_since or time.monotonic()) if over else None
            if over and time.monotonic() - over_since >= 0.1:
                # this member's snapshot failed and none is being taken for the request (one
                # queued behind a failed one is taken then): say why, don't wait on. Seen for
                # 0.1 s: the counters' commit index may run a moment ahead of the apply
                problem = failure
            else:
                # failed otherwise, or stopped: no snapshot will come. The node marks itself
                # FAILED a moment before errors.log has the cause: wait for that (briefly).
                why, fresh = _member_stopped(data_dir, since_ns)
                if why is not None and stopped_seen is None:
                    stopped_seen = time.monotonic()
                if why is not None and (fresh or time.monotonic() - stopped_seen > 0.5):
                    problem = why
                else:
                    time.sleep(0.02)
    result = {"requested_at_index": index, "leader_endpoint": endpoint,
              "recorded": recorded is not None, "snapshot": recorded}
    if recorded is None:
        result["problem"] = problem or failure or (f"this member recorded no snapshot at or "
                                                   f"after index {index} within {timeout_s} s")
    return result


def _snapshot_work_over(data_dir: str, index: int) -> bool:
    """This member has applied past the requested index (its commit index is there) and is
    not taking an admin snapshot (its state is not SNAPSHOT): a snapshot failure seen now is
    the request's outcome, not that of one ahead of it."""
    from aeronpy.cluster.counters import ConsensusModuleState, CountersReader, CountersUnavailableError
    try:
        with CountersReader(data_dir) as reader:
            values = reader.read()
    except (CountersUnavailableError, OSError):
        return False                     # a counters file being rewritten: look again
    return (values["commit_index"] >= index
            and values["consensus_module_state"] != ConsensusModuleState.SNAPSHOT)


def _member_stopped(data_dir: str, since_ns: int) -> tuple:
    """(why, fresh): why this member will record no snapshot any more, or None while it runs.
    It failed (its counters say FAILED: a service raised while taking it, say, and the process
    may still be exiting), or it no longer runs. ``fresh``: errors.log has an entry seen since
    ``since_ns``, so ``why`` names the cause and not an older error."""
    from aeronpy.cluster.counters import ConsensusModuleState, CountersReader, CountersUnavailableError
    try:
        with CountersReader(data_dir) as reader:
            failed = reader.value("consensus_module_state") == ConsensusModuleState.FAILED
            status = reader.status()
    except (CountersUnavailableError, OSError):
        return None, False               # a counters file being rewritten: look again
    if not failed and status.state in ("running", "stale"):
        return None, False               # stale: a long snapshot may hold updates up; wait on
    latest = _latest_error(data_dir)
    fresh = latest is not None and latest.last_ns >= since_ns
    if failed:
        return (f"this member failed: {latest.text if latest else status.detail} "
                "(aeronpy tool errors)"), fresh
    return (f"this member stopped before recording the snapshot ({status.detail})"
            + (f"; latest error: {latest.text} (aeronpy tool errors)" if fresh else "")), True


def _latest_error(data_dir: str):
    """The most recently seen entry of the member's errors.log (an ErrorEntry), or None."""
    from aeronpy.cluster.nodefiles import read_errors
    try:
        entries = read_errors(data_dir)
    except Exception:  # noqa: BLE001 - no error log (yet)
        return None
    return max(entries, key=lambda e: e.last_ns) if entries else None


def _snapshot_failures(data_dir: str) -> dict:
    """text -> count of the 'snapshot failed' records in the member's errors.log."""
    from aeronpy.cluster.nodefiles import read_errors
    try:
        return {e.text: e.count for e in read_errors(data_dir)
                if e.text.startswith("snapshot failed")}
    except Exception:  # noqa: BLE001 - no error log (yet): nothing failed that we can see
        return {}
