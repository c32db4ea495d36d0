"""The pieces every disk-full scenario uses: a ProcessCluster whose members' data dirs live on
the trial's own small file systems, and what a member did (exit status, the lines of its log
that tell why, liveness, offline tool verdicts). The service, the load clients and their
results are the loss trial's (loss_trial.harness)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional

from aeronpy.testing.process_cluster import ProcessCluster, child_env

from diskfull_trial.disks import Disks
from loss_trial.harness import BENCH_DIR

# (kind, tag, requests/s; 0: closed loop): the closed-loop one fills segments quickly
CLIENTS = (("sync", "s0", 100.0), ("sync", "b0", 0.0), ("async", "a0", 25.0))
# a secret makes every member keep admin.key and admin.seen, two more files a full disk hits
CONFIG = {"segment_bytes": 64 * 1024, "file_sync": "data", "snapshot_log_bytes": 2 * 1024 * 1024,
          "election_timeout_ms": 1000, "secret": "diskfull-trial"}
TELLING = re.compile(r"disk is full|No space|Errno 28|Traceback|failed|refuses|cut the log|"
                     r"snapshot at index|not recorded|WARNING|ERROR", re.I)
OFFLINE_TOOLS = ("recovery-plan", "recording-log", "errors")


class DiskCluster(ProcessCluster):
    """A ProcessCluster whose member ``m`` keeps its data on ``disks``' file system ``m``."""

    def __init__(self, disks: Disks, **kwargs):
        self.disks = disks
        super().__init__(**kwargs)

    def data_dir(self, member: int) -> str:
        return self.disks.data_dir(member)


def log_since(cluster: ProcessCluster, member: int, offset: int) -> str:
    try:
        with open(cluster.log_path(member), "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def log_size(cluster: ProcessCluster, member: int) -> int:
    try:
        return os.path.getsize(cluster.log_path(member))
    except OSError:
        return 0


def telling_lines(text: str, limit: int = 8) -> List[str]:
    """The lines that say why a member stopped or what it cut, deduplicated, at most ``limit``."""
    lines, seen = [], set()
    for line in text.splitlines():
        if TELLING.search(line) and "dropped frames" not in line:
            key = re.sub(r"\d+", "N", line.split(" ", 2)[-1])[:160]
            if key not in seen:
                seen.add(key)
                lines.append(line.strip()[:400])
    return lines[:limit]


def wait_exit(cluster: ProcessCluster, member: int, timeout_s: float) -> Optional[int]:
    """The member's exit status once it exits on its own, or None if it still runs."""
    proc = cluster.procs.get(member)
    if proc is None:
        return None
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return None


def member_status(cluster: ProcessCluster, member: int) -> Dict[str, object]:
    from aeronpy.cluster.counters import CountersReader

    try:
        reader = CountersReader(cluster.data_dir(member))
        try:
            st = reader.status()
            values = reader.read()
        finally:
            reader.close()
        return {"state": st.state, "detail": st.detail[:200], "errors": values.get("errors"),
                "commit_index": values.get("commit_index"),
                "consensus_module_state": values.get("consensus_module_state")}
    except Exception as e:  # noqa: BLE001
        return {"state": "unreadable", "detail": repr(e)[:200]}


def offline_tools(data_dir: str, work_dir: str) -> Dict[str, Dict[str, object]]:
    """Run the ``aeronpy tool`` commands that read a data dir offline; a traceback on stderr or
    an exit status other than 0 is what the report flags."""
    results = {}
    for command in OFFLINE_TOOLS:
        try:
            r = subprocess.run([sys.executable, "-m", "aeronpy", "tool", command, "--data-dir", data_dir,
                                "--json"], capture_output=True, text=True, timeout=60, cwd=work_dir,
                               env=child_env(BENCH_DIR))
        except subprocess.TimeoutExpired:
            results[command] = {"rc": None, "problem": "did not finish within 60 s (a hang)"}
            continue
        entry: Dict[str, object] = {"rc": r.returncode}
        if "Traceback" in r.stderr:
            entry["traceback"] = r.stderr.strip().splitlines()[-1][:300]
        try:
            data = json.loads(r.stdout) if r.stdout.strip() else {}
        except ValueError:
            data = {}
        if command == "recovery-plan":
            for key in ("problem", "note", "durable_index", "entries_to_replay"):
                if isinstance(data, dict) and key in data:
                    entry[key] = data[key] if not isinstance(data[key], str) else data[key][:300]
        elif command == "errors" and isinstance(data, list):
            entry["distinct"] = len(data)
            if data:
                entry["last"] = str(data[-1].get("text", ""))[:300]
        if r.returncode != 0 and r.stderr.strip():
            entry["stderr"] = r.stderr.strip().splitlines()[-1][:300]
        results[command] = entry
    return results


def tool_snapshot(data_dir: str, work_dir: str, timeout_s: float = 15.0) -> Dict[str, object]:
    try:
        r = subprocess.run([sys.executable, "-m", "aeronpy", "tool", "snapshot", "--data-dir", data_dir,
                            "--json", "--timeout", str(timeout_s)], capture_output=True, text=True,
                           timeout=timeout_s + 30, cwd=work_dir, env=child_env(BENCH_DIR))
    except subprocess.TimeoutExpired:
        return {"rc": None, "problem": "the tool did not return (a hang)"}
    entry: Dict[str, object] = {"rc": r.returncode}
    try:
        data = json.loads(r.stdout)
        entry.update({k: (v[:300] if isinstance(v, str) else v) for k, v in data.items()
                      if k in ("problem", "index", "completed", "snapshot", "error")})
    except ValueError:
        entry["stdout"] = r.stdout.strip()[-300:]
    if "Traceback" in r.stderr:
        entry["traceback"] = r.stderr.strip().splitlines()[-1][:300]
    elif r.stderr.strip():
        entry["stderr"] = r.stderr.strip().splitlines()[-1][:300]
    return entry


def wait_caught_up(cluster: ProcessCluster, member: int, timeout_s: float) -> Optional[float]:
    """Seconds until ``member``'s commit index reached the leader's commit index of the moment
    it was asked; None if not within ``timeout_s`` (or no leader)."""
    start = time.monotonic()
    leader = cluster.leader(timeout_s=min(10.0, timeout_s), exclude=[member])
    if leader is None:
        leader = cluster.leader(timeout_s=1.0)
        if leader is None:
            return None
    target = (cluster.read_counters(leader) or {}).get("commit_index", 0)
    while time.monotonic() - start < timeout_s:
        if not cluster.alive(member):
            return None
        c = cluster.read_counters(member) or {}
        if c.get("commit_index", -1) >= target and c.get("leader_id", -1) >= 0:
            return round(time.monotonic() - start, 2)
        time.sleep(0.1)
    return None


def stop_all(cluster: ProcessCluster) -> Dict[int, Optional[int]]:
    """SIGTERM every member (each writes what it applied); their exit statuses."""
    return {m: cluster.kill(m, signal.SIGTERM, wait_s=30) for m in range(cluster.members)}
