"""Cluster backup: a non-voting copy of a cluster's snapshots and committed log.

``aeronpy backup --config cluster.toml --data-dir DIR`` runs a ``ClusterBackup`` that pulls,
over the members' ingress endpoints (AdminRequest BACKUP_QUERY / BACKUP_CHUNK), the newest
snapshot each time the cluster records one and every committed entry after it, into an archive
of the same format a member uses. Restore (docs/backup.md): copy the directory into each new
member's data dir (``--restore-to``) and start the members.

Why a puller and not a Raft learner: the core has no non-voting replicas yet (``CoreConfig.voters``
are the only members the leader replicates to), and a puller needs nothing of the core: it only
ever asks for *committed* entries, so whatever it holds is final and it can never affect quorum,
elections or the leader's pace (one bounded request at a time, answered from memory). Its cost is
freshness: it lags by up to one poll interval plus a round trip.

The backup's reported *position* (``backup.json`` and the log line) is the last index that is
on its disk and synced: every entry the cluster committed up to it is in the backup.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import struct
import sys
import time
import tomllib
from typing import Any, Optional, Sequence

from aeronpy.archive.fs import OsFileSystem
from aeronpy.archive.node_state import NODE_STATE_FILE, save_node_state
from aeronpy.cluster.node_snapshots import ADMIN_OK, BACKUP_CHUNK, BACKUP_QUERY
from aeronpy.cluster.restored import RESTORED_MARKER_FILE, write_restored_marker
from aeronpy.endpoints import format_endpoint
from aeronpy.errors import AeronpyError

_QUERY = struct.Struct("<qi")                 # from_index, max_bytes
_QUERY_ANSWER = struct.Struct("<qqqqqqi")     # commit, snap_index, snap_term, snap_size, base, first, count
_CHUNK = struct.Struct("<qqi")                # snap_index, offset, length
_CHUNK_ANSWER = struct.Struct("<qq")          # snap_index, offset
MAX_ENTRY_BYTES = 256 * 1024
MAX_CHUNK_BYTES = 64 * 1024
STATUS_FILE = "backup.json"
log = logging.getLogger("aeronpy.backup")


# ------------------------------------------------------------------------------ member side
def serve_backup_request(hooks: Any, kind: int, payload: bytes) -> tuple:
    """Answer a backup's request on a member (called from the duty cycle; bounded work)."""
    core = hooks.core
    kept = hooks.snapshotter.kept
    newest = kept[-1] if kept else None
    if kind == BACKUP_QUERY:
        from_index, max_bytes = _QUERY.unpack(payload[:_QUERY.size])
        max_bytes = max(1, min(max_bytes, MAX_ENTRY_BYTES))
        log_ = core.log
        commit = core.commit_index
        blob, count, first = b"", 0, 0
        if log_.base_index < from_index <= commit:
            blob, count = log_.pack(from_index, commit + 1, max_bytes)
            first = from_index
        head = _QUERY_ANSWER.pack(commit, newest.index if newest else 0, newest.term if newest else 0,
                                  newest.size if newest else 0, log_.base_index, first, count)
        return ADMIN_OK, head + bytes(blob)
    snap_index, offset, length = _CHUNK.unpack(payload[:_CHUNK.size])
    info = next((s for s in kept if s.index == snap_index), None)
    if info is None:
        raise ValueError(f"snapshot {snap_index} is no longer held")
    length = max(0, min(length, MAX_CHUNK_BYTES, info.size - offset))
    fs = hooks.archive.fs
    handle = fs.open_file(info.path)
    try:
        data = fs.pread(handle, length, offset)
    finally:
        fs.close(handle)
    return ADMIN_OK, _CHUNK_ANSWER.pack(snap_index, offset) + bytes(data)


# ------------------------------------------------------------------------------ backup side
class ClusterBackup:
    """Pulls snapshots and committed entries into ``data_dir``. Drive with ``do_work()`` or
    ``run()``; ``position`` is the last committed index durable in the backup."""

    def __init__(self, endpoints: Sequence[str], data_dir: str, snapshots_to_keep: int = 2,
                 poll_interval_s: float = 0.02, request_timeout_s: float = 1.0,
                 secret: Optional[bytes] = None, segment_bytes: Optional[int] = None,
                 max_message_bytes: Optional[int] = None):
        """``secret``: the cluster's, when it has one; members admit only requests signed with
        the key derived from it (without one, only requests from their own machine).
        ``segment_bytes``: the cluster's (a restored member carries the backup's segments).
        ``max_message_bytes``: the cluster's (a log pull carries entries up to that size)."""
        from aeronpy.archive import Archive
        from aeronpy.client import UdpClientTransport
        from aeronpy.cluster.admin_auth import admin_key
        self._admin_key = None if secret is None else admin_key(secret)
        self.endpoints = list(endpoints)
        self.data_dir = data_dir
        self.snapshots_to_keep = max(1, snapshots_to_keep)
        self.poll_interval_s = poll_interval_s
        self.request_timeout_s = request_timeout_s
        self.archive = Archive.open(data_dir, file_sync="data",
                                    **({} if segment_bytes is None else
                                       {"segment_bytes": int(segment_bytes)}))
        recovered = self.archive.recover()
        self.log = recovered.log
        self.snapshot_index = recovered.snapshot.index if recovered.snapshot else 0
        self.snapshots: list = [recovered.snapshot] if recovered.snapshot else []
        if recovered.snapshot is not None:
            # older recorded snapshots count towards retention, and a surplus a crash (or a
            # lower snapshots_to_keep) left is deleted now, as a pull would have
            skipped = {(s.index, s.term) for s in recovered.skipped_snapshots}
            older = [s for s in self.archive.recorded_snapshots()
                     if s.index < self.snapshot_index and (s.index, s.term) not in skipped]
            keep = self.snapshots_to_keep - 1        # besides the recovered one
            surplus, kept = (older[:-keep], older[-keep:]) if keep else (older, [])
            for old in surplus:
                try:
                    os.remove(old.path)
                except OSError:
                    pass
            self.snapshots = kept + self.snapshots
        self.position = self.archive.sync()
        self.term = recovered.hard_state.term
        self.cluster_commit = 0
        self._member = 0
        from aeronpy.cluster.module_config import DEFAULT_MAX_MESSAGE_BYTES, client_stream_message_bytes
        from aeronpy.transport.streams import StreamConfig
        self._transport = UdpClientTransport(self.endpoints, config=StreamConfig.for_message_bytes(
            client_stream_message_bytes(max_message_bytes or DEFAULT_MAX_MESSAGE_BYTES)))
        self._next_id = 1
        self.requests = 0
        self.failures = 0
        self.last_error: Optional[str] = None     # why the last request failed, if it did

    # ---- requests -------------------------------------------------------------------
    def _request(self, kind: int, payload: bytes) -> Optional[bytes]:
        from aeronpy.cluster.admin_auth import SignedRequest
        endpoint = self.endpoints[self._member % len(self.endpoints)]
        cid = self._next_id
        self._next_id += 1
        request = SignedRequest(self._admin_key, cid, kind, payload, endpoint)
        self._transport.send(endpoint, request.message)
        self.requests += 1
        deadline = time.monotonic() + self.request_timeout_s
        while request.answered is None and time.monotonic() < deadline:
            if self._transport.poll(request.on_message) == 0:
                time.sleep(0.0002)
        answer = request.answered
        if answer is None or answer.code != ADMIN_OK:
            self.failures += 1
            self._member += 1                     # try the next member next time
            why = (bytes(answer.payload).decode(errors="replace") if answer is not None else
                   f"no answer within {self.request_timeout_s} s" + request.why_unanswered())
            if why != self.last_error:            # say each new reason once, not every round
                log.warning("backup: request to %s failed: %s", endpoint, why)
            self.last_error = why
            return None
        self.last_error = None
        return bytes(answer.payload)

    # ---- one round ------------------------------------------------------------------
    def do_work(self) -> int:
        """One query (and what it leads to); returns entries + snapshot bytes pulled."""
        raw = self._request(BACKUP_QUERY, _QUERY.pack(self.position + 1, MAX_ENTRY_BYTES))
        if raw is None:
            return 0
        commit, snap_index, snap_term, snap_size, base, first, count = _QUERY_ANSWER.unpack_from(raw)
        self.cluster_commit = max(self.cluster_commit, commit)
        work = 0
        if snap_index > self.snapshot_index and snap_size > 0:
            work += self._pull_snapshot(snap_index, snap_term, snap_size)
            return work                           # entries after it: next round
        if count and first == self.position + 1:
            self.log.append_packed(memoryview(raw)[_QUERY_ANSWER.size:], count)
            self._save_term(self.log.last_term)      # the term before the entries, as a member
            self.archive.append_from(self.log, first, first + count)
            self.archive.record_term_starts(self.log, first, first + count)   # as a member
            self.archive.note_commit_index(self.log.last_index)
            self.position = self.archive.sync()
            self._write_status()
            work += count
        return work

    def _save_term(self, term: int) -> None:
        """node.state holds a term at least that of anything kept (a restored member whose
        log has terms and no node.state is refused at start: it would have lost its vote)."""
        if term > self.term:
            self.term = term
            self.archive.save_hard_state(self.term, None)

    def _pull_snapshot(self, index: int, term: int, size: int) -> int:
        self._save_term(term)
        from aeronpy.cluster.snapshotting import (SnapshotFileError, decode_snapshot,
                                                  snapshot_cluster_time)
        writer = self.archive.begin_snapshot(index, term)
        offset = 0
        head = bytearray()          # the file's first bytes: its header names the cluster time
        try:
            while offset < size:
                raw = self._request(BACKUP_CHUNK, _CHUNK.pack(index, offset, MAX_CHUNK_BYTES))
                if raw is None:
                    writer.abort()
                    return 0
                got_index, got_offset = _CHUNK_ANSWER.unpack_from(raw)
                data = memoryview(raw)[_CHUNK_ANSWER.size:]
                if got_index != index or got_offset != offset or not data:
                    writer.abort()
                    return 0
                writer.write(data)
                if len(head) < 64:
                    head += data[:64 - len(head)]
                offset += len(data)
            # end-to-end check of the inner checksum *before* it is recorded: a member serves
            # its file as it is on its disk, and a recorded snapshot is the one recovery (and a
            # restored member) trusts. A damaged one is dropped and another member asked.
            try:
                decode_snapshot(writer.read_back())
            except SnapshotFileError as exc:
                writer.abort()
                self._refused_snapshot(index, exc)
                return 0
            # recorded with the cluster time the member recorded it with, as its own entry
            info = writer.commit(snapshot_cluster_time(head))
        except BaseException:
            writer.abort()
            raise
        keeps = self.log.base_index < index <= self.log.last_index and self.log.term_at(index) == term
        self.log.drop_prefix(index, term)
        # the log below it stays on disk: an older kept snapshot is a fallback only with the
        # log after it (purged below the oldest kept one, below)
        self.archive.reset_to_snapshot(index, term, keeps, purge=False)
        if term > self.term:
            self.term = term
            self.archive.save_hard_state(term, None)
        self.snapshot_index = index
        self.snapshots.append(info)
        while len(self.snapshots) > self.snapshots_to_keep:
            old = self.snapshots.pop(0)
            try:
                os.remove(old.path)
            except OSError:
                pass
        self.archive.purge_below(self.snapshots[0].index + 1)
        self.position = max(self.archive.sync(), index)
        self._write_status()
        log.info("backup: snapshot at index %d (%d bytes) pulled", index, size)
        return size

    def _refused_snapshot(self, index: int, exc: BaseException) -> None:
        """A pulled snapshot failed its check: not recorded; counted, said once per reason,
        and the next round asks the next member (whose copy may be intact)."""
        endpoint = self.endpoints[self._member % len(self.endpoints)]
        self.failures += 1
        self._member += 1
        why = f"snapshot at index {index} from {endpoint} is damaged ({exc}): not recorded"
        if why != self.last_error:
            log.warning("backup: %s", why)
        self.last_error = why

    def _write_status(self) -> None:
        path = os.path.join(self.data_dir, STATUS_FILE)
        with open(path + ".tmp", "w") as f:
            json.dump({"position": self.position, "snapshot_index": self.snapshot_index,
                       "cluster_commit": self.cluster_commit, "term": self.term,
                       "updated_unix_s": time.time()}, f)
        os.replace(path + ".tmp", path)

    def run(self, stop=None, max_s: Optional[float] = None) -> None:
        """Pull until ``stop`` (a threading.Event) is set or ``max_s`` passed."""
        end = None if max_s is None else time.monotonic() + max_s
        while (stop is None or not stop.is_set()) and (end is None or time.monotonic() < end):
            if self.do_work() == 0 or self.position >= self.cluster_commit:
                time.sleep(self.poll_interval_s)

    def close(self) -> None:
        self._transport.close()
        self.archive.close()


# ------------------------------------------------------------------------------ restore
RESTORED_FILES = (".snap", ".seg", "recording.log", "durable.pos", "node.state")
_ARCHIVE_FILES = (".snap", ".seg", "recording.log")   # a target holding one is not fresh


class RestoreError(ValueError):
    """A restore refused before copying anything (or undone): the message says why."""


def restore_to(backup_dir: str, member_data_dir: str) -> list:
    """Copy a backup into a fresh member data dir (which must not hold a log already), and
    mark where the restored log ends (restored.py). Returns the names written.

    Refuses (RestoreError) a missing or empty backup and a target holding a log, snapshots or
    a recording log, before touching the target; a copy that fails part-way is undone (and a
    target directory made here is removed again), so a failed restore leaves nothing behind."""
    if not os.path.isdir(backup_dir):
        raise RestoreError(f"no backup at {backup_dir}: not a directory")
    names = [n for n in sorted(os.listdir(backup_dir))
             if n.endswith(RESTORED_FILES) and not n.endswith(".tmp")
             and os.path.isfile(os.path.join(backup_dir, n))]
    if not any(n.endswith(_ARCHIVE_FILES) for n in names):
        raise RestoreError(f"{backup_dir} holds no backup (no snapshot, log segment or "
                           "recording.log): name the directory 'aeronpy backup --data-dir' wrote")
    if os.path.exists(member_data_dir) and not os.path.isdir(member_data_dir):
        raise RestoreError(f"{member_data_dir} is not a directory")
    if os.path.isdir(member_data_dir):
        held = sorted(n for n in os.listdir(member_data_dir) if n.endswith(_ARCHIVE_FILES))
        if held:
            raise RestoreError(f"{member_data_dir} already holds a log ({', '.join(held[:3])}"
                               f"{', ...' if len(held) > 3 else ''}): restore only into an "
                               "empty dir")
    made = not os.path.exists(member_data_dir)
    copied: list = []
    try:
        os.makedirs(member_data_dir, exist_ok=True)
        for name in names:
            copied.append(name)           # before the copy: a part-written file goes too
            shutil.copy2(os.path.join(backup_dir, name), os.path.join(member_data_dir, name))
        if NODE_STATE_FILE not in names:  # a backup made before the backup saved one
            copied.append(NODE_STATE_FILE)
            save_node_state(OsFileSystem(), member_data_dir, 0, None)
        # where the old cluster's log ends: its term entries carry its member list, which a
        # new cluster on other ports would otherwise report at each one (restored.py)
        from aeronpy.cluster.admin_client import plan_recovery
        try:
            log_end = plan_recovery(member_data_dir)["log_end"]
        except (AeronpyError, ValueError) as exc:
            log_end = None
            log.warning("restored %s, but where its log ends is unknown (%s): without %s the "
                         "restored members report the old cluster's member list at each old "
                         "term start they replay (harmless)", member_data_dir, exc,
                         RESTORED_MARKER_FILE)
        if log_end:                       # None: unknown; 0: no log entries to mark
            copied.append(RESTORED_MARKER_FILE)
            write_restored_marker(member_data_dir, log_end, os.path.abspath(backup_dir))
    except OSError as exc:
        if made:
            shutil.rmtree(member_data_dir, ignore_errors=True)
        else:
            for name in copied:
                try:
                    os.remove(os.path.join(member_data_dir, name))
                except OSError:
                    pass
        raise RestoreError(f"copying {backup_dir} into {member_data_dir} failed: "
                           f"{exc.strerror or exc} ({exc.filename or ''}); nothing was restored") from exc
    return copied


def _int_at_least(low: int, unit: str):
    """An argparse type: an integer >= ``low`` (a bad value is exit 2 with one line, not a
    traceback later or a silent clamp)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of {unit}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{text!r}: expected {low} or more {unit}")
        return value
    return parse


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="aeronpy backup",
                                     description="Continuously back up a cluster (non-voting).")
    parser.add_argument("--config", default=None,
                        help="the cluster's TOML file (members); not needed with --restore-to")
    parser.add_argument("--data-dir", required=True, help="where the backup is kept")
    parser.add_argument("--poll-interval-ms", type=_int_at_least(0, "milliseconds"), default=20,
                        help="pause between queries once caught up (default 20)")
    parser.add_argument("--snapshots-to-keep", type=_int_at_least(1, "snapshots"), default=2,
                        help="snapshots kept in the backup, at least 1 (default 2)")
    parser.add_argument("--restore-to", default=None, metavar="DIR",
                        help="instead of backing up: copy the backup into DIR, a new member's data dir")
    args = parser.parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.restore_to:
        try:
            copied = restore_to(args.data_dir, args.restore_to)
        except RestoreError as exc:
            print(f"aeronpy backup --restore-to: {exc}", file=sys.stderr)
            return 2
        print(f"restored {len(copied)} files into {args.restore_to}")
        # members started empty that are a majority elect one of themselves, and its empty
        # log then overwrites the restored one (docs/backup.md, step 2)
        print("restore into every member of the new cluster, or at least a majority, before "
              "starting any: a majority started empty runs from an empty state")
        return 0
    if args.config is None:
        parser.error("--config is required to back up a cluster")
    try:
        from aeronpy.archive.fs import read_regular
        from aeronpy.cluster.config import CONFIG_FILE_MAX_BYTES
        raw = tomllib.loads(read_regular(args.config, CONFIG_FILE_MAX_BYTES,
                                         what="configuration file").decode("utf-8"))
        endpoints = [format_endpoint(str(m["host"]), m["ingress_port"]) for m in raw["members"]]
        secret = raw.get("secret")
        if secret is not None and (not isinstance(secret, str) or not secret):
            raise ValueError("secret must be a non-empty string")
    except (OSError, KeyError, TypeError, ValueError, RecursionError) as exc:
        print(f"aeronpy backup: cannot read members from {args.config}: {exc}", file=sys.stderr)
        return 2
    backup = ClusterBackup(endpoints, args.data_dir, args.snapshots_to_keep,
                           args.poll_interval_ms / 1000,
                           secret=None if secret is None else secret.encode(),
                           segment_bytes=raw.get("segment_bytes"),
                           max_message_bytes=raw.get("max_message_bytes")
                           if isinstance(raw.get("max_message_bytes"), int) else None)
    import signal
    import threading
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    log.info("backing up %s into %s from position %d", ",".join(endpoints), args.data_dir,
             backup.position)
    try:
        backup.run(stop)
    finally:
        backup.close()
    log.info("backup stopped at position %d", backup.position)
    return 0
