"""A 3-process cluster whose members run under the clock shim, each with its own offset file,
and the driver's clients (in this process, on the true clock): clients ping every 250 ms and
every reply's cluster time is recorded with the host's monotonic clock at its arrival."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Dict, List, Optional

import aeronpy
from aeronpy.cluster.counters import CountersReader
from aeronpy.testing.process_cluster import ProcessCluster, child_env

from clock_trial import checks, plan, probe, shim
from loss_trial import harness

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEMBERS = 3
SERVICE = "clock_trial.probe:ClockProbe"
POLL_SLEEP_S = 0.005
LOG_PROBLEM_MARKS = ("Traceback", " ERROR ", "CRITICAL")


class Trial:
    def __init__(self, work_dir: str, base_port: int, lib: str) -> None:
        self.work_dir, self.lib = work_dir, lib
        self.out_dir = os.path.join(work_dir, "out")
        os.makedirs(self.out_dir)
        self.shift_files = {m: os.path.join(work_dir, f"member{m}.shift") for m in range(MEMBERS)}
        for path in self.shift_files.values():
            shim.write_shift(path, 0)
        self.pc = ProcessCluster(members=MEMBERS, services=[SERVICE], base_dir=os.path.join(work_dir, "cluster"),
                                 ports=harness.member_ports(base_port, MEMBERS),
                                 config={"session_timeout_ms": plan.SESSION_TIMEOUT_MS},
                                 env={"PYTHONPATH": BENCH_DIR, probe.OUT_ENV: self.out_dir},
                                 wrap_command=self._wrap)
        self.t0_mono = time.monotonic_ns()
        self.epoch_ns = time.time_ns() - self.t0_mono
        self.events: List[dict] = []
        self.clients: Dict[str, dict] = {}
        self._log_read: Dict[int, int] = {m: 0 for m in range(MEMBERS)}

    def _wrap(self, member: int, argv: List[str]) -> List[str]:
        return ["env", *shim.env_prefix(self.lib, self.shift_files[member]), *argv]

    def log(self, kind: str, **fields) -> dict:
        event = dict(fields, kind=kind, mono=time.monotonic_ns())
        self.events.append(event)
        return event

    def say(self, text: str) -> None:
        print(f"  [{(time.monotonic_ns() - self.t0_mono) / 1e9:6.2f}] {text}", flush=True)

    # -- members ---------------------------------------------------------------------------------
    def set_offset(self, member: int, offset_s: float, kind: str = "shift") -> None:
        shim.write_shift(self.shift_files[member], offset_s)
        self.log(kind, member=member, offset_s=offset_s)

    def start(self, member: int, offset_s: float = 0.0) -> None:
        self.set_offset(member, offset_s, kind="start")
        self.pc.start_member(member)

    def kill(self, member: int) -> None:
        self.pc.kill(member)
        self.log("kill", member=member)

    def wipe(self) -> None:
        """Kill every member and delete their data (a fresh cluster on the next start)."""
        for member in range(MEMBERS):
            self.pc.kill(member)
        for member in range(MEMBERS):
            subprocess.run(["rm", "-rf", self.pc.data_dir(member)], check=False)
        for name in os.listdir(self.out_dir):
            os.remove(os.path.join(self.out_dir, name))
        self.events.clear()

    def leader(self, timeout_s: float = 10.0, exclude=()) -> Optional[int]:
        return self.pc.leader(timeout_s=timeout_s, exclude=exclude)

    def tool(self, member: int, *args: str, timeout_s: float = 30.0) -> subprocess.CompletedProcess:
        """``aeronpy tool`` against ``member``, under that member's clock (as on its host: admin
        requests carry the sender's time, checked against the member's)."""
        env = child_env(BENCH_DIR, LD_PRELOAD=self.lib, **{shim.SHIFT_ENV: self.shift_files[member]})
        return subprocess.run([sys.executable, "-m", "aeronpy", "tool", *args, "--data-dir",
                               self.pc.data_dir(member)], capture_output=True, text=True, env=env,
                              timeout=timeout_s, cwd=self.work_dir)

    def ensure_leader(self, want: int, phase: str, timeout_s: float = 20.0) -> bool:
        """Transfer the leadership to ``want`` until it leads (keeping the clients served)."""
        deadline = time.monotonic() + timeout_s
        why = "no leader"
        for _ in range(20):
            if time.monotonic() >= deadline:
                break
            current = self.leader(timeout_s=3.0)
            if current == want:
                self.log("leader", member=want, phase=phase)
                return True
            if current is not None:
                done = self.tool(current, "transfer-leadership", "--to", str(want), "--timeout", "10")
                why = f"transfer from {current}: exit {done.returncode}: {(done.stdout + done.stderr).strip()[-200:]}"
            self.pump(0.5)
        self.log("leader", member=self.leader(timeout_s=1.0), phase=phase, why=why)
        return False

    def wait_caught_up(self, member: int, phase: str) -> bool:
        """Wait until the restarted ``member`` (its own counters, this run of it) has committed
        what the leader had committed when it started."""
        leader = self.leader(timeout_s=5.0, exclude=(member,))
        target = (self.pc.read_counters(leader) or {}).get("commit_index") if leader is not None else None
        started = time.monotonic()
        pid = self.pc.procs[member].pid
        while target is not None and time.monotonic() - started < plan.RECOVER_WITHIN_S:
            self.pump(0.1)
            try:
                reader = CountersReader(self.pc.data_dir(member))
                try:
                    if reader.header.pid == pid and reader.read().get("commit_index", -1) >= target:
                        self.log("caught_up", member=member, phase=phase, after_s=time.monotonic() - started)
                        return True
                finally:
                    reader.close()
            except Exception:
                pass
        return False

    def collect(self, phase: str, members=range(MEMBERS)) -> None:
        """Each running member's leader_clock_behind counter, and the WARNINGs and error lines its
        log gained since the last collect, as events of ``phase``."""
        for member in members:
            counters = self.pc.read_counters(member) if self.pc.alive(member) else None
            if counters is not None:
                self.log("counters", member=member, phase=phase,
                         leader_clock_behind=counters.get("leader_clock_behind"))
            try:
                with open(self.pc.log_path(member), errors="replace") as f:
                    f.seek(self._log_read[member])
                    text = f.read()
                    self._log_read[member] = f.tell()
            except OSError:
                continue
            for behind_s in checks.parse_warnings(text):
                self.log("warning", member=member, phase=phase, behind_s=behind_s)
            for line in text.splitlines():
                if any(mark in line for mark in LOG_PROBLEM_MARKS):
                    self.log("member_error", member=member, line=line.strip()[:300])

    # -- clients ---------------------------------------------------------------------------------
    def connect(self, name: str, active: bool = True) -> None:
        client = aeronpy.ClusterClient.connect(self.pc.ingress_endpoints, timeout_s=10.0)
        self.clients[name] = dict(client=client, active=active, polled=True, next_ping=time.monotonic(),
                                  closed=None)
        self.log("connect", client=name, session=client.session_id)

    def silence(self, name: str) -> None:
        """Stop polling this client at all: its session sends nothing, not even keepalives."""
        self.clients[name]["polled"] = False
        self.log("silence", client=name)

    def command(self, name: str, payload: bytes) -> None:
        cid = self.clients[name]["client"].offer(payload)
        self.log("command", client=name, payload=payload.decode(), cid=cid)

    def pump(self, seconds: float) -> None:
        """Poll every polled client, and ping with the active ones, for ``seconds``."""
        end = time.monotonic() + seconds
        for _ in range(int(seconds / POLL_SLEEP_S) + 10):
            now = time.monotonic()
            if now >= end:
                return
            for name, st in self.clients.items():
                if st["polled"] and st["closed"] is None:
                    self._poll(name, st, now)
            time.sleep(POLL_SLEEP_S)

    def _poll(self, name: str, st: dict, now: float) -> None:
        client = st["client"]

        def on_message(cid, payload, name=name, active=st["active"]):
            data = bytes(payload)
            if active and data.isdigit():
                self.log("reply", client=name, ts=int(data))

        try:
            client.poll_egress(on_message)
        except Exception as e:                       # a closed session: recorded once
            st["closed"] = repr(e)
            self.log("closed", client=name, why=repr(e)[:200])
            return
        if st["active"] and now >= st["next_ping"]:
            st["next_ping"] = now + plan.PING_INTERVAL_S
            if client.offer(b"ping") == aeronpy.CLOSED:
                st["closed"] = "offer returned CLOSED"
                self.log("closed", client=name, why=st["closed"])

    # -- the end ---------------------------------------------------------------------------------
    def records(self) -> List[dict]:
        found = []
        for name in sorted(os.listdir(self.out_dir)):
            if name.endswith(".jsonl"):
                with open(os.path.join(self.out_dir, name)) as f:
                    for line in f:
                        try:
                            found.append(json.loads(line))
                        except ValueError:
                            pass                     # a line torn by a SIGKILL
        return found

    def run_data(self) -> dict:
        return {"epoch_ns": self.epoch_ns, "t0_mono": self.t0_mono, "events": self.events,
                "records": self.records()}

    def close(self) -> None:
        self.log("closing")                           # sessions closed from here on are ours
        for st in self.clients.values():
            try:
                st["client"].close()
            except Exception:
                pass
        self.pc.close(remove=False)
