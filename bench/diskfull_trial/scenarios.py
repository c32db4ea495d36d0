"""The five scenarios of the disk-full trial. Each gets a fresh 3-member cluster whose data
dirs sit on small file systems of their own, with clients sending throughout, fills disks,
records what the members did, frees the space, restarts what stopped and hands the run to the
common verdict (exactly-once, agreement, data dirs readable, no crash loop)."""
from __future__ import annotations

import os
import signal
import time
from typing import Callable, Dict, List

from diskfull_trial.cluster import (log_since, log_size, member_status, offline_tools, telling_lines,
                                    tool_snapshot, wait_caught_up, wait_exit)

STOP_WAIT_S = 25.0            # a member whose disk is full must have stopped within this
CATCH_UP_S = 30.0
HOLD_S = 3.0                  # space stays short this long after the member stopped
# start-up sweep, bytes left free: on tmpfs 4 KiB fails the data dir's write probe, 8 KiB the
# new counters.dat, 16 KiB and more the first new segment (after the start)
KEEP_LEVELS = (4 * 1024, 8 * 1024, 16 * 1024, 128 * 1024, 1024 * 1024 + 256 * 1024)


class Ctx:
    """What a scenario works with; ``events`` is its part of the report."""

    def __init__(self, cluster, disks, work_dir: str, problems: List[str]):
        self.cluster, self.disks, self.work_dir, self.problems = cluster, disks, work_dir, problems
        self.events: List[Dict[str, object]] = []
        self.windows: List[tuple] = []        # (t0, t1, what): no request may be acked then

    def note(self, what: str, **fields) -> Dict[str, object]:
        event = {"t": round(time.time(), 3), "what": what, **fields}
        self.events.append(event)
        print(f"  {what}: " + ", ".join(f"{k}={v}" for k, v in fields.items()), flush=True)
        return event

    def fill_and_watch(self, member: int, keep_bytes: int = 0, wait_s: float = STOP_WAIT_S) -> Dict[str, object]:
        """Fill ``member``'s disk while it runs; what it did within ``wait_s``."""
        offset = log_size(self.cluster, member)
        role = (self.cluster.read_counters(member) or {}).get("role")
        left = self.disks.fill(member, keep_bytes)
        t0 = time.monotonic()
        rc = wait_exit(self.cluster, member, wait_s)
        return self.note(f"member {member} disk filled", role=role, free_left=left, exit=rc,
                         stopped_after_s=None if rc is None else round(time.monotonic() - t0, 2),
                         status=member_status(self.cluster, member),
                         log=telling_lines(log_since(self.cluster, member, offset)))

    def free_and_restart(self, member: int, grow_to: int = 0) -> Dict[str, object]:
        """Run the offline tools on the stopped member's dir, free its space (or grow the fs),
        start it again and time its catch-up; a member that stops again is a crash loop."""
        if self.cluster.alive(member):
            self.cluster.kill(member, signal.SIGTERM, wait_s=30)
        tools_full = offline_tools(self.cluster.data_dir(member), self.work_dir)
        freed = (self.disks.grow(member, grow_to) and "grown") if grow_to else None
        if not freed:
            self.disks.free(member)
            freed = "ballast removed"
        offset = log_size(self.cluster, member)
        self.cluster.start_member(member)
        caught_up_s = wait_caught_up(self.cluster, member, CATCH_UP_S)
        time.sleep(2.0)
        alive = self.cluster.alive(member)
        if caught_up_s is None or not alive:
            self.problems.append(f"member {member} restarted after space came back: caught up "
                                 f"{caught_up_s}, running {alive}: {self.cluster.tail_log(member, 5)}")
            if not alive:
                self.cluster.kill(member)            # acknowledged: it is reported
        return self.note(f"member {member} restarted", space=freed, caught_up_s=caught_up_s,
                         running=alive, tools_on_full_dir=tools_full,
                         log=telling_lines(log_since(self.cluster, member, offset)))

    def check_stopped(self, event: Dict[str, object], member: int) -> None:
        if event["exit"] is None:
            self.problems.append(f"member {member}: disk full, still running after {STOP_WAIT_S:g} s "
                                 f"(status {event['status']})")
        elif event["exit"] != 4:
            self.problems.append(f"member {member}: disk full, exit status {event['exit']}, docs say 4")
        if not any("disk is full" in line for line in event["log"]):
            self.problems.append(f"member {member}: no 'the disk is full' line in its log: {event['log']}")
        if any("Traceback" in line for line in event["log"]):
            self.problems.append(f"member {member}: a traceback in its log")


def follower_fills(ctx: Ctx) -> None:
    leader = ctx.cluster.leader(timeout_s=10)
    follower = (leader + 1) % 3
    event = ctx.fill_and_watch(follower)
    ctx.check_stopped(event, follower)
    time.sleep(HOLD_S)
    ctx.free_and_restart(follower)


def leader_fills(ctx: Ctx) -> None:
    leader = ctx.cluster.leader(timeout_s=10)
    event = ctx.fill_and_watch(leader)
    ctx.check_stopped(event, leader)
    successor = ctx.cluster.leader(timeout_s=15, exclude=[leader])
    ctx.note("new leader", member=successor)
    if successor is None:
        ctx.problems.append("no new leader within 15 s of the leader's disk filling")
    time.sleep(HOLD_S)
    ctx.free_and_restart(leader, grow_to=2 * ctx.disks.size_bytes)


def two_fill(ctx: Ctx) -> None:
    leader = ctx.cluster.leader(timeout_s=10)
    followers = [m for m in range(3) if m != leader]
    offsets = {m: log_size(ctx.cluster, m) for m in followers}
    for m in followers:
        ctx.disks.fill(m)
    t0 = time.monotonic()
    codes = {m: wait_exit(ctx.cluster, m, STOP_WAIT_S) for m in followers}
    both_stopped = time.time()
    for m in followers:
        event = ctx.note(f"member {m} disk filled", exit=codes[m], stopped_within_s=round(time.monotonic() - t0, 2),
                         status=member_status(ctx.cluster, m),
                         log=telling_lines(log_since(ctx.cluster, m, offsets[m])))
        ctx.check_stopped(event, m)
    time.sleep(8.0)                                   # a majority is gone: nothing may be acked
    ctx.windows.append((both_stopped + 2.5, time.time(), "two members' disks full"))
    ctx.note("survivor", member=leader, status=member_status(ctx.cluster, leader),
             role=(ctx.cluster.read_counters(leader) or {}).get("role"))
    for m in followers:
        ctx.free_and_restart(m)


def start_full(ctx: Ctx) -> None:
    """A follower starts on a full disk, then with a little room at several levels; then runs
    out of room with the leader killed (its node.state must be written for the new term); then
    is asked for a snapshot with its disk full."""
    cluster = ctx.cluster
    leader = cluster.leader(timeout_s=10)
    member = (leader + 1) % 3
    cluster.kill(member, signal.SIGTERM, wait_s=30)
    for keep in (0,) + KEEP_LEVELS:
        ctx.disks.free(member)
        left = ctx.disks.fill(member, keep)
        offset = log_size(cluster, member)
        cluster.start_member(member)
        rc = wait_exit(cluster, member, 12.0)
        event = ctx.note(f"member {member} started on a full disk", free_left=left, exit=rc,
                         status=member_status(cluster, member),
                         log=telling_lines(log_since(cluster, member, offset)))
        if rc is None:
            rc = cluster.kill(member, signal.SIGTERM, wait_s=30)
            event["sigterm_exit"] = rc
        elif rc != 4:
            ctx.problems.append(f"member {member} started with {left} bytes free: exit status {rc}, "
                                "docs say 4 for a full disk")
        if any("Traceback" in line for line in event["log"]):
            ctx.problems.append(f"member {member} started with {left} bytes free: a traceback in its log")
        elif rc == 4 and not any("disk is full" in line for line in event["log"]):
            ctx.problems.append(f"member {member} started with {left} bytes free: no 'disk is full' line")
    ctx.free_and_restart(member)

    # node.state: the disk fills, then the leader dies, so the member must save a new term
    ctx.disks.fill(member)
    offset = log_size(cluster, member)
    old_leader = cluster.leader(timeout_s=5)
    cluster.kill(old_leader, signal.SIGKILL)
    rc = wait_exit(cluster, member, STOP_WAIT_S)
    successor = cluster.leader(timeout_s=10, exclude=[old_leader])
    ctx.note(f"member {member} full, leader {old_leader} killed", exit=rc, new_leader=successor,
             status=member_status(cluster, member), log=telling_lines(log_since(cluster, member, offset)))
    cluster.start_member(old_leader)
    ctx.free_and_restart(member)

    # a snapshot asked of a member with room for some more log but not for a snapshot
    keep = max(256 * 1024, newest_snapshot_bytes(cluster.data_dir(member)) // 2)
    left = ctx.disks.fill(member, keep)
    offset = log_size(cluster, member)
    result = tool_snapshot(cluster.data_dir(member), ctx.work_dir)
    running = cluster.alive(member)
    ctx.note(f"aeronpy tool snapshot, member {member} with {left} bytes free", tool=result,
             running=running, status=member_status(cluster, member),
             stray=[n for n in os.listdir(cluster.data_dir(member)) if n.endswith(".tmp")],
             log=telling_lines(log_since(cluster, member, offset)))
    if "traceback" in result:
        ctx.problems.append(f"aeronpy tool snapshot on a full member: traceback {result['traceback']}")
    if running and result.get("rc") != 1:
        ctx.problems.append(f"aeronpy tool snapshot on a member that cannot write it: {result}, "
                            "docs say exit 1 with 'problem: snapshot failed'")
    wait_exit(cluster, member, STOP_WAIT_S)
    ctx.free_and_restart(member)
    if not cluster.alive(old_leader):
        ctx.free_and_restart(old_leader)


def install_full(ctx: Ctx) -> None:
    """A follower that was down while the others took two snapshots (`aeronpy tool snapshot`)
    and purged their logs restarts with room for some log but not for the leader's snapshot it
    must install."""
    cluster = ctx.cluster
    leader = cluster.leader(timeout_s=10)
    member = (leader + 1) % 3
    cluster.kill(member, signal.SIGTERM, wait_s=30)
    start = time.monotonic()
    for _ in range(2):            # two snapshots past its log: the others purge what it lacks
        time.sleep(3.0)
        leader = cluster.leader(timeout_s=5, exclude=[member])
        if leader is not None:
            ctx.note("aeronpy tool snapshot", through=leader, tool=tool_snapshot(cluster.data_dir(leader), ctx.work_dir))
    size = newest_snapshot_bytes(cluster.data_dir(leader)) if leader is not None else 0
    left = ctx.disks.fill(member, max(64 * 1024, size // 2))
    offset = log_size(cluster, member)
    cluster.start_member(member)
    rc = wait_exit(cluster, member, STOP_WAIT_S)
    event = ctx.note(f"member {member} restarted behind with {left} bytes free (snapshot {size} bytes)",
                     waited_s=round(time.monotonic() - start, 1), exit=rc, status=member_status(cluster, member),
                     stray=[n for n in os.listdir(cluster.data_dir(member)) if n.endswith(".tmp")],
                     log=telling_lines(log_since(cluster, member, offset)))
    ctx.check_stopped(event, member)
    if event["stray"]:
        ctx.problems.append(f"member {member}: partial snapshot left: {event['stray']} (docs: removed)")
    ctx.free_and_restart(member)


def newest_snapshot_bytes(data_dir: str) -> int:
    try:
        return max((os.path.getsize(os.path.join(data_dir, n)) for n in os.listdir(data_dir)
                    if n.startswith("snapshot-") and n.endswith(".snap")), default=0)
    except OSError:
        return 0


SCENARIOS: Dict[str, Callable[[Ctx], None]] = {
    "follower": follower_fills, "leader": leader_fills, "two": two_fill, "start-full": start_full,
    "install": install_full}
