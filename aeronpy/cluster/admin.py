"""Cluster-wide admin actions of ``aeronpy tool``: the commands that need a running cluster.

Each action (snapshot, suspend, resume, shutdown, abort) must go through the replicated log so
that every member agrees on where it happened; ``recording-log`` and ``recovery-plan`` read the
archive. ``snapshot`` (issue 7) sends an AdminRequest to the member's ingress endpoint (found in
its counters file) and follows a not-leader answer to the leader, which appends a CLUSTER_ACTION
snapshot entry; ``recording-log`` and ``recovery-plan`` read a data dir locally, read-only (safe
on a running node). The others (suspend, resume, shutdown, abort: issue 8) still raise
`AdminNotAvailableError`, and the CLI exits with status 3.

The signatures are the seam: the implementation replaces each body, the CLI stays as it is.
Every function returns plain data (a dict) that the CLI prints or dumps as JSON.
"""
from __future__ import annotations

import os

from aeronpy.errors import AeronpyError

ADMIN_COMMANDS = ("snapshot", "suspend", "resume", "shutdown", "abort", "recording-log",
                  "recovery-plan")


class AdminNotAvailableError(AeronpyError):
    """The admin command exists in the CLI but its implementation has not landed yet."""


def _not_yet(command: str, needs: str) -> AdminNotAvailableError:
    return AdminNotAvailableError(
        f"'aeronpy tool {command}' is not available yet in this build: it needs {needs}, "
        "which is still being implemented (issues 7 and 8)")


_NEEDS_ADMIN = "a running member's admin endpoint and the admin messages through the log"
_NEEDS_ARCHIVE = "the archive's recording log reader"


def snapshot(data_dir: "str | os.PathLike", timeout_s: float = 10.0) -> dict:
    """Ask the cluster to take a snapshot on every member at one log position.

    Returns once the leader has appended the snapshot entry and this member's recording log
    shows a snapshot at or after it (or ``timeout_s`` passed: then ``recorded`` is False)."""
    from aeronpy.cluster.admin_client import request_snapshot
    return request_snapshot(os.fspath(data_dir), timeout_s)


def suspend(data_dir: "str | os.PathLike", timeout_s: float = 10.0) -> dict:
    """Stop the cluster sequencing new client messages (until `resume`)."""
    raise _not_yet("suspend", _NEEDS_ADMIN)


def resume(data_dir: "str | os.PathLike", timeout_s: float = 10.0) -> dict:
    """Let a suspended cluster sequence client messages again."""
    raise _not_yet("resume", _NEEDS_ADMIN)


def shutdown(data_dir: "str | os.PathLike", timeout_s: float = 30.0) -> dict:
    """Orderly stop: every member takes the same final snapshot, then exits."""
    raise _not_yet("shutdown", _NEEDS_ADMIN)


def abort(data_dir: "str | os.PathLike", timeout_s: float = 10.0) -> dict:
    """Stop every member at one log position without a snapshot."""
    raise _not_yet("abort", _NEEDS_ADMIN)


def recording_log(data_dir: "str | os.PathLike") -> dict:
    """The recording log of a data dir: term starts and snapshots (read-only)."""
    from aeronpy.cluster.admin_client import read_recording_log
    return read_recording_log(os.fspath(data_dir))


def recovery_plan(data_dir: "str | os.PathLike") -> dict:
    """What a node started on this data dir would load and replay (read-only)."""
    from aeronpy.cluster.admin_client import plan_recovery
    return plan_recovery(os.fspath(data_dir))


COMMAND_FUNCTIONS = {
    "snapshot": snapshot, "suspend": suspend, "resume": resume, "shutdown": shutdown,
    "abort": abort, "recording-log": recording_log, "recovery-plan": recovery_plan,
}
