"""Second operator-CLI review, the demo's clean-up: whatever ends a run (a hang-up, Ctrl-C
pressed again and again, a member that does not start, a client that cannot connect), no
node process is left running and the demo's temporary directory is gone.

Each run is ``python -m aeronpy demo`` in a child process with TMPDIR pointing at a directory
of the test's own, so the demo's directory is found there and its node processes by name
(their command lines name it). Every wait is bounded."""
import os
import selectors
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from aeronpy import demo
from aeronpy.testing.process_cluster import child_env

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pgrep, signals")

ARGS = ("--duration", "8", "--rate", "200", "--clients", "1", "--seed", "3")


def processes_naming(path: str) -> list:
    out = subprocess.run(["pgrep", "-f", path], capture_output=True, text=True)
    return [int(pid) for pid in out.stdout.split() if int(pid) != os.getpid()]


class DemoRun:
    """``aeronpy demo`` in a child process; stderr read line by line (bounded waits)."""

    def __init__(self, tmp_path, extra_path: str = None):
        self.tmp = str(tmp_path / "tmp")
        os.mkdir(self.tmp)
        env = child_env(*([extra_path] if extra_path else []), TMPDIR=self.tmp)
        # SIGHUP as a terminal leaves it, whatever the test runner inherited (under nohup it is
        # ignored, and the demo keeps an ignored SIGHUP ignored, as it should)
        self.proc = subprocess.Popen([sys.executable, "-m", "aeronpy", "demo", *ARGS],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                     cwd=str(tmp_path), stdin=subprocess.DEVNULL,
                                     preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))
        self.err = b""

    def wait_for(self, text: str, timeout_s: float = 60) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stderr, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout_s
        try:
            while text.encode() not in self.err:
                assert time.monotonic() < deadline, f"no {text!r} in {timeout_s} s: {self.err!r}"
                if sel.select(0.2):
                    chunk = os.read(self.proc.stderr.fileno(), 65536)
                    assert chunk, f"the demo ended before {text!r}: {self.err!r}"
                    self.err += chunk
        finally:
            sel.close()

    def finish(self, timeout_s: float = 60) -> tuple:
        try:
            out, err = self.proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            pytest.fail(f"the demo did not end within {timeout_s} s")
        return self.proc.returncode, out.decode(), (self.err + err).decode()

    def left_behind(self) -> tuple:
        """(pids of processes naming the temp dir, entries in the temp dir), after giving the
        children a moment to go; anything found is killed so it does not outlive the test."""
        deadline = time.monotonic() + 5
        while processes_naming(self.tmp) and time.monotonic() < deadline:
            time.sleep(0.1)
        pids = processes_naming(self.tmp)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        return pids, os.listdir(self.tmp)


@pytest.mark.process
@linux
def test_a_hang_up_kills_every_member_and_removes_the_directory(tmp_path):
    # the demo died of SIGHUP (a closed terminal or ssh session) and its three members, each
    # in a session of its own, ran on with their directory
    run = DemoRun(tmp_path)
    run.wait_for("starting 3 members")
    time.sleep(1.5)
    run.proc.send_signal(signal.SIGHUP)
    code, _, err = run.finish()
    assert run.left_behind() == ([], []), err
    assert code == 128 + signal.SIGHUP, err
    assert "Traceback" not in err


@pytest.mark.process
@linux
def test_ctrl_c_pressed_again_during_the_clean_up_still_cleans_up(tmp_path):
    # a second Ctrl-C while the first one's clean-up ran cut it short: the directory stayed
    run = DemoRun(tmp_path)
    run.wait_for("starting 3 members")
    time.sleep(1.5)
    deadline = time.monotonic() + 3
    while run.proc.poll() is None and time.monotonic() < deadline:
        run.proc.send_signal(signal.SIGINT)
        time.sleep(0.01)
    code, _, err = run.finish()
    assert run.left_behind() == ([], []), err
    assert code in (130, -signal.SIGINT), err


def _site(tmp_path, code: str) -> str:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(code))
    return str(site)


@pytest.mark.process
@linux
def test_a_member_that_does_not_start_leaves_nothing(tmp_path):
    # guard: member 1 exits at once; the demo says so and cleans up
    site = _site(tmp_path, """
        import os, sys
        argv = sys.argv
        if "--member-id" in argv and argv[argv.index("--member-id") + 1] == "1":
            os._exit(5)
    """)
    run = DemoRun(tmp_path, extra_path=site)
    code, _, err = run.finish()
    assert run.left_behind() == ([], []), err
    assert code == 1 and "member 1 exited (exit code 5)" in err and "Traceback" not in err


@pytest.mark.process
@linux
def test_a_client_that_cannot_connect_is_one_line_and_leaves_nothing(tmp_path):
    # a ClusterTimeoutError from connect was a traceback (only RuntimeError was caught)
    site = _site(tmp_path, """
        import sys
        def _patch():
            import aeronpy
            from aeronpy.errors import ClusterTimeoutError
            def connect(*args, **kwargs):
                raise ClusterTimeoutError("injected: no answer to the connect")
            aeronpy.ClusterClient.connect = staticmethod(connect)
        if "demo" in sys.argv:        # the demo itself, not its members
            _patch()
    """)
    run = DemoRun(tmp_path, extra_path=site)
    code, _, err = run.finish()
    assert run.left_behind() == ([], []), err
    assert code == 1 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == ("aeronpy demo: ClusterTimeoutError: injected: no "
                                            "answer to the connect")


def test_with_quiet_the_reason_the_demo_stopped_is_still_said(monkeypatch, capsys):
    # --quiet ("no progress output") hid it too: status 1 and nothing said
    def fails(opts, progress):
        raise RuntimeError("member 1 exited (exit code 5)")
    monkeypatch.setattr(demo, "run_demo", fails)
    assert demo.main(["--quiet"]) == 1
    assert capsys.readouterr().err == "aeronpy demo: member 1 exited (exit code 5)\n"

    def interrupted(opts, progress):
        raise KeyboardInterrupt
    monkeypatch.setattr(demo, "run_demo", interrupted)
    assert demo.main(["--quiet"]) == 130
    assert "interrupted" in capsys.readouterr().err
