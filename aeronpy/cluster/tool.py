"""The local commands of ``aeronpy tool``: everything that can be read from a node's data dir.

Each command returns a `ToolResult`: an exit code, plain data (printed with ``--json``) and
text for people. They work on a stopped node's data dir too: they then show the last values
the node published, say that the node is not running, and say what they cannot tell.

Exit codes: 0 success (or "yes"); 1 a "no" answer (not leader, not running); 2 nothing to read
(no counters file); 3 command not available yet (see `aeronpy.cluster.admin`).
"""
from __future__ import annotations

import datetime as _dt
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from aeronpy.cluster.counters import CountersReader, CountersUnavailableError, knows_a_leader
from aeronpy.cluster.metrics import prometheus_text
from aeronpy.cluster.nodefiles import read_errors, read_pid
from aeronpy.core.election import ElectionState
from aeronpy.errors import AeronpyError
from aeronpy.service import Role

EXIT_OK, EXIT_NO, EXIT_UNAVAILABLE, EXIT_NOT_IMPLEMENTED = 0, 1, 2, 3
_NOT_LIVE = ("the node is not running: these are the last values it published; its role and "
             "the cluster's leader now are unknown from here (ask a running member)")


@dataclass
class ToolResult:
    exit_code: int
    data: Any
    text: str
    warnings: list = field(default_factory=list)


def iso_time(ns: int) -> str:
    """UTC wall-clock time with milliseconds, e.g. ``2024-05-01T12:00:00.123Z``."""
    if ns <= 0:
        return "-"
    t = _dt.datetime.fromtimestamp(ns / 1e9, tz=_dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _missing_why(data_dir: str) -> str:
    return "not a directory" if os.path.exists(data_dir) else "it does not exist"


def _open(data_dir: str) -> CountersReader:
    if not os.path.isdir(data_dir):
        raise CountersUnavailableError(f"no node data dir at {data_dir}: {_missing_why(data_dir)}")
    return CountersReader(data_dir)


def _node_data_names() -> tuple:
    """(file names, name suffixes) of what a node keeps in its data dir."""
    from aeronpy.archive.durable_marker import DURABLE_MARKER_FILE
    from aeronpy.archive.node_state import NODE_STATE_FILE
    from aeronpy.archive.recording_log import RECORDING_LOG_FILE
    from aeronpy.archive.segments import SEGMENT_SUFFIX
    from aeronpy.archive.snapshots import SNAPSHOT_SUFFIX
    from aeronpy.cluster.admin_auth import ADMIN_KEY_FILE, ADMIN_SEEN_FILE
    from aeronpy.cluster.counters import COUNTERS_FILE
    from aeronpy.cluster.identity import IDENTITY_FILE
    from aeronpy.cluster.nodefiles import ERRORS_FILE, PID_FILE
    return ((COUNTERS_FILE, NODE_STATE_FILE, RECORDING_LOG_FILE, DURABLE_MARKER_FILE,
             ERRORS_FILE, IDENTITY_FILE, PID_FILE, ADMIN_KEY_FILE, ADMIN_SEEN_FILE),
            (SEGMENT_SUFFIX, SNAPSHOT_SUFFIX))


def _holds_node_data(names: list) -> bool:
    files, suffixes = _node_data_names()
    return any(n in files or n.endswith(suffixes) for n in names)


def no_node_data(data_dir: str) -> Optional[str]:
    """None when ``data_dir`` holds any file a node keeps there (a node that has just started
    holds some: its pid file and errors log come first); else one line saying it is not a
    node's data dir, naming subdirectories that are (a parent dir given by mistake). A
    read-only command answers that (exit 2) rather than a plausible empty result."""
    if not os.path.isdir(data_dir):
        return f"no node data dir at {data_dir}: {_missing_why(data_dir)}"
    try:
        names = os.listdir(data_dir)
    except OSError:
        return None                       # the command's own read says what is wrong
    if _holds_node_data(names):
        return None
    below = []
    for name in sorted(names)[:1000]:
        path = os.path.join(data_dir, name)
        try:
            if os.path.isdir(path) and not os.path.islink(path) \
                    and _holds_node_data(os.listdir(path)):
                below.append(name)
        except OSError:
            pass
    hint = (f"; these directories in it do: {', '.join(below[:8])}"
            f"{', ...' if len(below) > 8 else ''}" if below else
            "; name the data_dir of a member (its config's data_dir, or --data-dir)")
    return (f"{data_dir} holds no node data (no counters.dat, node.state, recording.log, "
            f"errors.log, log segment or snapshot): it is not a node's data dir{hint}")


def _unavailable(exc: Exception, data_dir: str) -> ToolResult:
    return ToolResult(EXIT_UNAVAILABLE, {"error": str(exc), "data_dir": data_dir}, str(exc))


def _named(reader: CountersReader, slot: str, value: int) -> str:
    name = reader.enum_name(slot, value)
    return f"{value} ({name})" if name else str(value)


def describe(data_dir: str) -> ToolResult:
    """All counters, the members, leader and term, the node's liveness and recent errors."""
    try:
        reader = _open(data_dir)
    except CountersUnavailableError as exc:
        is_dir = os.path.isdir(data_dir)
        errors = _safe_errors(data_dir) if is_dir else []
        text = str(exc) if not is_dir else f"{exc}\n" + (
            f"errors.log has {len(errors)} entries: see 'aeronpy tool errors'"
            if errors else "no error log either")
        data = {"error": str(exc), "data_dir": data_dir, "errors": len(errors),
                "pid_file": read_pid(data_dir) if is_dir else None}
        return ToolResult(EXIT_UNAVAILABLE, data, text)
    with reader:
        header, status, values = reader.header, reader.status(), reader.read()
        errors = _safe_errors(data_dir)
        no_leader = _no_leader(values) if status.running else None
        data = {
            "data_dir": os.path.abspath(data_dir), "cluster_id": header.cluster_id,
            "member_id": header.member_id, "pid": header.pid,
            "start_time": iso_time(header.start_time_ns),
            "status": asdict(status), "live": status.running,
            "members": reader.members, "counters": values,
            "counter_names": {s: reader.enum_name(s, values[s]) for s in reader.enum_names
                              if s in values and reader.enum_name(s, values[s])},
            "errors": len(errors), "no_leader": no_leader,
        }
        lines = [f"data dir     {data['data_dir']}",
                 f"cluster      {header.cluster_id}, member {header.member_id}",
                 f"started      {data['start_time']} (pid {header.pid})",
                 f"status       {status.state}: {status.detail}" + _no_leader_text(no_leader),
                 f"last update  {iso_time(values.get('last_update_ns', 0))}"]
        if not status.running:
            lines.append(f"note         {_NOT_LIVE}")
        lines.append(f"role         {_named(reader, 'role', values['role'])}, term "
                     f"{values['leadership_term']}, leader {_leader_text(values)}")
        lines.append(f"log          commit_index {values['commit_index']}, append_index "
                     f"{values['append_index']}")
        lines.append("members")
        lines += ["  " + _member_line(m, header.member_id, values["leader_id"],
                                     status.running and not _electing(values))
                  for m in reader.members]
        if not reader.members:
            lines.append("  (the counters file records no members)")
        lines.append("counters")
        width = max(len(n) for n in reader.names)
        for name in reader.names:
            lines.append(f"  {name:<{width}}  {_named(reader, name, values[name])}")
        line = f"errors       {len(errors)} distinct"
        if errors:
            # the one seen last (an old error recurring counts); its age tells an operator
            # whether it is news or history (nothing ever clears errors.log)
            latest = max(errors, key=lambda e: e.last_ns)
            age_s = max(0, (time.time_ns() - latest.last_ns) // 10**9)
            data["latest_error"] = {"text": latest.text, "last": iso_time(latest.last_ns),
                                    "age_s": age_s}
            line += (f", latest error ({age_text(age_s)} ago, {iso_time(latest.last_ns)}): "
                     f"{latest.text}")
        lines.append(line)
        return ToolResult(EXIT_OK, data, "\n".join(lines))


def age_text(seconds: int) -> str:
    """A time span for people, to the two largest units: ``45 s``, ``12 min``, ``3 h 12 min``,
    ``2 d 4 h`` (a negative span, a clock set back, reads ``0 s``)."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"


_ELECTING = (ElectionState.CANVASS, ElectionState.NOMINATE, ElectionState.CANDIDATE_BALLOT)


def _electing(values: dict) -> bool:
    """An election runs on this member: the leader it names is only the last one it knew."""
    return values.get("election_state") in _ELECTING


_NO_LEADER_DOING = {
    "CANVASS": "canvassing (pre-vote), no quorum of members has granted it yet",
    "NOMINATE": "nominated itself, about to ask for votes",
    "CANDIDATE_BALLOT": "asking for votes (ballot)",
}


def _no_leader(values: dict) -> Optional[dict]:
    """None while the member leads or follows a leader; else since when it has had none (from
    ``no_leader_since_ns``: None when not published yet, or by an aeronpy without it). A set
    ``no_leader_since_ns`` counts even while the member names a leader outside an election:
    its canvass was refused and it has not heard that leader since."""
    state = values.get("election_state", -1)
    since_ns = values.get("no_leader_since_ns", 0)
    if knows_a_leader(values["role"], values["leader_id"], state) and since_ns <= 0:
        return None
    name = ElectionState(state).name if state in ElectionState._value2member_map_ else None
    return {"since": iso_time(since_ns) if since_ns > 0 else None,
            "age_s": max(0, (time.time_ns() - since_ns) // 10**9) if since_ns > 0 else None,
            "election_state": name}


def _no_leader_text(no_leader: Optional[dict]) -> str:
    if no_leader is None:
        return ""
    when = (f" since {no_leader['since']} ({age_text(no_leader['age_s'])} ago)"
            if no_leader["since"] else "")
    doing = _NO_LEADER_DOING.get(no_leader["election_state"], "waiting to hear from a leader")
    return f"; no leader{when}: {doing}"


def _leader_text(values: dict) -> str:
    leader_id = values["leader_id"]
    if leader_id < 0:
        return "none known"
    if _electing(values):
        return (f"member {leader_id} last known (this member is in an election: "
                f"{ElectionState(values['election_state']).name})")
    return f"member {leader_id}"


def _member_line(member: dict, self_id: int, leader_id: int, live: bool = True) -> str:
    marks = [m for m, on in (("this node", member.get("id") == self_id),
                             ("leader" if live else "last known leader",
                              member.get("id") == leader_id)) if on]
    admin = member.get("admin_port")
    return (f"{str(member.get('id')):>3}  {member.get('host')}  consensus {member.get('consensus_port')}"
            f"  ingress {member.get('ingress_port')}  admin {admin if admin else '-'}"
            + (f"  ({', '.join(marks)})" if marks else ""))


def list_members(data_dir: str) -> ToolResult:
    try:
        reader = _open(data_dir)
    except CountersUnavailableError as exc:
        return _unavailable(exc, data_dir)
    with reader:
        status, values, members = reader.status(), reader.read(), reader.members
        leader_id = values["leader_id"]
        rows = [dict(m, this_node=m.get("id") == reader.header.member_id,
                     leader=m.get("id") == leader_id) for m in members]
        lines = [_member_line(m, reader.header.member_id, leader_id,
                              status.running and not _electing(values)) for m in members]
        if not members:
            lines.append("the counters file records no members")
        if not status.running:
            lines.append(f"({status.detail})")
        return ToolResult(EXIT_OK, {"members": rows, "leader_id": leader_id,
                                    "live": status.running}, "\n".join(lines))


def is_leader(data_dir: str) -> ToolResult:
    """Exit code 0 when the node is running and leads, 1 otherwise."""
    try:
        reader = _open(data_dir)
    except CountersUnavailableError as exc:
        result = _unavailable(exc, data_dir)
        result.exit_code = EXIT_NO
        result.data["is_leader"] = False
        return result
    with reader:
        status, values = reader.status(), reader.read()
        role = values["role"]
        leading = status.running and role == int(Role.LEADER)
        data = {"is_leader": leading, "role": reader.enum_name("role", role) or role,
                "leader_id": values["leader_id"], "leadership_term": values["leadership_term"],
                "status": status.state}
        if not status.running:
            text = f"no: {status.detail}"
        elif leading:
            text = f"yes: member {reader.header.member_id} leads term {values['leadership_term']}"
        else:
            text = (f"no: member {reader.header.member_id} is {data['role']}, leader is "
                    f"{_leader_text(values)}")
        return ToolResult(EXIT_OK if leading else EXIT_NO, data, text)


def pid(data_dir: str) -> ToolResult:
    """The node's pid (exit 0): a running node's, or a hung one's (its counters stopped
    moving while its process still holds the data dir's lock: the pid to ``kill -9``; a
    warning says it is hung); or why there is none (exit 1)."""
    try:
        reader = _open(data_dir)
    except CountersUnavailableError as exc:
        from_file = read_pid(data_dir)
        text = f"{exc}" + (f"; node.pid says {from_file}" if from_file else "")
        return ToolResult(EXIT_NO, {"pid": None, "pid_file": from_file, "error": str(exc)}, text)
    with reader:
        status = reader.status()
        data = {"pid": status.pid if status.running else None, "last_pid": status.pid,
                "status": status.state, "detail": status.detail, "hung": False}
        if status.running:
            return ToolResult(EXIT_OK, data, str(status.pid))
        if status.state == "stale" and _holds_lock(data_dir, status.pid):
            data.update(pid=status.pid, hung=True)
            return ToolResult(EXIT_OK, data, str(status.pid),
                              [f"warning: the node is hung: {status.detail}; pid {status.pid} "
                               "still holds the data dir's lock (node.pid)"])
        return ToolResult(EXIT_NO, data, status.detail)


def _holds_lock(data_dir: str, pid_: int) -> bool:
    """Whether process ``pid_`` holds the lock on ``DATA_DIR/node.pid`` (a node's, for its
    lifetime), from /proc/locks without taking any lock (that could make a starting node
    refuse the dir). False where it cannot be told (no /proc/locks): a pid that may have been
    reused by another process is never offered as the node's."""
    from aeronpy.cluster.nodefiles import PID_FILE
    if not pid_ or read_pid(data_dir) != pid_:
        return False
    try:
        st = os.stat(os.path.join(data_dir, PID_FILE))
        with open("/proc/locks") as f:
            lines = f.read(1 << 20).splitlines()
    except OSError:
        return False
    for line in lines:
        parts = line.split()
        if "->" in parts:                 # a waiter, not the holder
            continue
        if len(parts) < 6 or parts[1] != "FLOCK" or parts[4] != str(pid_):
            continue
        fields = parts[5].split(":")
        if len(fields) == 3 and fields[2].isdigit() and int(fields[2]) == st.st_ino:
            try:
                if os.makedev(int(fields[0], 16), int(fields[1], 16)) == st.st_dev:
                    return True
            except ValueError:
                continue
    return False


def _safe_errors(data_dir: str) -> list:
    try:
        return read_errors(data_dir)
    except CountersUnavailableError:
        return []


def errors(data_dir: str) -> ToolResult:
    """The distinct errors recorded, oldest first, with first/last time and count."""
    missing = no_node_data(data_dir)
    if missing is not None:
        return _unavailable(CountersUnavailableError(missing), data_dir)
    try:
        entries = read_errors(data_dir)
    except CountersUnavailableError as exc:
        return _unavailable(exc, data_dir)
    data = [{"first": iso_time(e.first_ns), "last": iso_time(e.last_ns), "count": e.count,
             "text": e.text} for e in entries]
    if not entries:
        return ToolResult(EXIT_OK, data, "no errors recorded")
    lines = [f"{d['first']}  x{d['count']:<5} {d['text']}" +
             (f"  (last {d['last']})" if d["count"] > 1 else "") for d in data]
    return ToolResult(EXIT_OK, data, "\n".join(lines))


def metrics(data_dir: str) -> ToolResult:
    """Prometheus text exposition of the counters (``--json`` gives the raw values)."""
    try:
        reader = _open(data_dir)
    except CountersUnavailableError as exc:
        return _unavailable(exc, data_dir)
    with reader:
        text = prometheus_text(reader)
        return ToolResult(EXIT_OK, {"counters": reader.read(), "live": reader.status().running},
                          text.rstrip("\n"))


LOCAL_COMMANDS = {"describe": describe, "list-members": list_members, "is-leader": is_leader,
                  "pid": pid, "errors": errors, "metrics": metrics}


def error_text(exc: BaseException) -> str:
    """One line for what stopped a tool command: aeronpy's own message (a FIFO or directory
    where a file belongs names the file and what to do), or ``PATH: reason`` for an OSError."""
    if isinstance(exc, OSError) and not isinstance(exc, AeronpyError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename is not None else exc.strerror
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def read_failure(exc: BaseException, data_dir: str) -> ToolResult:
    """Exit 2 ("nothing to read") with one line saying which file and why."""
    text = error_text(exc)
    return ToolResult(EXIT_UNAVAILABLE, {"error": text, "data_dir": data_dir}, text)


def run_local(command: str, data_dir: str) -> Optional[ToolResult]:
    """The command's result; a file of the data dir that cannot be read (a FIFO, a device or a
    directory in its place, no permission) is exit 2 with one line naming it."""
    func = LOCAL_COMMANDS.get(command)
    if func is None:
        return None
    try:
        return func(data_dir)
    except (AeronpyError, OSError) as exc:
        return read_failure(exc, data_dir)
