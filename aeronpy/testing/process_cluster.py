"""Real multi-process clusters on loopback, for process tests, the demo and the benchmark.

``ProcessCluster`` writes a cluster.toml with free UDP ports on 127.0.0.1, starts one
``python -m aeronpy node`` child per member, and can kill (SIGKILL), terminate (SIGTERM) and
restart members. Children run in their own session (a Ctrl-C in a terminal does not reach
them), so this module reaps them itself (killed with SIGKILL, the cluster's own temporary
directory removed):

- on ``close()`` (and at the end of a ``with`` block);
- when the ``ProcessCluster`` object is garbage-collected without ``close()``, and at a normal
  interpreter exit (``sys.exit``, an uncaught exception, ``KeyboardInterrupt``/Ctrl-C), whether
  or not the object is still referenced (a ``weakref.finalize`` owns the child handles);
- on SIGTERM of the parent. When a cluster starts members from the main thread and the
  SIGTERM disposition is still the default (``SIG_DFL``, as under pytest), a handler is
  installed that reaps every cluster and then dies of SIGTERM as the default would (exit status
  143 in a shell, no Python clean-up). A handler the application installed itself (or
  ``SIG_IGN``) is left alone: if it exits through ``sys.exit``/``SystemExit``, the interpreter
  exit above reaps the children; one that ends the process with ``os._exit`` should call
  :func:`reap_all` first. :func:`install_signal_cleanup` installs a handler that reaps and
  raises ``SystemExit(143)`` instead, replacing whatever was there.

Not covered: SIGKILL of the parent, or ``os._exit`` without :func:`reap_all`. Nothing can run
then, and the nodes do not watch their parent, so they keep running (kill them by pid; the
pids are in ``pc.procs``).

A member that exits on its own (its port was taken, its service module does not import) is
noticed by :meth:`ProcessCluster.check_running`, which raises :class:`MemberExitedError` with
its exit code and log tail; :meth:`ProcessCluster.leader` returns ``None`` at once when no
member it considers is running.
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
import threading
import time
import weakref
from typing import Callable, Dict, Iterable, List, Optional, Sequence

from aeronpy.endpoints import format_endpoint, resolve
from aeronpy.testing.waits import wait_until

class _LiveClusters(weakref.WeakSet):
    """The clusters reaped at exit and on SIGTERM. ``discard(cluster)`` also disarms the
    cluster's finalizer: its children are then left running at exit (``aeronpy demo --keep``)."""

    def discard(self, item) -> None:
        finalizer = getattr(item, "_finalizer", None)
        if finalizer is not None:
            finalizer.detach()
        super().discard(item)


_LIVE: "weakref.WeakSet[ProcessCluster]" = _LiveClusters()


def _kill_children(procs: Dict[int, subprocess.Popen], logs: Dict[int, object],
                   remove_dir: Optional[str]) -> None:
    """SIGKILL every running child (its whole session) and wait for it (bounded), close the
    log files and remove the cluster's own directory. Holds no reference to the cluster, so it
    can run from ``weakref.finalize`` once the cluster object is gone."""
    for proc in list(procs.values()):
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                try:
                    proc.kill()
                except OSError:
                    pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
    procs.clear()
    for log in list(logs.values()):
        try:
            log.close()
        except Exception:
            pass
    logs.clear()
    if remove_dir is not None:
        shutil.rmtree(remove_dir, ignore_errors=True)


def reap_all() -> None:
    """Close every cluster of this process that is still running (see the module docstring):
    for a SIGTERM handler of your own that ends the process without ``sys.exit``."""
    for cluster in list(_LIVE):
        cluster.close()


_reap_all = reap_all       # the historical name
atexit.register(reap_all)


class MemberExitedError(RuntimeError):
    """A member that was started, and not stopped through ``kill()``/``close()``, has exited
    (or did not come up in time); the message has its exit code and log tail."""

    def __init__(self, message: str, exited: Dict[int, Optional[int]]):
        super().__init__(message)
        self.exited = exited           # member -> exit code (None: still running, not up)


def ipv6_loopback_available() -> bool:
    """True when this machine can bind ``::1`` (an IPv6 cluster's tests need it)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def _port_range() -> tuple:
    """Where free_udp_ports draws from: 20000 up to the kernel's ephemeral ports (Linux's
    ip_local_port_range; 60000 where it cannot be read or leaves too few). A member killed and
    restarted binds its port again; in the ephemeral range any socket bound to port 0 (a
    client's, this machine's other tests') could take it meanwhile, and the restart failed
    with "already in use" (a slow-disk soak beside other work, 2026-11-29)."""
    low, high = 20000, 60000
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral_low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return low, high
    return (low, ephemeral_low) if ephemeral_low - low >= 2000 else (low, high)


def free_udp_ports(count: int, host: str = "127.0.0.1") -> List[int]:
    """Ports that were free for UDP (and TCP, for admin/metrics) a moment ago, all distinct,
    on ``host`` (an IPv4 or IPv6 address), below the kernel's ephemeral ports (_port_range)."""
    family, host = resolve(host)
    ports: List[int] = []
    rng = random.Random()
    low, high = _port_range()
    deadline = time.monotonic() + 10.0
    while len(ports) < count:
        if time.monotonic() > deadline:
            raise RuntimeError("could not find free ports on loopback")
        port = rng.randrange(low, high)
        if port in ports:
            continue
        ok = True
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            s = socket.socket(family, kind)
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


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    """``sig`` to a member's process group (each member starts a session of its own), so a
    ``wrap_command`` that forks (``sh -c``, ``timeout``) does not leave the node itself out."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def _service_specs(services: Sequence[str]) -> List[str]:
    """``services`` checked: ``module:ClassName`` strings, as ``aeronpy node --service`` takes,
    in a list (a lone string would be split into characters; a class object cannot be passed
    to a child process)."""
    if isinstance(services, (str, bytes)) or not hasattr(services, "__iter__"):
        raise TypeError(f"services: got {type(services).__name__} {services!r:.80}, expected a "
                        "list of 'module:ClassName' strings, e.g. services=['mypkg.svc:MyService']")
    specs = list(services)
    if not specs:
        raise ValueError("services: a node hosts at least one service")
    for i, spec in enumerate(specs):
        if isinstance(spec, type):
            raise TypeError(f"services[{i}] is the class {spec.__qualname__}: each member is its "
                            f"own process, so name it: '{spec.__module__}:{spec.__qualname__}'")
        if not isinstance(spec, str):
            raise TypeError(f"services[{i}] is {type(spec).__name__} {spec!r:.80}: expected a "
                            "'module:ClassName' string")
        module_name, sep, attr = spec.partition(":")
        if not sep or not module_name or not attr:
            raise ValueError(f"services[{i}] is {spec!r}: expected 'module:ClassName', e.g. "
                             "'mypkg.svc:MyService'")
    return specs


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
        ports: Optional[Sequence[Dict[str, int]]] = None,
    ):
        """``hosts`` gives each member its own address (default: ``host`` for all);
        ``wrap_command(member, argv)`` may prefix a child's command line (for example with
        ``ip netns exec NS``); ``ports``: each member's ``consensus_port``, ``ingress_port``
        and ``admin_port`` (default: free ports picked at random)."""
        self.members = members
        self.services = _service_specs(services)      # before any port or directory is taken
        if hosts is not None and len(hosts) != members:
            raise ValueError(f"hosts: {len(hosts)} addresses for {members} members")
        if ports is not None and len(ports) != members:
            raise ValueError(f"ports: {len(ports)} entries for {members} members")
        self._own_dir = base_dir is None
        self.base_dir = os.path.abspath(base_dir or tempfile.mkdtemp(prefix="aeronpy-cluster-"))
        self.host = host
        self.hosts = list(hosts) if hosts is not None else [host] * members
        self.wrap_command = wrap_command
        self.cluster_id = cluster_id
        self.extra_config = dict(config or {})
        if ports is not None:
            self.member_ports = [{key: int(p[key]) for key in ("consensus_port", "ingress_port",
                                                               "admin_port")} for p in ports]
        else:
            free = free_udp_ports(3 * members, host)
            self.member_ports = [
                {"consensus_port": free[3 * i], "ingress_port": free[3 * i + 1],
                 "admin_port": free[3 * i + 2]}
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
        self._stopped: set = set()                # members stopped on purpose (kill())
        self._reported: set = set()               # exits check_running() has reported
        self._paused: set = set()                 # members stopped by pause()
        self._spawned_ns: Dict[int, int] = {}     # member -> wall clock when last started
        self._finalizer: Optional[weakref.finalize] = None
        self.config_path = os.path.join(self.base_dir, "cluster.toml")
        self._write_config()
        self._arm()

    def _arm(self) -> None:
        """Register for reaping at exit/SIGTERM, with a finalizer that owns the child handles
        (so they are killed even if this object is collected without ``close()``)."""
        if self._finalizer is None or not self._finalizer.alive:
            self._finalizer = weakref.finalize(self, _kill_children, self.procs, self._logs,
                                               self.base_dir if self._own_dir else None)
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
        return ",".join(format_endpoint(h, p["ingress_port"]) for h, p in zip(self.hosts, self.member_ports))

    # -- process control -----------------------------------------------------------------------
    def start(self, members: Optional[Iterable[int]] = None) -> "ProcessCluster":
        """Start every member (or ``members``) and return at once: a member that cannot start
        exits a moment later, which :meth:`check_running` reports."""
        for i in range(self.members) if members is None else members:
            self.start_member(i)
        return self

    def start_member(self, member: int) -> subprocess.Popen:
        proc = self.procs.get(member)
        if proc is not None and proc.poll() is None:
            raise RuntimeError(f"member {member} is already running (pid {proc.pid})")
        self._arm()
        _install_default_sigterm_cleanup()
        cmd = [sys.executable, "-m", "aeronpy", "node", "--config", self.config_path,
               "--member-id", str(member), "--data-dir", self.data_dir(member)]
        for service in self.services:
            cmd += ["--service", service]
        if self.wrap_command is not None:
            cmd = self.wrap_command(member, cmd)
        log = open(self.log_path(member), "ab")
        self._logs[member] = log
        self._spawned_ns[member] = time.time_ns()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                cwd=self.base_dir, stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs[member] = proc
        self._stopped.discard(member)
        self._reported.discard(member)
        self._paused.discard(member)
        return proc

    def kill(self, member: int, sig: int = signal.SIGKILL, wait_s: float = 10.0) -> Optional[int]:
        """Send ``sig`` to a member and wait (bounded) for it to exit; returns its exit code.
        The member counts as stopped on purpose: :meth:`check_running` ignores it until it is
        started again. A member that had already exited by itself is marked so only once
        :meth:`check_running` has reported it: else its exit code is returned and
        :meth:`check_running` still reports it (a crash is not hidden by a later kill)."""
        proc = self.procs.get(member)
        was_paused = member in self._paused
        self._paused.discard(member)
        if proc is None or proc.poll() is not None:
            if proc is not None and member in self._reported:
                self._stopped.add(member)       # reported already: the kill acknowledges it
            return None if proc is None else proc.returncode
        self._stopped.add(member)
        proc.send_signal(sig)
        if was_paused:                            # a stopped process acts on SIGTERM only once let go
            _signal_group(proc, signal.SIGCONT)
        try:
            return proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(timeout=5)

    def pause(self, member: int) -> None:
        """Stop a member's process where it is (SIGSTOP), as a long GC pause or a stalled VM
        would: its peers time it out and elect without it. :meth:`resume` lets it go on."""
        proc = self.procs.get(member)
        if proc is None or proc.poll() is not None:
            raise RuntimeError(f"member {member} is not running")
        _signal_group(proc, signal.SIGSTOP)
        self._paused.add(member)

    def resume(self, member: int) -> None:
        """Let a :meth:`pause`-d member run again (SIGCONT)."""
        proc = self.procs.get(member)
        self._paused.discard(member)
        if proc is not None and proc.poll() is None:
            _signal_group(proc, signal.SIGCONT)

    def wait_settled(self, timeout_s: float = 30.0, interval_s: float = 0.1) -> int:
        """Wait until every member is running, not paused, and all report one commit index,
        equal to their append index, twice in a row; returns that index. Raises
        :class:`TimeoutError` naming each member's indexes when they do not settle in time."""
        deadline = time.monotonic() + timeout_s
        last = None
        while True:
            now = []
            for m in range(self.members):
                c = self.read_counters(m) if self.alive(m) and m not in self._paused else None
                now.append(None if c is None else (c.get("commit_index"), c.get("append_index")))
            if (now == last and None not in now and len(set(now)) == 1
                    and now[0][0] is not None and now[0][0] == now[0][1]):
                return now[0][0]
            if time.monotonic() >= deadline:
                raise TimeoutError(f"members not settled within {timeout_s:g} s: (commit, append) "
                                   f"per member {now} (None: not running, paused or unreadable)")
            last = now
            time.sleep(interval_s)

    def alive(self, member: int) -> bool:
        proc = self.procs.get(member)
        return proc is not None and proc.poll() is None

    def read_counters(self, member: int) -> Optional[Dict[str, int]]:
        """The member's live counters (see aeronpy.cluster.counters), or None if unreadable."""
        from aeronpy.cluster.counters import CountersReader

        try:
            return CountersReader(self.data_dir(member)).read()
        except Exception:
            return None

    def check_running(self, wait_up_s: float = 0.0) -> None:
        """Raise :class:`MemberExitedError` if a started member has exited, other than through
        :meth:`kill` or :meth:`close` (its port was taken, its service did not import, it
        crashed); the message has each such member's exit code and last log lines.

        With ``wait_up_s`` > 0, also wait up to that long for every running member to be up
        (its counters file written by this run of it, which a node does after binding its
        ports), and raise if one exits meanwhile or is still not up. Call it after
        :meth:`leader` when a test or benchmark needs every member, since ``leader()`` is
        satisfied by a majority."""
        deadline = time.monotonic() + max(0.0, wait_up_s)
        while True:
            exited = {m: p.returncode for m, p in sorted(self.procs.items())
                      if m not in self._stopped and p.poll() is not None}
            if exited:
                self._reported.update(exited)
                raise MemberExitedError(self._exited_message(exited, "exited"), exited)
            if wait_up_s <= 0:
                return
            not_up = [m for m, p in sorted(self.procs.items())
                      if m not in self._stopped and not self._is_up(m)]
            if not not_up:
                return
            if time.monotonic() >= deadline:
                pending = {m: None for m in not_up}
                raise MemberExitedError(self._exited_message(
                    pending, f"still running but not up after {wait_up_s:g} s"), pending)
            time.sleep(0.02)

    def _is_up(self, member: int) -> bool:
        from aeronpy.cluster.counters import CountersReader

        try:
            reader = CountersReader(self.data_dir(member))
        except Exception:
            return False
        try:
            # this run's counters file: its pid is the one spawned (a wrapper that execs keeps
            # it), or it started after the spawn (a wrapper that forks; a member whose clock is
            # behind this process's fails that test, and needs a wrapper that execs)
            header, proc = reader.header, self.procs.get(member)
            return (proc is not None and header.pid == proc.pid) or \
                header.start_time_ns >= self._spawned_ns.get(member, 0)
        except Exception:
            return False
        finally:
            try:
                reader.close()
            except Exception:
                pass

    def _exited_message(self, members: Dict[int, Optional[int]], what: str) -> str:
        parts = []
        for member, code in members.items():
            status = "" if code is None else (f" (killed by signal {-code})" if code < 0
                                              else f" (exit code {code})")
            parts.append(f"member {member} {what}{status}; last lines of "
                         f"{self.log_path(member)}:\n{self.tail_log(member, 15)}")
        return "\n".join(parts)

    def leader(self, timeout_s: float = 10.0, exclude: Iterable[int] = (), min_term: int = 0,
               interval_s: float = 0.01) -> Optional[int]:
        """The live member whose counters say it leads in the highest term (at least
        ``min_term``), waiting up to timeout_s. Members that are not running (never started,
        killed, or exited on their own) are skipped; when none of the members considered
        (those not in ``exclude``) is running, it returns ``None`` at once. A leader needs only
        a majority, so use :meth:`check_running` to know that every member is running."""
        excluded = set(exclude)
        deadline = time.monotonic() + timeout_s
        while True:
            best = None
            running = False
            for i in range(self.members):
                if i in excluded or not self.alive(i):
                    continue
                running = True
                c = self.read_counters(i)
                if (c and c.get("role") == 2 and c["leadership_term"] >= min_term
                        and (best is None or c["leadership_term"] > best[0])):
                    best = (c["leadership_term"], i)
            if best is not None:
                return best[1]
            if not running or time.monotonic() >= deadline:
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
        """Kill every member (SIGKILL) and remove the cluster's own temporary directory (not a
        ``base_dir`` given to the constructor, nor anything when ``remove`` is false)."""
        _kill_children(self.procs, self._logs,
                       self.base_dir if remove and self._own_dir else None)
        self._stopped.clear()
        self._paused.clear()
        _LIVE.discard(self)

    def __enter__(self) -> "ProcessCluster":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _on_sigterm(signum, frame):
    reap_all()
    raise SystemExit(128 + signum)


def _on_sigterm_then_default(signum, frame):
    """Installed in place of ``SIG_DFL``: reap, then die of the signal as the default would."""
    reap_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_default_sigterm_cleanup() -> None:
    """Install :func:`_on_sigterm_then_default` if SIGTERM still has the default disposition
    and this is the main thread (only it may set handlers); never replace another handler."""
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm_then_default)
    except (ValueError, OSError):     # no signals here (an embedded interpreter)
        pass


def install_signal_cleanup() -> None:
    """Reap every child cluster on SIGTERM, then raise ``SystemExit(143)`` in the main thread
    (SIGINT already raises KeyboardInterrupt). Replaces any SIGTERM handler; without it, the
    first cluster started installs a reap-then-die handler if SIGTERM has the default one."""
    signal.signal(signal.SIGTERM, _on_sigterm)
