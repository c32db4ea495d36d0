"""``aeronpy.testing.process_cluster.ProcessCluster`` as a user's test harness: its children are
reaped on SIGTERM of the parent (A1) and when the object was dropped without ``close()`` (A2);
a member that cannot start is reported, not ignored (A3).

Every child process is started with a bounded wait and killed by pid at the end."""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from aeronpy.testing.process_cluster import MemberExitedError, ProcessCluster, child_env
from aeronpy.testing.waits import wait_until

ECHO = "aeronpy.testing.services:EchoService"


def _running(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def _kill_leftovers(pids, directory=None) -> None:
    for pid in pids:
        if _running(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    if directory:
        shutil.rmtree(directory, ignore_errors=True)


def _read_line(proc: subprocess.Popen, timeout_s: float) -> str:
    """The child's first stdout line, waiting at most timeout_s."""
    deadline = time.monotonic() + timeout_s
    buf = b""
    fd = proc.stdout.fileno()
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no line from the child within {timeout_s} s; got {buf!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                raise AssertionError(f"the child exited first (rc {proc.wait(5)}); "
                                     f"stderr: {proc.stderr.read()[-2000:]!r}")
            buf += chunk
    return buf.split(b"\n", 1)[0].decode()


def _assert_reaped(info: dict, what: str) -> None:
    """Every node the child reported (``info``) is gone within 10 s, and its directory too."""
    assert wait_until(lambda: not any(_running(pid) for pid in info["pids"]), 10), \
        f"{what}: {info['pids']}"
    assert not os.path.exists(info["dir"])


def _end_child(child: subprocess.Popen, info: dict) -> None:
    """Test teardown: the child and anything it left behind are gone, whatever happened."""
    if child.poll() is None:
        child.kill()
        child.wait(timeout=10)
    _kill_leftovers(info["pids"], info["dir"])


def _sleeper(_member, _argv):
    """wrap_command: a stand-in child that just sleeps (cheap to start)."""
    return [sys.executable, "-c", "import time; time.sleep(120)"]


# -- A1: SIGTERM of the parent -----------------------------------------------------------------

SIGTERM_CHILD = textwrap.dedent(f"""
    import json, time
    from aeronpy.testing.process_cluster import ProcessCluster
    pc = ProcessCluster(services=[{ECHO!r}])
    pc.start()
    leader = pc.leader(timeout_s=60)
    print(json.dumps({{"leader": leader, "pids": [p.pid for p in pc.procs.values()],
                      "dir": pc.base_dir}}), flush=True)
    time.sleep(120)      # a hung test; CI or `timeout` sends SIGTERM
""")


@pytest.mark.process
def test_sigterm_of_the_parent_reaps_the_nodes(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", SIGTERM_CHILD], cwd=tmp_path, env=child_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    info = {"pids": [], "dir": None}
    try:
        info = json.loads(_read_line(child, 90))
        assert info["leader"] is not None and len(info["pids"]) == 3
        assert all(_running(pid) for pid in info["pids"])
        child.send_signal(signal.SIGTERM)
        rc = child.wait(timeout=30)
        # the default disposition's outcome is kept: the process dies of SIGTERM
        assert rc == -signal.SIGTERM, child.stderr.read()[-2000:]
        _assert_reaped(info, "nodes still running after the parent's SIGTERM")
    finally:
        _end_child(child, info)


def test_default_sigterm_gets_the_cleanup_handler_and_an_own_handler_is_kept(tmp_path):
    previous = signal.getsignal(signal.SIGTERM)
    clusters = []
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        pc = ProcessCluster(members=1, base_dir=str(tmp_path / "a"), wrap_command=_sleeper)
        clusters.append(pc)
        pc.start()
        installed = signal.getsignal(signal.SIGTERM)
        assert callable(installed) and installed not in (signal.SIG_DFL, signal.SIG_IGN)

        def own(signum, frame):
            pass
        signal.signal(signal.SIGTERM, own)
        pc2 = ProcessCluster(members=1, base_dir=str(tmp_path / "b"), wrap_command=_sleeper)
        clusters.append(pc2)
        pc2.start()
        assert signal.getsignal(signal.SIGTERM) is own       # never clobbered
    finally:
        for pc in clusters:
            pc.close()
        signal.signal(signal.SIGTERM, previous)


# -- A2: dropped without close() ---------------------------------------------------------------

DROPPED_CHILD = textwrap.dedent("""
    import gc, json, sys
    from aeronpy.testing.process_cluster import ProcessCluster

    def sleeper(member, argv):
        return [sys.executable, "-c", "import time; time.sleep(120)"]

    def helper():          # a fixture or helper that raised after start(), in effect
        pc = ProcessCluster(members=%d, wrap_command=sleeper)
        pc.start()
        return [p.pid for p in pc.procs.values()], pc.base_dir

    pids, directory = helper()
    gc.collect()
    print(json.dumps({"pids": pids, "dir": directory}), flush=True)
    %s
""")


@pytest.mark.parametrize("ending", ["pass", "raise SystemExit(3)"])
def test_a_dropped_cluster_is_reaped_by_interpreter_exit(tmp_path, ending):
    child = subprocess.Popen([sys.executable, "-c", DROPPED_CHILD % (3, ending)], cwd=tmp_path,
                             env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    info = {"pids": [], "dir": None}
    try:
        info = json.loads(_read_line(child, 60))
        assert len(info["pids"]) == 3
        child.wait(timeout=30)
        _assert_reaped(info, "children of a dropped ProcessCluster still running")
    finally:
        _end_child(child, info)


def test_discard_from_the_registry_keeps_the_children(tmp_path):
    """``aeronpy demo --keep`` takes its cluster out of the registry: no reaping then."""
    from aeronpy.testing.process_cluster import _LIVE

    pc = ProcessCluster(members=1, base_dir=str(tmp_path), wrap_command=_sleeper)
    pids = []
    try:
        pc.start()
        pids = [p.pid for p in pc.procs.values()]
        _LIVE.discard(pc)
        del pc
        import gc
        gc.collect()
        time.sleep(0.2)
        assert all(_running(pid) for pid in pids)
    finally:
        _kill_leftovers(pids)


# -- A3: members that fail to start ------------------------------------------------------------

def test_leader_returns_at_once_when_every_member_exited(tmp_path):
    def dies(member, argv):
        return [sys.executable, "-c", "import sys; print('cannot start: boom', flush=True); sys.exit(3)"]

    with ProcessCluster(members=3, base_dir=str(tmp_path), wrap_command=dies) as pc:
        pc.start()
        t = time.monotonic()
        assert pc.leader(timeout_s=20) is None
        assert time.monotonic() - t < 10, "leader() waited out its timeout with no member running"
        with pytest.raises(MemberExitedError) as err:
            pc.check_running()
        assert err.value.exited == {0: 3, 1: 3, 2: 3}
        assert "exit code 3" in str(err.value) and "cannot start: boom" in str(err.value)


def test_check_running_ignores_members_killed_on_purpose(tmp_path):
    with ProcessCluster(members=3, base_dir=str(tmp_path), wrap_command=_sleeper) as pc:
        pc.start()
        pc.check_running()
        pc.kill(0)                                    # on purpose: not an error
        pc.check_running()
        os.kill(pc.procs[1].pid, signal.SIGKILL)      # behind the harness's back
        assert wait_until(lambda: not pc.alive(1), 10)
        with pytest.raises(MemberExitedError) as err:
            pc.check_running()
        assert set(err.value.exited) == {1} and "killed by signal 9" in str(err.value)
        pc.start_member(0)                            # started again: watched again
        pc.kill(1)
        pc.check_running()


def test_a_kill_does_not_hide_a_crash_not_yet_reported(tmp_path):
    with ProcessCluster(members=3, base_dir=str(tmp_path), wrap_command=_sleeper) as pc:
        pc.start()
        os.kill(pc.procs[2].pid, signal.SIGKILL)      # it crashes ...
        assert wait_until(lambda: not pc.alive(2), 10)
        assert pc.kill(2) == -signal.SIGKILL          # ... before the caller kills it
        with pytest.raises(MemberExitedError) as err:
            pc.check_running()                        # still reported, once
        assert set(err.value.exited) == {2}
        pc.kill(2)                                    # reported: now the kill acknowledges it
        pc.check_running()


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_pause_stops_a_member_where_it_is_and_resume_lets_it_go_on(tmp_path):
    with ProcessCluster(members=2, base_dir=str(tmp_path), wrap_command=_sleeper) as pc:
        pc.start()
        pid = pc.procs[0].pid
        pc.pause(0)
        assert wait_until(lambda: _state(pid) == "T", 10)
        pc.resume(0)
        assert wait_until(lambda: _state(pid) == "S", 10)
        pc.pause(1)                                   # a paused member still ends on SIGTERM
        assert wait_until(lambda: _state(pc.procs[1].pid) == "T", 10)
        assert pc.kill(1, signal.SIGTERM, wait_s=5) == -signal.SIGTERM
        pc.check_running()
        with pytest.raises(RuntimeError, match="member 1 is not running"):
            pc.pause(1)


def _forking_sleeper(_member, _argv):
    """wrap_command: a shell that forks the stand-in (no exec), as `sh -c "..."; true` does."""
    return ["sh", "-c", f"{sys.executable} -c 'import time; time.sleep(120)'; true"]


def _cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode()


def _children(pid: int) -> list:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def test_pause_reaches_a_forked_member_and_a_restart_is_not_paused(tmp_path):
    with ProcessCluster(members=1, base_dir=str(tmp_path), wrap_command=_forking_sleeper) as pc:
        pc.start()
        shell = pc.procs[0].pid
        assert wait_until(lambda: _children(shell), 10)
        [member] = _children(shell)
        # paused between its fork and its exec, the child keeps the shell in vfork's wait
        # (state D, not T) for as long as it is stopped: pause once it runs the stand-in
        assert wait_until(lambda: _cmdline(member).startswith(sys.executable), 10)
        pc.pause(0)
        assert wait_until(lambda: _state(member) == "T" and _state(shell) == "T", 10)
        pc.resume(0)
        assert wait_until(lambda: _state(member) == "S", 10)
        pc.pause(0)
        pc.kill(0)
        pc.start_member(0)                            # a new process: not paused
        assert pc._paused == set()


@pytest.mark.process
def test_wait_settled_sees_a_paused_member_catch_up(tmp_path):
    from aeronpy import ClusterClient
    with ProcessCluster(members=3, base_dir=str(tmp_path), services=[ECHO]) as pc:
        pc.start()
        leader = pc.leader(timeout_s=30)
        assert leader is not None
        follower = next(m for m in range(3) if m != leader)
        pc.pause(follower)
        with ClusterClient.connect(pc.ingress_endpoints, timeout_s=10) as client:
            for i in range(20):
                assert client.request(b"%d" % i, timeout_s=10) == b"%d" % i
        with pytest.raises(TimeoutError, match="not settled"):
            pc.wait_settled(timeout_s=1.0)            # the paused member has not got them
        pc.resume(follower)
        index = pc.wait_settled(timeout_s=30)
        assert all(pc.read_counters(m)["commit_index"] == index for m in range(3))


@pytest.mark.process
def test_a_member_whose_port_is_taken_is_reported(tmp_path):
    with ProcessCluster(services=[ECHO], base_dir=str(tmp_path)) as pc:
        squat = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            squat.bind(("127.0.0.1", pc.member_ports[2]["ingress_port"]))
            pc.start()
            assert pc.leader(timeout_s=60) is not None      # a majority is enough to lead
            with pytest.raises(MemberExitedError) as err:
                pc.check_running(wait_up_s=60)
            assert set(err.value.exited) == {2}
            assert "already in use" in str(err.value)
        finally:
            squat.close()
        pc.start_member(2)
        pc.check_running(wait_up_s=60)                      # up: counters written by this run
        assert all(pc.alive(i) for i in range(3))


def test_a_member_whose_clock_is_behind_counts_as_up(tmp_path):
    """_is_up took a member's counters file for its own only if it was stamped after the spawn
    by this process's clock: a member run with its wall clock behind (bench/clock_trial) never
    counted as up. The spawned pid in the file's header is enough."""
    with ProcessCluster(members=1, base_dir=str(tmp_path)) as pc:
        pc.start()
        assert wait_until(lambda: pc._is_up(0), 20)
        pc._spawned_ns[0] = time.time_ns() + 3600 * 10**9        # as if an hour behind us
        assert pc._is_up(0)
        real = pc.procs[0]
        pc.procs[0] = type("Other", (), {"pid": -1, "poll": lambda self: None})()
        try:
            assert not pc._is_up(0)        # the control: another run's file, stamped before
        finally:
            pc.procs[0] = real
