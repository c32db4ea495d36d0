"""Bad input from the network (issue 5): a stranger process sprays every port of a live cluster.

While a client keeps committing, a separate process sends random datagrams, real frames of
this cluster captured on loopback and replayed as they were, and damaged copies of them, to
every consensus and ingress port. Nothing may crash, the drop counters in each member's
counters file must rise, the client's requests must keep committing during the spray, and
every member must end with the same state, each acknowledged request applied exactly once.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import aeronpy

from .capture import LoopbackCapture, can_capture, synthesised_frames, write_frames
from .helpers import LEADER, add, counters, describe, read_hash_files, settled, wait_until

pytestmark = pytest.mark.process

SPRAY_SECONDS = 3.0
SPRAY_RATE = 4000          # datagrams per second, over all ports
STRANGER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "stranger.py")
DROP_SLOTS = ("drops_wrong_cluster", "drops_unknown_member", "drops_bad_mac", "drops_malformed",
              "drops_too_large", "drops_stale", "drops_other")


def _drops(c: dict) -> int:
    return sum(c.get(slot, 0) for slot in DROP_SLOTS)


def _capture_frames(pc, client, path: str) -> str:
    """Capture real frames while the client works; synthesise them where capture is denied."""
    ports = [p for member in pc.member_ports for k, p in member.items() if k != "admin_port"]
    reason = can_capture()
    frames = []
    if reason is None:
        with LoopbackCapture(ports, max_frames=2000) as cap:
            deadline = time.monotonic() + 0.8
            while time.monotonic() < deadline:
                add(client)
        frames = cap.frames
        how = f"captured {len(frames)} real frames on lo"
    if not frames:
        frames = synthesised_frames(pc.cluster_id, pc.members)
        how = f"loopback capture unavailable ({reason}); replaying {len(frames)} forged frames"
    write_frames(path, frames)
    print(how)
    return how


def test_stranger_spraying_every_port_is_dropped_and_counted_while_commits_continue(
        make_cluster, tmp_path):
    pc = make_cluster().start()
    assert pc.leader(timeout_s=20) is not None, describe(pc)
    client = aeronpy.ClusterClient.connect(pc.ingress_endpoints, timeout_s=10)
    stranger = None
    try:
        acked = 0
        for _ in range(5):
            acked = add(client)
        frames_path = str(tmp_path / "frames.bin")
        _capture_frames(pc, client, frames_path)
        acked = add(client)
        before = {m: counters(pc, m) for m in range(pc.members)}

        targets = ",".join(f"{h}:{p[k]}" for h, p in zip(pc.hosts, pc.member_ports)
                           for k in ("consensus_port", "ingress_port"))
        stranger = subprocess.Popen(
            [sys.executable, STRANGER, "--targets", targets, "--frames", frames_path,
             "--seconds", str(SPRAY_SECONDS), "--rate", str(SPRAY_RATE), "--seed", "5"],
            stdout=subprocess.PIPE, text=True)
        assert json.loads(stranger.stdout.readline())["event"] == "spraying"
        commits_during_spray = 0
        deadline = time.monotonic() + SPRAY_SECONDS
        while time.monotonic() < deadline and stranger.poll() is None:
            try:
                total = add(client, timeout_s=5)
            except aeronpy.ClusterTimeoutError:
                pytest.fail(f"a request timed out during the spray after {commits_during_spray} "
                            f"commits\n{describe(pc)}")
            assert total == acked + 1, "a reply out of order or applied twice"
            acked = total
            commits_during_spray += 1
        out, _ = stranger.communicate(timeout=SPRAY_SECONDS + 10)
        assert stranger.returncode == 0
        report = json.loads(out.strip().splitlines()[-1])
        print(f"stranger sent {report['sent']} in {report['seconds']}s; "
              f"{commits_during_spray} requests committed meanwhile")
        assert report["sent"]["random"] > 0 and report["sent"]["replayed"] > 0
        assert commits_during_spray >= 20, f"only {commits_during_spray} commits during the spray"

        for _ in range(5):
            acked = add(client)
        assert all(pc.alive(m) for m in range(pc.members)), describe(pc)
        # the counters are published at most 1 ms apart; give them a moment
        assert wait_until(lambda: all(_drops(counters(pc, m)) > _drops(before[m])
                                      for m in range(pc.members)), 5)
        for m in range(pc.members):
            after = counters(pc, m)
            delta = {s: after[s] - before[m][s] for s in DROP_SLOTS + ("frames_in", "errors")}
            print(f"member {m}: {delta}")
            random_sent = sum(report["per_target"][f"{pc.hosts[m]}:{pc.member_ports[m][k]}"]["random"]
                              for k in ("consensus_port", "ingress_port"))
            # random bytes are never a frame: each one must be counted as a drop (the socket
            # may lose some under load, hence half)
            assert delta["drops_malformed"] >= random_sent // 2, (m, delta, random_sent)
            # frames of the ingress stream replayed at a consensus port and vice versa
            assert delta["drops_wrong_cluster"] > 0, (m, delta)
            assert delta["errors"] == 0, (m, delta)
    finally:
        if stranger is not None and stranger.poll() is None:
            stranger.kill()
            stranger.wait(5)
        client.close()

    live = list(range(pc.members))
    assert wait_until(lambda: settled(pc, live), 10), describe(pc)
    live.sort(key=lambda m: counters(pc, m).get("role") == LEADER)
    assert all(pc.kill(m, signal.SIGTERM) == 0 for m in live)
    finals = read_hash_files(pc.hash_dir)
    assert {r["total"] for r in finals.values()} == {acked} and len(finals) == pc.members, finals
