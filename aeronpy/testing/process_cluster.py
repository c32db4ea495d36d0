"""Real multi-process clusters on loopback, for process tests, the demo and the benchmark.

``ProcessCluster`` writes a cluster.toml with free UDP ports on 127.0.0.1, starts one
``python -m aeronpy node`` child per member, and can kill (SIGKILL), terminate (SIGTERM) and
restart members. Every child is reaped on ``close()``, on interpreter exit and on SIGTERM of
the parent, so a failed test or a Ctrl-C never leaves nodes running.
"""
from __future__ import annotations

import atexit
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from typing import Callable, Dict, Iterable, List, Optional, Sequence

from aeronpy.testing.waits import wait_until

_LIVE: "weakref.WeakSet[ProcessCluster]" = weakref.WeakSet()


def _reap_all() -> None:
    for cluster in list(_LIVE):
        cluster.close()


atexit.register(_reap_all)


def free_udp_ports(count: int, host: str = "127.0.0.1") -> List[int]:
    """Ports that were free for UDP (and TCP, for admin/metrics) a moment ago, all distinct."""
    ports: List[int] = []
    rng = random.Random()
    deadline = time.monotonic() + 10.0
    while len(ports) < count:
        if time.monotonic() > deadline:
            raise RuntimeError("could not find free ports on loopback")
        port = rng.randrange(20000, 60000)
        if port in ports:
            continue
        ok = True
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            s = socket.socket(socket.AF_INET, kind)
            try:
                s.bind((host, port))
            except OSError:
                ok = False
            finally:
                s.close()
        if ok:
            ports.append(port)
    return ports


def package_parent() -> str:
    """The directory that contains the ``aeronpy`` package this process imported: the
    checkout of a development tree (compiled in place), or site-packages of an installed wheel.

    A child Python must import the same aeronpy: the source tree's ``aeronpy/`` has no compiled
    modules when the package is installed, so a child that finds it first fails to import."""
    import aeronpy

    return os.path.dirname(os.path.dirname(os.path.abspath(aeronpy.__file__)))


def child_pythonpath(*extra: str) -> str:
    """A PYTHONPATH under which a child Python imports the same aeronpy as this process:
    :func:`package_parent` first, then ``extra`` (say a test's own helper directory), then this
    process's PYTHONPATH; no entry twice.

    ``python -c`` and ``python -m`` put their working directory before PYTHONPATH, so run such a
    child in a directory without an ``aeronpy/`` in it (not the repository root)."""
    entries = [package_parent(), *extra, *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    seen: List[str] = []
    for entry in entries:
        if entry and entry not in seen:
            seen.append(entry)
    return os.pathsep.join(seen)


def child_env(*extra_paths: str, **overrides: str) -> Dict[str, str]:
    """``os.environ`` for a child Python, with :func:`child_pythonpath` (``extra_paths``) as
    its PYTHONPATH and ``overrides`` on top."""
    env = dict(os.environ)
    env["PYTHONPATH"] = child_pythonpath(*extra_paths)
    env.update(overrides)
    return env


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


class ProcessCluster:
    """A cluster of real node processes on 127.0.0.1."""

    def __init__(
        self,
        members: int = 3,
        services: Sequence[str] = ("aeronpy.examples.matching_engine:MatchingEngine",),
        base_dir: Optional[str] = None,
        config: Optional[Dict[str, object]] = None,
        cluster_id: int = 7,
        env: Optional[Dict[str, str]] = None,
        host: str = "127.0.0.1",
        hosts: Optional[Sequence[str]] = None,
        wrap_command: Optional[Callable[[int, List[str]], List[str]]] = None,
    ):
        """``hosts`` gives each member its own address (default: ``host`` for all);
        ``wrap_command(member, argv)`` may prefix a child's command line (for example with
        ``ip netns exec NS``)."""
        self.members = members
        self.services = list(services)
        self._own_dir = base_dir is None
        self.base_dir = os.path.abspath(base_dir or tempfile.mkdtemp(prefix="aeronpy-cluster-"))
        self.host = host
        self.hosts = list(hosts) if hosts is not None else [host] * members
        if len(self.hosts) != members:
            raise ValueError(f"hosts: {len(self.hosts)} addresses for {members} members")
        self.wrap_command = wrap_command
        self.cluster_id = cluster_id
        self.extra_config = dict(config or {})
        ports = free_udp_ports(3 * members, host)
        self.member_ports = [
            {"consensus_port": ports[3 * i], "ingress_port": ports[3 * i + 1], "admin_port": ports[3 * i + 2]}
            for i in range(members)
        ]
        # Children run in base_dir (never the source tree, whose aeronpy lacks the compiled
        # modules when the package is installed) and import the same aeronpy as this process:
        # a PYTHONPATH in ``env`` adds its directories after that aeronpy's, never before.
        env = dict(env or {})
        extra = env.pop("PYTHONPATH", "")
        self.env = child_env(*extra.split(os.pathsep), **env)
        self.procs: Dict[int, subprocess.Popen] = {}
        self._logs: Dict[int, object] = {}
        self.config_path = os.path.join(self.base_dir, "cluster.toml")
        self._write_config()
        _LIVE.add(self)

    # -- configuration -------------------------------------------------------------------------
    def _write_config(self) -> None:
        lines = [f"cluster_id = {self.cluster_id}"]
        for key, value in self.extra_config.items():
            lines.append(f"{key} = {_toml_value(value)}")
        for i, ports in enumerate(self.member_ports):
            lines += ["", "[[members]]", f"id = {i}", f'host = "{self.hosts[i]}"']
            lines += [f"{k} = {v}" for k, v in ports.items()]
        os.makedirs(self.base_dir, exist_ok=True)
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    def data_dir(self, member: int) -> str:
        return os.path.join(self.base_dir, f"node{member}")

    def log_path(self, member: int) -> str:
        return os.path.join(self.base_dir, f"node{member}.log")

    @property
    def ingress_endpoints(self) -> str:
        return ",".join(f"{h}:{p['ingress_port']}" for h, p in zip(self.hosts, self.member_ports))

    # -- process control -----------------------------------------------------------------------
    def start(self, members: Optional[Iterable[int]] = None) -> "ProcessCluster":
        for i in range(self.members) if members is None else members:
            self.start_member(i)
        return self

    def start_member(self, member: int) -> subprocess.Popen:
        proc = self.procs.get(member)
        if proc is not None and proc.poll() is None:
            raise RuntimeError(f"member {member} is already running (pid {proc.pid})")
        cmd = [sys.executable, "-m", "aeronpy", "node", "--config", self.config_path,
               "--member-id", str(member), "--data-dir", self.data_dir(member)]
        for service in self.services:
            cmd += ["--service", service]
        if self.wrap_command is not None:
            cmd = self.wrap_command(member, cmd)
        log = open(self.log_path(member), "ab")
        self._logs[member] = log
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                cwd=self.base_dir, stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs[member] = proc
        return proc

    def kill(self, member: int, sig: int = signal.SIGKILL, wait_s: float = 10.0) -> Optional[int]:
        """Send ``sig`` to a member and wait (bounded) for it to exit; returns its exit code."""
        proc = self.procs.get(member)
        if proc is None or proc.poll() is not None:
            return None if proc is None else proc.returncode
        proc.send_signal(sig)
        try:
            return proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(timeout=5)

    def alive(self, member: int) -> bool:
        proc = self.procs.get(member)
        return proc is not None and proc.poll() is None

    def read_counters(self, member: int) -> Optional[dict]:
        """The member's live counters (see aeronpy.cluster.counters), or None if unreadable."""
        from aeronpy.cluster.counters import CountersReader

        try:
            return CountersReader(self.data_dir(member)).read()
        except Exception:
            return None

    def leader(self, timeout_s: float = 10.0, exclude: Iterable[int] = (), min_term: int = 0,
               interval_s: float = 0.01) -> Optional[int]:
        """The live member whose counters say it leads in the highest term (at least
        ``min_term``), waiting up to timeout_s."""
        excluded = set(exclude)
        deadline = time.monotonic() + timeout_s
        while True:
            best = None
            for i in range(self.members):
                if i in excluded or not self.alive(i):
                    continue
                c = self.read_counters(i)
                if (c and c.get("role") == 2 and c["leadership_term"] >= min_term
                        and (best is None or c["leadership_term"] > best[0])):
                    best = (c["leadership_term"], i)
            if best is not None:
                return best[1]
            if time.monotonic() >= deadline:
                return None
            time.sleep(interval_s)

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.01) -> bool:
        return wait_until(predicate, timeout_s, interval_s)

    def tail_log(self, member: int, lines: int = 40) -> str:
        try:
            with open(self.log_path(member), "rb") as f:
                return b"\n".join(f.read().splitlines()[-lines:]).decode(errors="replace")
        except OSError:
            return ""

    def close(self, remove: bool = True) -> None:
        for member, proc in list(self.procs.items()):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    proc.kill()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        self.procs.clear()
        for log in self._logs.values():
            log.close()
        self._logs.clear()
        if remove and self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)
        _LIVE.discard(self)

    def __enter__(self) -> "ProcessCluster":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _on_sigterm(signum, frame):  # pragma: no cover - exercised by the demo's Ctrl-C handling
    _reap_all()
    raise SystemExit(128 + signum)


def install_signal_cleanup() -> None:
    """Reap every child cluster on SIGTERM (SIGINT already raises KeyboardInterrupt)."""
    signal.signal(signal.SIGTERM, _on_sigterm)
