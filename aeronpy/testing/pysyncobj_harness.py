"""PySyncObj half of the cluster benchmark: the same workload aeronpy's bench runs, on PySyncObj.

Lives in the package (not only under bench/) so ``aeronpy bench`` runs it from an installed
wheel; ``bench/pysyncobj_bench.py`` is the script wrapper with the same command line.

Three PySyncObj processes on 127.0.0.1 (random free ports) replicate a counter; every command
carries a ``msg_size``-byte payload and its result (the new count) is the reply. Commands are
submitted *from the leader process* (PySyncObj has no separate client; submitting on a follower
adds a forwarding hop), so the leader child runs the measurement loop and reports back over
its stdout pipe. Modes, each on a fresh cluster:

* ``throughput``: PySyncObj's batched setting (its default, ``appendEntriesUseBatch=True``),
  asynchronous calls with callbacks, at most ``window`` commands in flight, for ``duration_s``.
* ``latency``: its unbatched setting (``appendEntriesUseBatch=False``, which also makes a
  pipe wake the tick thread as soon as a command is queued) and one synchronous call at a
  time (``sync=True``), started on a fixed schedule of ``rate`` per second; if a call takes
  longer than the gap, the next starts at once (so the achieved rate is reported). Latency is
  measured from the call's start; ``corrected`` also counts the wait behind a late call
  (from the scheduled start), the coordinated-omission view.
* ``latency-client``: the ``latency`` settings, with the commands coming from a client process
  (this harness's own) instead of from inside the leader, so the request's path has the same
  processes and hops as aeronpy's one-at-a-time figure: client -> leader -> followers ->
  leader -> client. PySyncObj has no client protocol, so the leader process gets a minimal
  one: a UDP socket in PySyncObj's own poller (served on its tick thread, no thread hand-off),
  each datagram an 8-byte tag and the payload, submitted with a callback that sends the tag
  and the payload back once the command is applied. The client sends one at a time on the
  ``latency`` schedule and blocks in the kernel until the answer comes.
* ``failover``: default settings; kill -9 the leader, then both survivors submit a command
  every 5 ms; the gap is from the kill to the first command committed after it.

Every loop is bounded by count and time. Children die with the parent (PR_SET_PDEATHSIG on
Linux, stdin EOF elsewhere) and are killed in ``finally`` / atexit / on SIGTERM and Ctrl-C.

    python bench/pysyncobj_bench.py                # full run, 32 and 256 bytes
    python bench/pysyncobj_bench.py --quick --json # ~15 s smoke
    python -m aeronpy.testing.pysyncobj_harness    # the same, from an installed package
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional

# the directory holding the aeronpy package, so node children import the same aeronpy
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# how a node child is started (followed by --node ADDR --partners ... --mode M); the script
# wrapper bench/pysyncobj_bench.py points it at itself so its children are named after it
NODE_COMMAND: List[str] = [sys.executable, "-m", "aeronpy.testing.pysyncobj_harness"]

MODES = ("throughput", "latency", "latency-client", "failover")
LATENCY_MODES = ("latency", "latency-client")   # one at a time, unbatched, on a rate schedule
LEADER_WAIT_S = 20.0          # bound on electing the first leader
REPLY_SLACK_S = 15.0          # bound on a child's answer beyond the run's own duration
THROUGHPUT_WINDOW = 2000      # commands in flight in throughput mode
MAX_LATENCY_SAMPLES = 200_000
CALL_TIMEOUT_S = 1.0          # one command's bound in the latency modes (counted as a timeout)
FAILOVER_PROBE_INTERVAL_S = 0.005
FAILOVER_LIMIT_S = 15.0

# ----------------------------------------------------------------------------------------
# child: one PySyncObj node, driven by JSON lines on stdin


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)          # PR_SET_PDEATHSIG
        except OSError:
            pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent handles Ctrl-C and kills us


def _node_conf(mode: str):
    from pysyncobj import SyncObjConf
    if mode in LATENCY_MODES:
        return SyncObjConf(appendEntriesUseBatch=False, dynamicMembershipChange=False)
    return SyncObjConf(dynamicMembershipChange=False)     # PySyncObj's defaults (batched)


def _make_node(self_addr: str, partners: List[str], mode: str):
    from pysyncobj import SyncObj, replicated

    class BenchCounter(SyncObj):
        def __init__(self) -> None:
            super().__init__(self_addr, partners, _node_conf(mode))
            self.count = 0
            self.payload_bytes = 0

        @replicated
        def apply_command(self, payload: bytes) -> int:
            self.count += 1
            self.payload_bytes += len(payload)
            return self.count

    return BenchCounter()


def _run_throughput(node, duration_s: float, msg_size: int) -> Dict[str, Any]:
    from pysyncobj import FAIL_REASON
    payload = b"x" * msg_size
    slots = threading.Semaphore(THROUGHPUT_WINDOW)
    lock = threading.Lock()
    stats = {"ok": 0, "failed": 0}

    def on_done(result, error):
        with lock:
            stats["ok" if error == FAIL_REASON.SUCCESS else "failed"] += 1
        slots.release()

    start = time.monotonic()
    deadline = start + duration_s
    submitted = 0
    while time.monotonic() < deadline:
        if not slots.acquire(timeout=0.1):
            continue
        node.apply_command(payload, callback=on_done)
        submitted += 1
    elapsed = time.monotonic() - start
    with lock:
        done_in_time = stats["ok"]
    drain_deadline = time.monotonic() + 5.0
    while time.monotonic() < drain_deadline:
        with lock:
            if stats["ok"] + stats["failed"] >= submitted:
                break
        time.sleep(0.01)
    return {"commands": done_in_time, "elapsed_s": elapsed, "submitted": submitted,
            "failed": stats["failed"], "msgs_per_s": done_in_time / elapsed,
            "window": THROUGHPUT_WINDOW}


def _paced(call, duration_s: float, rate: float) -> Dict[str, Any]:
    """One ``call()`` at a time (True: answered, False: timed out or failed), started on a
    ``rate``/s schedule; a late answer starts the next at once. Both latency modes use it."""
    from aeronpy.testing.histogram import Histogram
    hist, corrected = Histogram(), Histogram()
    gap_ns = int(1e9 / rate)
    count_max = min(MAX_LATENCY_SAMPLES, int(rate * duration_s) + 1)
    timeouts = 0
    start_ns = time.monotonic_ns()
    deadline_ns = start_ns + int(duration_s * 1e9)
    sent = 0
    while sent < count_max:
        scheduled = start_ns + sent * gap_ns
        now = time.monotonic_ns()
        if now >= deadline_ns:
            break
        if scheduled > now:
            wait = scheduled - now
            if wait > 200_000:
                time.sleep((wait - 100_000) / 1e9)
            while time.monotonic_ns() < scheduled:   # last stretch: spin for accuracy
                pass
        begin = time.monotonic_ns()
        sent += 1
        if not call():
            timeouts += 1
            continue
        end = time.monotonic_ns()
        hist.record(end - begin)
        corrected.record(end - min(begin, scheduled))
    elapsed = (time.monotonic_ns() - start_ns) / 1e9
    return {"commands": hist.count, "elapsed_s": elapsed, "offered_rate": rate,
            "achieved_rate": hist.count / elapsed, "timeouts": timeouts,
            "histogram": hist.to_dict(), "corrected": corrected.to_dict()}


def _run_latency(node, duration_s: float, msg_size: int, rate: float) -> Dict[str, Any]:
    payload = b"x" * msg_size

    def call() -> bool:
        try:
            node.apply_command(payload, sync=True, timeout=CALL_TIMEOUT_S)
        except Exception:                           # SyncObjException: timeout or failure
            return False
        return True

    return _paced(call, duration_s, rate)


# the leader's UDP front-end (latency-client mode): kept here so the socket lives as long as
# the process, and its counts are reported to the parent
_FRONTEND: Dict[str, Any] = {}
TAG_BYTES = 8
ANSWER_OK, ANSWER_FAILED = b"\x01", b"\x00"


def _serve_udp(node) -> Dict[str, Any]:
    """Open the UDP front-end on this process (once) and return its port. It is served on
    PySyncObj's tick thread: the socket is registered in the node's own poller (PollPoller's
    registration is safe beside a running poll; it takes effect at the next one, within
    autoTickPeriod). A datagram is ``tag (8 bytes) + payload``; the answer, once the command is
    applied (or has failed), is ``tag + ANSWER_OK + payload`` (or ``ANSWER_FAILED``)."""
    if "sock" in _FRONTEND:
        return {"port": _FRONTEND["sock"].getsockname()[1]}
    from pysyncobj import FAIL_REASON
    from pysyncobj.poller import POLL_EVENT_TYPE
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    counts = {"received": 0, "short": 0, "answered": 0, "failed": 0}

    def on_readable(descr, event) -> None:
        for _ in range(64):                          # bounded per wake-up; poll comes back
            try:
                data, addr = sock.recvfrom(65536)
            except OSError:                          # drained (BlockingIOError) or closed
                return
            counts["received"] += 1
            if len(data) < TAG_BYTES:
                counts["short"] += 1
                continue
            tag, payload = data[:TAG_BYTES], data[TAG_BYTES:]

            def done(result, error, tag=tag, payload=payload, addr=addr) -> None:
                ok = error == FAIL_REASON.SUCCESS
                counts["answered" if ok else "failed"] += 1
                try:
                    sock.sendto(tag + (ANSWER_OK + payload if ok else ANSWER_FAILED), addr)
                except OSError:
                    pass

            node.apply_command(payload, callback=done)

    node._poller.subscribe(sock.fileno(), on_readable, POLL_EVENT_TYPE.READ)
    _FRONTEND.update(sock=sock, counts=counts)
    return {"port": sock.getsockname()[1]}


def _frontend_counts() -> Dict[str, Any]:
    return dict(_FRONTEND.get("counts", {}))


def _run_client_latency(port: int, duration_s: float, msg_size: int,
                        rate: float) -> Dict[str, Any]:
    """The client of ``latency-client`` mode (in the harness's process): one command at a time
    to the leader's UDP front-end, blocking in the kernel for the answer (1 s at most). An
    answer to an earlier, timed-out command (another tag) is read past, not counted."""
    payload = b"x" * msg_size
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(("127.0.0.1", port))
    counts = {"stale_answers": 0, "failed_answers": 0, "send_errors": 0}
    tag_no = [0]
    try:
        def call() -> bool:
            """False (no sample) on a timeout, a failed or wrong answer, or a socket error
            (an ICMP refusal once the leader is gone): counted, never a crash of the run."""
            tag_no[0] += 1
            tag = tag_no[0].to_bytes(TAG_BYTES, "little")
            deadline = time.monotonic() + CALL_TIMEOUT_S
            try:
                sock.send(tag + payload)
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    sock.settimeout(left)
                    try:
                        answer = sock.recv(65536)
                    except socket.timeout:
                        return False
                    if answer[:TAG_BYTES] != tag:
                        counts["stale_answers"] += 1
                        continue
                    if answer[TAG_BYTES:TAG_BYTES + 1] == ANSWER_OK and \
                            answer[TAG_BYTES + 1:] == payload:
                        return True
                    counts["failed_answers"] += 1
                    return False
            except OSError:
                counts["send_errors"] += 1
                time.sleep(min(0.01, max(0.0, deadline - time.monotonic())))  # no hot loop
                return False

        result = _paced(call, duration_s, rate)
    finally:
        sock.close()
    result.update(counts)            # "timeouts" counts every call without a sample
    return result


def _run_probe(node, msg_size: int, limit_s: float) -> Dict[str, Any]:
    """Submit a command every few ms until one commits; report when (monotonic seconds)."""
    from pysyncobj import FAIL_REASON
    payload = b"p" * msg_size
    committed = threading.Event()
    first: List[float] = []
    lock = threading.Lock()

    def on_done(result, error):
        if error == FAIL_REASON.SUCCESS:
            with lock:
                if not first:
                    first.append(time.monotonic())
            committed.set()

    deadline = time.monotonic() + limit_s
    attempts = 0
    while not committed.is_set() and time.monotonic() < deadline:
        node.apply_command(payload, callback=on_done)
        attempts += 1
        committed.wait(FAILOVER_PROBE_INTERVAL_S)
    return {"committed_at": first[0] if first else None, "attempts": attempts}


def _status(node) -> Dict[str, Any]:
    status = node.getStatus()
    leader = status.get("leader")
    return {"state": int(status["state"]), "leader": str(leader.id) if leader is not None else None,
            "ready": bool(node.isReady()), "self": str(status["self"].id),
            "commit_idx": status["commit_idx"]}


def node_main(self_addr: str, partners: List[str], mode: str) -> None:
    _die_with_parent()
    node = _make_node(self_addr, partners, mode)
    out = sys.stdout

    def reply(obj: Dict[str, Any]) -> None:
        out.write(json.dumps(obj) + "\n")
        out.flush()

    for line in sys.stdin:                          # EOF: the parent is gone
        try:
            cmd = json.loads(line)
            kind = cmd["cmd"]
            if kind == "status":
                reply(_status(node))
            elif kind == "throughput":
                reply(_run_throughput(node, cmd["duration_s"], cmd["msg_size"]))
            elif kind == "latency":
                reply(_run_latency(node, cmd["duration_s"], cmd["msg_size"], cmd["rate"]))
            elif kind == "serve_udp":
                reply(_serve_udp(node))
            elif kind == "frontend_counts":
                reply(_frontend_counts())
            elif kind == "probe":
                reply(_run_probe(node, cmd["msg_size"], cmd["limit_s"]))
            elif kind == "quit":
                break
            else:
                reply({"error": f"unknown command {kind!r}"})
        except Exception as exc:                    # report, keep serving
            reply({"error": f"{type(exc).__name__}: {exc}"})
    os._exit(0)


# ----------------------------------------------------------------------------------------
# parent: start, drive and always clean up the three children

_LIVE_CHILDREN: List[subprocess.Popen] = []


def _kill_all_children() -> None:
    for proc in list(_LIVE_CHILDREN):
        if proc.poll() is None:
            try:
                proc.kill()
            except OSError:
                pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        if proc in _LIVE_CHILDREN:
            _LIVE_CHILDREN.remove(proc)


atexit.register(_kill_all_children)


def _free_ports(n: int) -> List[int]:
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


class _Child:
    """One node process and a reader thread that turns its stdout lines into a queue."""

    def __init__(self, addr: str, partners: List[str], mode: str) -> None:
        self.addr = addr
        env = dict(os.environ,
                   PYTHONPATH=PACKAGE_PARENT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen(
            NODE_COMMAND + ["--node", addr, "--partners", ",".join(partners), "--mode", mode],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, bufsize=1, env=env, start_new_session=True)
        _LIVE_CHILDREN.append(self.proc)
        self.replies: "queue.Queue[Optional[Dict[str, Any]]]" = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                self.replies.put(json.loads(line))
            except ValueError:
                continue
        self.replies.put(None)

    def ask(self, cmd: Dict[str, Any], timeout_s: float) -> Dict[str, Any]:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        try:
            reply = self.replies.get(timeout=timeout_s)
        except queue.Empty:
            raise TimeoutError(f"node {self.addr} did not answer {cmd['cmd']} in {timeout_s:.0f} s")
        if reply is None:
            raise RuntimeError(f"node {self.addr} exited (code {self.proc.poll()})")
        if "error" in reply:
            raise RuntimeError(f"node {self.addr}: {reply['error']}")
        return reply

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=5)


def _start_cluster(mode: str) -> List[_Child]:
    addrs = [f"127.0.0.1:{port}" for port in _free_ports(3)]
    return [_Child(addr, [a for a in addrs if a != addr], mode) for addr in addrs]


def _wait_for_leader(children: List[_Child], timeout_s: float = LEADER_WAIT_S) -> _Child:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        statuses = [c.ask({"cmd": "status"}, 5.0) for c in children]
        leaders = [c for c, s in zip(children, statuses) if s["state"] == 2 and s["ready"]]
        if len(leaders) == 1 and all(s["leader"] == leaders[0].addr for s in statuses):
            return leaders[0]
        time.sleep(0.05)
    raise TimeoutError(f"no PySyncObj leader elected within {timeout_s} s")


def _pysyncobj_version() -> str:
    try:
        from pysyncobj.version import VERSION
        return VERSION
    except ImportError:
        return "unknown"


def run(mode: str, duration_s: float, msg_size: int, rate: Optional[float] = None) -> Dict[str, Any]:
    """Run one mode on a fresh 3-process cluster and return its figures (a JSON-safe dict)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if msg_size <= 0 or duration_s <= 0:
        raise ValueError("msg_size and duration_s must be positive")
    from aeronpy.testing.histogram import Histogram
    result: Dict[str, Any] = {"system": "pysyncobj", "version": _pysyncobj_version(),
                              "mode": mode, "msg_size": msg_size, "nodes": 3}
    children = _start_cluster(mode)
    try:
        leader = _wait_for_leader(children)
        timeout = duration_s + REPLY_SLACK_S
        if mode == "throughput":
            result["settings"] = "batched (appendEntriesUseBatch=True, default), async callbacks"
            result.update(leader.ask({"cmd": "throughput", "duration_s": duration_s,
                                      "msg_size": msg_size}, timeout))
        elif mode in LATENCY_MODES:
            rate = rate or 10_000.0
            if mode == "latency":
                result["settings"] = "unbatched (appendEntriesUseBatch=False), sync one at a time"
                reply = leader.ask({"cmd": "latency", "duration_s": duration_s,
                                    "msg_size": msg_size, "rate": rate}, timeout)
            else:
                result["settings"] = ("unbatched (appendEntriesUseBatch=False), one at a time "
                                      "from a client process over UDP")
                port = leader.ask({"cmd": "serve_udp"}, 5.0)["port"]
                time.sleep(0.1)        # the registration takes effect at the tick's next poll
                reply = _run_client_latency(port, duration_s, msg_size, rate)
                reply["frontend"] = leader.ask({"cmd": "frontend_counts"}, 5.0)
            hist = Histogram.from_dict(reply.pop("histogram"))
            corrected = Histogram.from_dict(reply.pop("corrected"))
            result.update(reply)
            result["latency"] = hist.summary_us()
            result["corrected_latency"] = corrected.summary_us()
            result["histogram"] = hist.to_dict()          # for plots (aeronpy bench --plots)
        else:
            result["settings"] = "defaults (raftMinTimeout=0.4 s, raftMaxTimeout=1.4 s)"
            leader.ask({"cmd": "probe", "msg_size": msg_size, "limit_s": 5.0}, 10.0)  # warm
            survivors = [c for c in children if c is not leader]
            killed_at = time.monotonic()
            leader.kill9()
            for child in survivors:               # both probe at once; the first commit counts
                child.proc.stdin.write(json.dumps({"cmd": "probe", "msg_size": msg_size,
                                                   "limit_s": FAILOVER_LIMIT_S}) + "\n")
                child.proc.stdin.flush()
            commits = []
            for child in survivors:
                reply = child.replies.get(timeout=FAILOVER_LIMIT_S + REPLY_SLACK_S)
                if reply and reply.get("committed_at") is not None:
                    commits.append(reply["committed_at"])
            result["failover_gap_ms"] = round((min(commits) - killed_at) * 1e3, 1) if commits else None
    finally:
        for child in children:
            if child.proc.poll() is None:
                try:
                    child.proc.stdin.close()
                except OSError:
                    pass
        _kill_all_children()
    return result


def _format(result: Dict[str, Any]) -> str:
    head = f"pysyncobj {result['mode']:<10} {result['msg_size']:>4} B  "
    if result["mode"] == "throughput":
        return head + f"{result['msgs_per_s']:>10,.0f} msgs/s   [{result['settings']}]"
    if result["mode"] in LATENCY_MODES:
        lat = result["latency"]
        return head + (f"p50 {lat['p50_us']} us  p90 {lat['p90_us']}  p99 {lat['p99_us']}  "
                       f"p99.9 {lat['p99_9_us']}  max {lat['max_us']}  at "
                       f"{result['achieved_rate']:,.0f}/s of {result['offered_rate']:,.0f}/s offered "
                       f"[{result['settings']}]")
    return head + f"failover gap {result['failover_gap_ms']} ms   [{result['settings']}]"


def main(argv: Optional[List[str]] = None) -> int:
    # run with -m (sys.argv[0] is this file): say so; the bench/ script wrapper keeps its name
    prog = ("python -m aeronpy.testing.pysyncobj_harness"
            if os.path.basename(sys.argv[0]) == os.path.basename(__file__) else None)
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=MODES + ("all",), default="all")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--sizes", default="32,256", help="command payload sizes in bytes")
    parser.add_argument("--rate", type=float, default=10_000.0, help="offered rate in latency mode")
    parser.add_argument("--quick", action="store_true", help="1 s per mode, 32-byte commands only")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("--node", help=argparse.SUPPRESS)
    parser.add_argument("--partners", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.node:
        node_main(args.node, args.partners.split(","), args.mode)
        return 0
    try:
        import pysyncobj  # noqa: F401
    except ImportError:
        print("pysyncobj is not installed: pip install pysyncobj==0.3.17 (or aeronpy[bench])",
              file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)   # even if started with it ignored
    duration = 1.0 if args.quick else args.duration
    sizes = [32] if args.quick else [int(s) for s in args.sizes.split(",")]
    modes = MODES if args.mode == "all" else (args.mode,)
    results = []
    try:
        for size in sizes:
            for mode in modes:
                if mode == "failover" and size != sizes[0]:
                    continue                       # the gap does not depend on the payload
                result = run(mode, duration, size,
                             args.rate if mode in LATENCY_MODES else None)
                results.append(result)
                if not args.json:
                    print(_format(result), flush=True)
    except KeyboardInterrupt:
        print("interrupted: child processes killed", file=sys.stderr)
        return 130
    finally:
        _kill_all_children()
    if args.json:
        print(json.dumps({"results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
