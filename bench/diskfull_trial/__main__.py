"""A full disk under a real cluster: what a member does, and that nothing acknowledged is lost.

    sudo python bench/diskfull_trial [--fs tmpfs|ext4] [--size-mib 24] [--file-sync data]
                                     [--scenarios follower,leader,two,start-full,install]
                                     [--base-port 40000] [--json OUT] [--keep] [--work-dir DIR]

Each scenario runs a fresh 3-member cluster (``aeronpy node`` processes on loopback, service
loss_trial.service:ApplyCountingService, 64 KiB segments, ``file_sync = "data"``, a snapshot
every 2 MiB of log, a ``secret``: admin.key, admin.seen) whose data dirs each sit on a small
file system of their own (tmpfs, or an ext4 image on a loop device), with three clients of the
loss trial sending throughout (two paced, one closed-loop). A ballast file beside the data dir
fills a disk while the member runs:

  follower    a follower's disk fills; later the ballast is removed and the member restarted
  leader      the leader's disk fills; the tmpfs is grown (remount,size=) instead (ext4: ballast removed)
  two         both followers' disks fill: the leader alone must acknowledge nothing meanwhile
  start-full  a follower starts on a full disk, then with 4, 8, 16, 128 KiB and 1.25 MiB free;
              then its disk fills and the leader is killed (a new term: node.state, the
              recording log); then `aeronpy tool snapshot` is asked of it with room for some
              log but not for the snapshot
  install     a follower down while the others snapshot twice restarts with room for some
              log but not for the leader's snapshot it must install

For every member whose disk filled: exit status, the log lines that say why, its liveness
(counters), the offline tools (recovery-plan, recording-log, errors) on its data dir, and its
restart once space is back (catch-up time, still running 2 s later). At the end of each
scenario all members stop with SIGTERM and the loss trial's checker verifies exactly-once and
agreement; recovery-plan runs on every data dir once more.

Exit status: 0 no problem; 1 a problem or violation (listed); 2 not root or a mount failed.
Before anything runs, the verdict is shown made-up violations and must catch them;
``--negative-control`` makes every member apply its 100th message twice, so a real run must
end in status 1.
Everything mounted is unmounted at the end, also on an error or Ctrl-C. Ports: member i of
scenario s uses base + 100 s + 10 i .. + 2.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from typing import Dict, List, Optional, Sequence

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.dirname(BENCH_DIR), BENCH_DIR]   # the repository's aeronpy; these packages

from diskfull_trial.cluster import CLIENTS, CONFIG, DiskCluster, offline_tools, stop_all  # noqa: E402
from diskfull_trial.disks import Disks, MountError  # noqa: E402
from diskfull_trial.scenarios import SCENARIOS, Ctx  # noqa: E402
from loss_trial import harness  # noqa: E402
from loss_trial.checker import ACKED, TIMED_OUT, check_exactly_once  # noqa: E402

WARMUP_S = 4.0
CLIENT_S = {"follower": 35.0, "leader": 40.0, "two": 50.0, "start-full": 75.0, "install": 45.0}


def acked_in_windows(records: List[list], windows: Sequence[tuple]) -> List[str]:
    """Requests answered while no majority could have made them durable."""
    found = []
    for t0, t1, what in windows:
        late = [r[3] for r in records if r[2] == ACKED and t0 <= r[0] + r[1] / 1e9 <= t1]
        if late:
            found.append(f"{len(late)} requests acknowledged while {what}, e.g. {late[:3]}")
    return found


def checkers_can_fail() -> List[str]:
    """Negative control of the verdict, on made-up records: an ack inside a window, an ack
    outside it, a timeout inside it; a request applied twice. Returns what did not get caught."""
    t = 1000.0
    records = [[t + 1.0, 0.5e9, ACKED, "in", "1"], [t - 5.0, 0.1e9, ACKED, "before", "1"],
               [t + 1.0, 2e9, TIMED_OUT, "timeout", None]]
    missed = []
    if len(acked_in_windows(records, [(t, t + 10.0, "a test window")])) != 1:
        missed.append("an acknowledgement inside a window")
    if not check_exactly_once([("p", ACKED, "1")], {0: {"p": 2}}, [0]):
        missed.append("a request applied twice")
    return missed


def run_scenario(name: str, index: int, args, root: str) -> Dict[str, object]:
    work_dir = os.path.join(root, name)
    out_dir = os.path.join(work_dir, "out")
    os.makedirs(out_dir)
    problems: List[str] = []
    disks = Disks(os.path.join(work_dir, "disks"), args.fs, args.size_mib * 1024 * 1024)
    result: Dict[str, object] = {"scenario": name, "fs": args.fs, "file_sync": args.file_sync}
    cluster = None
    clients = []
    started = time.monotonic()
    try:
        for m in range(3):
            disks.mount(m)
        cluster = harness.new_cluster(work_dir, out_dir, args.negative_control, DiskCluster, disks=disks,
                                      ports=harness.member_ports(args.base_port + 100 * index),
                                      config={**CONFIG, "file_sync": args.file_sync})
        if not harness.start_cluster(cluster, problems):
            return result
        client_s = CLIENT_S[name]
        clients = harness.start_clients(cluster, work_dir, out_dir, WARMUP_S + client_s, CLIENTS)
        clients_end = time.monotonic() + WARMUP_S + client_s
        time.sleep(WARMUP_S)
        ctx = Ctx(cluster, disks, work_dir, problems)
        try:
            SCENARIOS[name](ctx)
        except Exception as e:  # noqa: BLE001 - the trial's own failure is reported, then cleaned up
            problems.append(f"scenario stopped: {type(e).__name__}: {e}")
            traceback.print_exc()
        result["events"] = ctx.events
        if time.monotonic() > clients_end:
            result["note"] = "the clients stopped before the scenario ended"
        harness.wait_clients(clients, clients_end, problems, late="a client ran 30 s past its end: killed")
        for m in range(3):
            if not cluster.alive(m):
                problems.append(f"member {m} not running at the end: {cluster.tail_log(m, 3)}")
                cluster.kill(m)
                disks.free(m)
                cluster.start_member(m)
        try:
            result["settled_index"] = cluster.wait_settled(timeout_s=30)
        except TimeoutError as e:
            problems.append(str(e))
        result["stop_exit"] = stop_all(cluster)
        if any(code != 0 for code in result["stop_exit"].values()):
            problems.append(f"SIGTERM at the end: exit statuses {result['stop_exit']}")
        result["tools_at_end"] = {m: offline_tools(cluster.data_dir(m), work_dir) for m in range(3)}
        for m, tools in result["tools_at_end"].items():
            for command, entry in tools.items():
                if entry.get("rc") != 0 or "traceback" in entry or entry.get("problem"):
                    problems.append(f"member {m}: aeronpy tool {command} at the end: {entry}")
        records = harness.load_records(out_dir, problems, CLIENTS, hint="")
        result["acked"], result["sent"], violations = harness.verdict(records, harness.load_applied(out_dir))
        violations += acked_in_windows(records, ctx.windows)
        result["violations"] = violations[:30]
        result["violation_count"] = len(violations)
    finally:
        harness.close(cluster, clients)
        umount_problems = disks.unmount_all(keep_copy_in=os.path.join(work_dir, "kept") if args.keep else None)
        problems += umount_problems
        result["problems"] = problems
        result["seconds"] = round(time.monotonic() - started, 1)
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fs", choices=("tmpfs", "ext4"), default="tmpfs")
    parser.add_argument("--size-mib", type=int, default=24, help="each member's file system")
    parser.add_argument("--file-sync", choices=("none", "data", "full"), default="data")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--base-port", type=int, default=40000)
    parser.add_argument("--json", metavar="OUT")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, data dir copies)")
    parser.add_argument("--work-dir", help="parent of the work directory (default: the system's temp dir)")
    parser.add_argument("--negative-control", action="store_true",
                        help="members apply their 100th message twice: the verdict must fail")
    args = parser.parse_args(argv)
    names = [s for s in args.scenarios.split(",") if s]
    if any(s not in SCENARIOS for s in names):
        parser.error(f"--scenarios: from {', '.join(SCENARIOS)}")
    missed = checkers_can_fail()
    if missed:
        print(f"diskfull_trial: the verdict does not catch {', '.join(missed)}", file=sys.stderr)
        return 1
    if os.geteuid() != 0:
        print("diskfull_trial: must run as root (it mounts file systems)", file=sys.stderr)
        return 2
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, harness.raise_exit)
    root = tempfile.mkdtemp(prefix="aeronpy-diskfull-", dir=args.work_dir)
    results = []
    try:
        for index, name in enumerate(names):
            print(f"scenario {name} ({args.fs}, file_sync {args.file_sync}):", flush=True)
            result = run_scenario(name, index, args, root)
            results.append(result)
            print(f"  -> acked {result.get('acked')} of {result.get('sent')}, violations "
                  f"{result.get('violation_count')}, problems {len(result['problems'])}, "
                  f"{result['seconds']} s", flush=True)
            for line in result.get("violations", [])[:10] + result["problems"][:10]:
                print("     " + line.replace("\n", "\n       "), flush=True)
    except KeyboardInterrupt:
        print("diskfull_trial: interrupted", file=sys.stderr)
        return 130
    except MountError as e:
        print(f"diskfull_trial: {e}", file=sys.stderr)
        return 2
    finally:
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1, default=str)
        if args.keep:
            print(f"work directory kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    failed = [r["scenario"] for r in results if r["problems"] or r.get("violation_count")]
    print("all scenarios held" if not failed else f"FAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
