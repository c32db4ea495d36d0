"""``aeronpy tool snapshot | recording-log | recovery-plan`` through the real CLI."""
import json
import subprocess
import sys

from .cluster_helpers import LocalCluster, add


def _tool(*args) -> tuple:
    out = subprocess.run([sys.executable, "-m", "aeronpy", "tool", *args, "--json"],
                         capture_output=True, text=True, timeout=60)
    return out.returncode, (json.loads(out.stdout) if out.stdout.strip() else None), out.stderr


def test_tool_snapshot_then_recording_log_and_recovery_plan(tmp_path):
    cluster = LocalCluster(str(tmp_path), count=1, snapshot_log_bytes=0).start()
    try:
        assert cluster.leader() is not None
        with cluster.client() as client:
            for _ in range(30):
                add(client)
        code, data, err = _tool("snapshot", "--data-dir", cluster.data_dir(0))
        assert code == 0, err
        assert data["recorded"] and data["snapshot"]["index"] == data["requested_at_index"]
        with cluster.client() as client:
            for _ in range(5):
                add(client)
        code, log, err = _tool("recording-log", "--data-dir", cluster.data_dir(0))
        assert code == 0, err
        snaps = [e for e in log["entries"] if e["type"] == "SNAPSHOT"]
        assert [s["index"] for s in snaps] == [data["requested_at_index"]]
    finally:
        cluster.close()
    code, plan, err = _tool("recovery-plan", "--data-dir", cluster.data_dir(0))
    assert code == 0, err
    assert plan["snapshot"]["index"] == data["requested_at_index"]
    assert plan["replay_from"] == data["requested_at_index"] + 1
    assert plan["replay_to"] >= plan["replay_from"] + 4       # the five adds after the snapshot
    assert plan["skipped_snapshots"] == []


def test_tool_on_a_missing_data_dir_is_a_clear_error(tmp_path):
    for command in ("recording-log", "recovery-plan", "snapshot"):
        code, _data, err = _tool(command, "--data-dir", str(tmp_path / "nope"))
        assert code != 0 and "nope" in err
