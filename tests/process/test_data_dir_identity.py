"""A data dir is one member's: started as another member or in another cluster, or without the
node.state that holds its term and vote, the node refuses to start and says why. Found by an
adversarial review: all three started without a word (a copied data dir gave two members one
history; a missing node.state restarted the member at term 0 with no vote, free to vote twice
in a term)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from aeronpy import ClusterClient

from .helpers import ADD, COUNTER_SERVICE

pytestmark = pytest.mark.process


def _stopped_member(make_cluster):
    pc = make_cluster(members=1)
    pc.start()
    assert pc.leader(timeout_s=20) == 0, pc.tail_log(0)
    client = ClusterClient.connect(pc.ingress_endpoints, timeout_s=10)
    try:
        for _ in range(20):
            client.request(ADD.pack(1), timeout_s=10)
    finally:
        client.close()
    assert pc.kill(0, signal.SIGTERM) == 0
    return pc


def _start(pc, config_path: str, member_id: int = 0) -> subprocess.CompletedProcess:
    """`aeronpy node` on member 0's data dir; a healthy start is stopped after 3 s (timeout)."""
    cmd = [sys.executable, "-m", "aeronpy", "node", "--config", config_path, "--member-id",
           str(member_id), "--data-dir", pc.data_dir(0), "--service", COUNTER_SERVICE]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=3, env=pc.env,
                              cwd=pc.base_dir)
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(cmd, None, exc.stdout, exc.stderr)


def _other_config(pc, tmp_path, **changes) -> str:
    text = open(pc.config_path).read()
    for key, value in changes.items():
        text, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
        assert n == 1, (key, text)
    path = tmp_path / "other.toml"
    path.write_text(text)
    return str(path)


def test_a_data_dir_started_in_another_cluster_is_refused(make_cluster, tmp_path):
    pc = _stopped_member(make_cluster)
    out = _start(pc, _other_config(pc, tmp_path, cluster_id=8))
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert re.search(r"configuration error: data_dir: \S+ belongs to member 0 of cluster 7, "
                     r"not member 0 of cluster 8", out.stderr), out.stderr


def test_a_data_dir_started_as_another_member_is_refused(make_cluster, tmp_path):
    pc = make_cluster(members=3)
    pc.start()
    assert pc.leader(timeout_s=20) is not None
    for m in range(3):
        pc.kill(m, signal.SIGTERM)
    out = _start(pc, pc.config_path, member_id=1)        # member 0's dir as member 1
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert re.search(r"configuration error: data_dir: \S+ belongs to member 0 of cluster 7, "
                     r"not member 1 of cluster 7", out.stderr), out.stderr


def test_a_missing_node_state_with_a_log_is_refused(make_cluster):
    pc = _stopped_member(make_cluster)
    os.remove(os.path.join(pc.data_dir(0), "node.state"))
    out = _start(pc, pc.config_path)
    assert out.returncode == 4, (out.returncode, out.stderr)
    assert "node.state is missing, but the log holds entries up to term" in out.stderr


def test_control_the_same_data_dir_restarts_as_itself(make_cluster):
    pc = _stopped_member(make_cluster)
    out = _start(pc, pc.config_path)
    assert out.returncode is None, (out.returncode, out.stderr)   # still running at 3 s
