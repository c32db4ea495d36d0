"""Signals an ``aeronpy node`` meets besides SIGTERM and SIGINT.

SIGHUP (the operator's terminal or ssh session went away) killed the node outright, as
kill -9 would: no leadership handed over, nothing logged, its counters left "dead". As the
JVM runs Aeron's shutdown hooks on SIGHUP, the node now closes in order, unless SIGHUP was
ignored when it started (``nohup``), which is kept.
"""
import os
import signal
import subprocess
import sys
import time

import pytest

from aeronpy.cluster.counters import CountersReader, CountersUnavailableError
from aeronpy.testing.process_cluster import child_env

from tests.ops.opsfiles import write_one_member_config


def start_node(tmp_path, ignore_sighup=False):
    write_one_member_config(tmp_path)
    argv = [sys.executable, "-m", "aeronpy", "node", "--config", str(tmp_path / "cluster.toml"),
            "--member-id", "0", "--service", "aeronpy.testing.services:EchoService"]

    def preexec():
        os.setsid()                  # its own session: no terminal of ours reaches it
        # as nohup does, or as a terminal leaves it (whatever the test runner inherited)
        signal.signal(signal.SIGHUP, signal.SIG_IGN if ignore_sighup else signal.SIG_DFL)
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=child_env(), cwd=str(tmp_path), preexec_fn=preexec)


def wait_running(child, data_dir, timeout_s=30.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise AssertionError(f"node exited {child.returncode}: {child.stderr.read()}")
        try:
            with CountersReader(data_dir) as reader:
                if reader.status().running and reader.read()["role"] == 2:
                    return
        except CountersUnavailableError:
            pass
        time.sleep(0.1)
    raise AssertionError("node did not start leading in time")


@pytest.fixture
def reap():
    children = []
    yield children.append
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=20)
        child.stderr.close()


def test_sighup_closes_the_node_in_order(tmp_path, reap):
    child = start_node(tmp_path)
    reap(child)
    data_dir = str(tmp_path / "data-0")
    wait_running(child, data_dir)
    child.send_signal(signal.SIGHUP)
    _, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    assert "received SIGHUP: closing" in err, err
    with CountersReader(data_dir) as reader:
        assert reader.status().state == "stopped", reader.status()


def test_a_node_started_with_sighup_ignored_keeps_running(tmp_path, reap):
    child = start_node(tmp_path, ignore_sighup=True)
    reap(child)
    data_dir = str(tmp_path / "data-0")
    wait_running(child, data_dir)
    child.send_signal(signal.SIGHUP)
    time.sleep(1.0)
    assert child.poll() is None
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=30)
    assert child.returncode == 0 and "received SIGTERM: closing" in err, err
