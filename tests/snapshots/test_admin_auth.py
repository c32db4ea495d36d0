"""Admin requests (snapshot, suspend, resume, shutdown, abort, backup) reach a member on its
client ingress port, so a member admits only signed ones when the cluster has a secret, and
only ones from its own machine when it has none (aeronpy/cluster/admin_auth.py). A refused
request is answered with the reason, counted in ``admin_rejected``, and never acted on."""
import os
import stat
import time

import pytest

from aeronpy.client import UdpClientTransport
from aeronpy.cluster import admin
from aeronpy.cluster import admin_auth
from aeronpy.cluster import protocol as P
from aeronpy.cluster.admin_client import AdminError
from aeronpy.cluster.backup import ClusterBackup
from aeronpy.cluster.node_admin import ADMIN_SHUTDOWN
from aeronpy.cluster.node_snapshots import (ADMIN_ERROR, ADMIN_OK, ADMIN_SNAPSHOT, BACKUP_CHUNK,
                                           BACKUP_QUERY)

from .cluster_helpers import LocalCluster, add

SECRET = "correct horse battery staple"


# ------------------------------------------------------------------ the pieces
def test_an_answers_tag_binds_its_code_and_payload_and_differs_from_a_requests():
    key = admin_auth.admin_key(SECRET.encode())
    answer = admin_auth.sign_response(key, 42, ADMIN_SNAPSHOT, ADMIN_OK, b"index")
    assert admin_auth.verify_response(key, 42, ADMIN_SNAPSHOT, ADMIN_OK, answer) == b"index"
    assert admin_auth.verify_response(key, 42, ADMIN_SNAPSHOT, ADMIN_ERROR, answer) is None
    assert admin_auth.verify_response(key, 42, ADMIN_SNAPSHOT, ADMIN_OK, answer[:-1] + b"X") is None
    assert admin_auth.verify_response(admin_auth.admin_key(b"x"), 42, ADMIN_SNAPSHOT, ADMIN_OK,
                                      answer) is None
    request = admin_auth.sign(key, 42, ADMIN_SNAPSHOT, b"index")
    assert admin_auth.verify_response(key, 42, ADMIN_SNAPSHOT, 0, request) is None   # reflected
    assert admin_auth.verify(key, 42, ADMIN_SNAPSHOT, answer) is None
    assert admin_auth.verify_response(None, 42, ADMIN_SNAPSHOT, 0, b"plain") == b"plain"


def test_an_answer_fits_only_the_request_it_was_made_for():
    """An answer binds the tag of its request, so a captured answer cannot be passed off as
    the answer to a later request with the same correlation id and type."""
    key = admin_auth.admin_key(SECRET.encode())
    first = admin_auth.request_tag_of(key, admin_auth.sign(key, 5, BACKUP_QUERY, b"from 1"))
    later = admin_auth.request_tag_of(key, admin_auth.sign(key, 5, BACKUP_QUERY, b"from 9"))
    assert len(first) == admin_auth.TAG_BYTES and first != later
    answer = admin_auth.sign_response(key, 5, BACKUP_QUERY, ADMIN_OK, b"entries", first)
    assert admin_auth.verify_response(key, 5, BACKUP_QUERY, ADMIN_OK, answer, first) == b"entries"
    assert admin_auth.verify_response(key, 5, BACKUP_QUERY, ADMIN_OK, answer, later) is None
    assert admin_auth.request_tag_of(None, b"args") == b""


def test_a_tag_binds_key_correlation_id_type_and_arguments():
    key = admin_auth.admin_key(SECRET.encode())
    payload = admin_auth.sign(key, 42, ADMIN_SNAPSHOT, b"args", now=1000.5,
                              destination="10.0.0.1:20101")
    assert admin_auth.verify(key, 42, ADMIN_SNAPSHOT, payload) == (b"args", 1000500,
                                                                   "10.0.0.1:20101")
    other = admin_auth.admin_key(b"another secret")
    assert admin_auth.verify(other, 42, ADMIN_SNAPSHOT, payload) is None
    assert admin_auth.verify(key, 43, ADMIN_SNAPSHOT, payload) is None        # another request
    assert admin_auth.verify(key, 42, ADMIN_SHUTDOWN, payload) is None        # another action
    assert admin_auth.verify(key, 42, ADMIN_SNAPSHOT, payload[:-1] + b"X") is None
    assert admin_auth.verify(key, 42, ADMIN_SNAPSHOT, payload[:10]) is None   # shorter than a tag
    assert admin_auth.sign(None, 42, ADMIN_SNAPSHOT, b"args") == b"args"


class _Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_gate_refuses_a_replay_from_another_sender_and_a_stale_or_future_request():
    clock = _Clock(5000.0)
    gate = admin_auth.AdminGate(SECRET.encode(), "127.0.0.1", "127.0.0.1:20101", clock=clock,
                                window_s=60)
    key = gate.key
    here = "127.0.0.1:20101"
    payload = admin_auth.sign(key, 7, ADMIN_SHUTDOWN, b"", now=4990.0, destination=here)
    ok, args, tag, _ = gate.admit("10.0.0.9", 111, 7, ADMIN_SHUTDOWN, payload)
    assert ok and args == b"" and tag == admin_auth.request_tag_of(key, payload)
    # the sender re-sends it while unanswered: admitted (the node answers it again, acting once)
    assert gate.admit("10.0.0.9", 111, 7, ADMIN_SHUTDOWN, payload)[0]
    ok, reason, refused_tag, kind = gate.admit("10.6.6.6", 222, 7, ADMIN_SHUTDOWN, payload)
    assert not ok and "replayed" in reason and kind == "replayed"
    assert refused_tag == tag             # the refusal is tagged for it: the sender sees why
    clock.now = 5051.0                  # 61 s after it was made: outside the window for anyone
    ok, reason, _, _ = gate.admit("10.0.0.9", 111, 7, ADMIN_SHUTDOWN, payload)
    assert not ok and "+61.0 s" in reason and "outside the 60 s window" in reason
    assert gate._admitted == {}         # and no longer remembered
    future = admin_auth.sign(key, 8, ADMIN_SHUTDOWN, b"", now=clock.now + 90, destination=here)
    ok, reason, _, _ = gate.admit("10.0.0.9", 111, 8, ADMIN_SHUTDOWN, future)
    assert not ok and "-90.0 s" in reason


def test_the_gate_refuses_a_request_addressed_to_another_member():
    """A request the tool sent to a follower (answered NOT_LEADER) could be captured and
    replayed to the leader, whose gate had never seen its tag; it is addressed, so no more."""
    clock = _Clock(5000.0)
    gate = admin_auth.AdminGate(SECRET.encode(), "127.0.0.1", "127.0.0.1:20101", clock=clock)
    to_follower = admin_auth.sign(gate.key, 7, ADMIN_SHUTDOWN, now=5000.0,
                                  destination="127.0.0.1:20111")
    ok, reason, tag, kind = gate.admit("127.0.0.1", 1, 7, ADMIN_SHUTDOWN, to_follower)
    assert not ok and kind == "addressed elsewhere" and "127.0.0.1:20111" in reason
    assert tag == admin_auth.request_tag_of(gate.key, to_follower)
    signed = admin_auth.sign(gate.key, 8, ADMIN_SHUTDOWN, now=5000.0, destination="127.0.0.1:20101")
    assert gate.admit("127.0.0.1", 1, 8, ADMIN_SHUTDOWN, signed)[0]
    by_name = admin_auth.AdminGate(SECRET.encode(), "localhost", "localhost:20101", clock=clock)
    signed = admin_auth.sign(by_name.key, 9, ADMIN_SHUTDOWN, now=5000.0,
                             destination="127.0.0.1:20101")     # its address, as an IP
    assert by_name.admit("127.0.0.1", 1, 9, ADMIN_SHUTDOWN, signed)[0]
    unsigned_place = admin_auth.sign(by_name.key, 10, ADMIN_SHUTDOWN, now=5000.0,
                                     destination="127.0.0.1:20999")   # its address, other port
    assert not by_name.admit("127.0.0.1", 1, 10, ADMIN_SHUTDOWN, unsigned_place)[0]


def test_the_gate_knows_an_ipv6_member_by_its_bracketed_endpoint():
    clock = _Clock(5000.0)
    gate = admin_auth.AdminGate(SECRET.encode(), "::1", "[::1]:20101", clock=clock)
    for correlation_id, destination, admitted in [(7, "[::1]:20101", True),
                                                  (8, "[0:0::1]:20101", True),   # its address
                                                  (9, "[::1]:20111", False),     # another port
                                                  (10, "::1:20101", False)]:     # malformed
        signed = admin_auth.sign(gate.key, correlation_id, ADMIN_SHUTDOWN, now=5000.0,
                                 destination=destination)
        ok, reason, _tag, _kind = gate.admit("::1", 1, correlation_id, ADMIN_SHUTDOWN, signed)
        assert ok is admitted, (destination, reason)


def test_the_gate_remembers_a_bounded_number_of_requests():
    clock = _Clock(100.0)
    gate = admin_auth.AdminGate(SECRET.encode(), "127.0.0.1", clock=clock, window_s=10,
                                max_remembered=3)     # no own endpoint: any destination
    signed = [admin_auth.sign(gate.key, cid, ADMIN_SNAPSHOT, b"", now=100.0 - (cid % 2))
              for cid in range(5)]
    assert [gate.admit(None, 1, cid, ADMIN_SNAPSHOT, signed[cid])[0] for cid in range(4)] == \
        [True, True, True, False]       # a flood within the window is refused, not remembered
    assert "3 admitted within 10 s" in gate.admit(None, 1, 4, ADMIN_SNAPSHOT, signed[4])[1]
    clock.now = 109.5                   # those made at 99 have left the window: swept when full
    assert gate.admit(None, 1, 4, ADMIN_SNAPSHOT,
                      admin_auth.sign(gate.key, 4, ADMIN_SNAPSHOT, b"", now=109.0))[0]
    assert len(gate._admitted) == 3


# ------------------------------------------------------------------ across a restart (admin.seen)
def _gate(data_dir, clock, **options):
    return admin_auth.AdminGate(SECRET.encode(), "127.0.0.1", "127.0.0.1:20101", clock=clock,
                                window_s=60, data_dir=data_dir, **options)


def _signed(key, cid, made):
    return admin_auth.sign(key, cid, ADMIN_SHUTDOWN, b"", now=made, destination="127.0.0.1:20101")


@pytest.mark.parametrize("keep_record", [True, False], ids=["admin.seen", "no record (control)"])
def test_a_request_admitted_before_a_restart_is_refused_after_it(tmp_path, keep_record):
    clock = _Clock(5000.0)
    data_dir = str(tmp_path) if keep_record else None
    gate = _gate(data_dir, clock)
    captured = _signed(gate.key, 7, 4999.0)
    assert gate.admit("10.0.0.9", 1, 7, ADMIN_SHUTDOWN, captured)[0]
    gate.close()
    clock.now = 5010.0                    # the member restarted; the request is 11 s old
    after = _gate(data_dir, clock)
    ok, reason, _, kind = after.admit("10.6.6.6", 2, 7, ADMIN_SHUTDOWN, captured)
    if keep_record:
        assert not ok and kind == "replayed" and "before it restarted" in reason
        # even from the sender that made it: a re-send across the restart gets a clear refusal
        assert not after.admit("10.0.0.9", 1, 7, ADMIN_SHUTDOWN, captured)[0]
    else:                                 # what was left before admin.seen: the replay acts
        assert ok
    assert after.admit("10.0.0.9", 1, 8, ADMIN_SHUTDOWN, _signed(after.key, 8, 5010.0))[0]
    after.close()


def test_tags_past_the_window_are_dropped_from_the_record_at_start(tmp_path):
    clock = _Clock(5000.0)
    gate = _gate(str(tmp_path), clock)
    for cid in range(3):
        assert gate.admit(None, 1, cid, ADMIN_SHUTDOWN, _signed(gate.key, cid, 4950.0 + 20 * cid))[0]
    gate.close()
    seen = tmp_path / admin_auth.ADMIN_SEEN_FILE
    assert seen.stat().st_size == 3 * 24 and stat.S_IMODE(seen.stat().st_mode) == 0o600
    clock.now = 5025.0                    # the first (made at 4950) left the window at 5010
    after = _gate(str(tmp_path), clock)
    assert len(after._admitted) == 2 and seen.stat().st_size == 2 * 24
    after.close()


def test_the_record_is_bounded_and_a_damaged_one_refuses_nothing(tmp_path):
    clock = _Clock(5000.0)
    gate = _gate(str(tmp_path), clock, max_remembered=4)
    seen = tmp_path / admin_auth.ADMIN_SEEN_FILE
    for cid in range(20):                 # each leaves the window before the next is admitted
        clock.now = 5000.0 + 61 * cid
        assert gate.admit(None, 1, cid, ADMIN_SHUTDOWN, _signed(gate.key, cid, clock.now))[0]
        assert seen.stat().st_size <= 2 * 4 * 24       # rewritten with the live tags when full
    gate.close()
    seen.write_bytes(os.urandom(24 * 3 + 5))           # garbage and a torn tail
    after = _gate(str(tmp_path), clock)
    assert after.admit(None, 1, 99, ADMIN_SHUTDOWN, _signed(after.key, 99, clock.now))[0]
    after.close()


def test_a_torn_tail_is_left_out_and_the_whole_records_before_it_kept(tmp_path):
    clock = _Clock(5000.0)
    gate = _gate(str(tmp_path), clock)
    signed = [_signed(gate.key, cid, 5000.0) for cid in range(2)]
    assert all(gate.admit(None, 1, cid, ADMIN_SHUTDOWN, signed[cid])[0] for cid in range(2))
    gate.close()
    seen = tmp_path / admin_auth.ADMIN_SEEN_FILE
    with open(seen, "ab") as f:
        f.write(b"\x01" * 11)                            # a crash mid-append
    after = _gate(str(tmp_path), clock)
    assert seen.stat().st_size == 2 * 24
    assert [after.admit(None, 2, cid, ADMIN_SHUTDOWN, signed[cid])[3] for cid in range(2)] == \
        ["replayed", "replayed"]
    after.close()


@pytest.mark.parametrize("failure", ["short", "enospc"])
def test_a_failed_append_keeps_whole_records_and_never_raises_out_of_admit(tmp_path, monkeypatch,
                                                                          failure):
    import errno
    clock = _Clock(5000.0)
    gate = _gate(str(tmp_path), clock)
    first = _signed(gate.key, 1, 5000.0)
    assert gate.admit(None, 1, 1, ADMIN_SHUTDOWN, first)[0]
    real_write = admin_auth._write

    def full_disk(fd, data):
        if failure == "short":
            return real_write(fd, bytes(data)[:10])      # part of the record reached the file
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(admin_auth, "_write", full_disk)
    second = _signed(gate.key, 2, 5000.0)
    assert gate.admit(None, 1, 2, ADMIN_SHUTDOWN, second)[0]    # admitted; the member goes on
    assert gate.seen_lost is not None and "not remembered across a restart" in gate.seen_lost
    monkeypatch.setattr(admin_auth, "_write", real_write)
    assert gate.admit(None, 1, 3, ADMIN_SHUTDOWN, _signed(gate.key, 3, 5000.0))[0]
    gate.close()
    seen = tmp_path / admin_auth.ADMIN_SEEN_FILE
    assert seen.stat().st_size == 24                    # cut back to the whole record
    after = _gate(str(tmp_path), clock)
    assert after.admit(None, 2, 1, ADMIN_SHUTDOWN, first)[3] == "replayed"
    after.close()


def test_a_rewrite_whose_reopen_fails_gives_up_without_touching_a_stale_descriptor(tmp_path, monkeypatch):
    import errno
    clock = _Clock(5000.0)
    gate = _gate(str(tmp_path), clock, max_remembered=1)
    for cid in range(2):
        clock.now = 5000.0 + 61 * cid
        assert gate.admit(None, 1, cid, ADMIN_SHUTDOWN, _signed(gate.key, cid, clock.now))[0]
    real_open = os.open

    def no_append_fd(path, flags, *args):
        if flags & os.O_APPEND:
            raise OSError(errno.EMFILE, "Too many open files")
        return real_open(path, flags, *args)
    monkeypatch.setattr(admin_auth.os, "open", no_append_fd)
    clock.now += 61                                   # the record is full: the next admit rewrites
    assert gate.admit(None, 1, 7, ADMIN_SHUTDOWN, _signed(gate.key, 7, clock.now))[0]
    monkeypatch.setattr(admin_auth.os, "open", real_open)
    assert gate.seen_lost is not None and gate._seen_fd is None
    gate.close()


def test_a_node_that_fails_to_start_after_opening_the_record_closes_it(tmp_path):
    from aeronpy import ClusterNode, NodeConfig
    from aeronpy.testing.services import EchoService
    from aeronpy.testing.process_cluster import free_udp_ports
    ports = free_udp_ports(2)
    data_dir = tmp_path / "n0"
    (data_dir / admin_auth.ADMIN_KEY_FILE).mkdir(parents=True)     # refused after the gate opened
    config = NodeConfig(cluster_id=1, member_id=0, data_dir=str(data_dir), log_level="WARNING",
                        secret=SECRET, members=[{"id": 0, "host": "127.0.0.1",
                                                 "consensus_port": ports[0], "ingress_port": ports[1]}])
    with pytest.raises(OSError, match="admin.key"):
        ClusterNode(config, [EchoService()])
    open_files = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
                  if os.path.exists(f"/proc/self/fd/{fd}")]
    assert not [f for f in open_files if f.endswith(admin_auth.ADMIN_SEEN_FILE)], open_files


def test_a_fifo_in_place_of_the_record_is_refused_by_name_and_no_secret_removes_it(tmp_path):
    seen = tmp_path / admin_auth.ADMIN_SEEN_FILE
    os.mkfifo(seen)
    with pytest.raises(OSError, match="admin.seen"):
        _gate(str(tmp_path), _Clock(5000.0))
    seen.unlink()
    seen.write_bytes(b"x" * 24)
    admin_auth.AdminGate(None, "127.0.0.1", data_dir=str(tmp_path)).close()
    assert not seen.exists()              # without a secret there are no tags to keep


@pytest.mark.parametrize("sender, own, local", [
    ("127.0.0.1", "10.0.0.5", True), ("127.8.9.10", "10.0.0.5", True), ("::1", "10.0.0.5", True),
    ("10.0.0.5", "10.0.0.5", True), ("10.0.0.6", "10.0.0.5", False),
    ("192.168.1.1", "127.0.0.1", False), (None, "127.0.0.1", False), ("junk", "127.0.0.1", False),
])
def test_without_a_secret_only_this_machine_is_local(sender, own, local):
    assert admin_auth.is_local_sender(sender, admin_auth.own_addresses(own)) is local


def test_a_member_configured_by_host_name_knows_its_addresses():
    assert "127.0.0.1" in admin_auth.own_addresses("localhost")
    assert admin_auth.own_addresses("nosuchhost.invalid") == {"nosuchhost.invalid"}


def test_the_key_file_is_never_written_through_a_planted_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    os.symlink(victim, tmp_path / (admin_auth.ADMIN_KEY_FILE + ".tmp"))
    admin_auth.write_key_file(str(tmp_path), admin_auth.admin_key(b"s"))
    assert victim.read_text() == "keep"
    assert admin_auth.read_key_file(str(tmp_path)) == admin_auth.admin_key(b"s")


def test_the_key_file_is_private_and_checked(tmp_path):
    key = admin_auth.admin_key(b"s")
    path = admin_auth.write_key_file(str(tmp_path), key)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert admin_auth.read_key_file(str(tmp_path)) == key
    with open(path, "w") as f:
        f.write("not hex\n")
    with pytest.raises(ValueError, match="not a hex key"):
        admin_auth.read_key_file(str(tmp_path))
    admin_auth.remove_key_file(str(tmp_path))
    assert admin_auth.read_key_file(str(tmp_path)) is None


# ------------------------------------------------------------------ on a cluster
def _ask(endpoints, member, request_type, payload, correlation_id=7, timeout_s=10.0):
    transport = UdpClientTransport(endpoints)
    answers: list = []
    try:
        transport.send(endpoints[member], P.AdminRequest(correlation_id, request_type, payload))
        deadline = time.monotonic() + timeout_s
        while not answers and time.monotonic() < deadline:
            if transport.poll(lambda m: answers.append(m) if type(m) is P.AdminResponse else None) == 0:
                time.sleep(0.001)
    finally:
        transport.close()
    assert answers, "no answer"
    return answers[0]


def _rejected(node) -> int:
    return node.counters.values[node.counters.index("admin_rejected")]


def _unsigned_shutdown_is_refused(cluster, leader) -> None:
    endpoints = cluster.endpoints.split(",")
    key = admin_auth.admin_key(SECRET.encode())
    cases = [b"",                                                        # no tag at all
             admin_auth.sign(admin_auth.admin_key(b"guess"), 7, ADMIN_SHUTDOWN),   # wrong key
             admin_auth.sign(key, 7, ADMIN_SNAPSHOT)]                   # a snapshot's tag
    for i, payload in enumerate(cases):
        answer = _ask(endpoints, leader, ADMIN_SHUTDOWN, payload)
        body = admin_auth.verify_response(key, answer.correlation_id, answer.request_type,
                                          answer.code, answer.payload)   # the member's own
        assert answer.code == ADMIN_ERROR and b"not authenticated" in body
        assert _rejected(cluster.nodes[leader]) == i + 1


def test_with_a_secret_only_signed_requests_act(tmp_path):
    cluster = LocalCluster(str(tmp_path), snapshot_log_bytes=0, secret=SECRET).start()
    try:
        leader = cluster.leader()
        with cluster.client() as client:
            add(client)
        for member in cluster.nodes:          # members hold the derived key, never the secret
            with open(os.path.join(cluster.data_dir(member), admin_auth.ADMIN_KEY_FILE)) as f:
                assert SECRET not in f.read()
        _unsigned_shutdown_is_refused(cluster, leader)
        with cluster.client() as client:
            assert add(client) == 2           # nothing stopped
        assert all(not n.closed for n in cluster.nodes.values())
        # the tool signs with the member's admin.key (through a follower: redirected)
        result = admin.snapshot(cluster.data_dir((leader + 1) % 3))
        assert result["recorded"], result
        # and so does a backup given the secret; without it every request is refused
        endpoints = cluster.endpoints.split(",")
        signed = ClusterBackup(endpoints, str(tmp_path / "backup"), secret=SECRET.encode())
        unsigned = ClusterBackup(endpoints, str(tmp_path / "backup2"), request_timeout_s=0.5)
        try:
            assert signed.do_work() > 0 and signed.failures == 0
            assert unsigned.do_work() == 0 and unsigned.failures == 1
        finally:
            signed.close()
            unsigned.close()
    finally:
        cluster.close()


def _replayed_request_is_refused(cluster, leader) -> None:
    """A signed snapshot request admitted from one sender, then the same datagram from another
    (a captured request replayed) and one made two minutes ago: both refused and counted."""
    endpoints = cluster.endpoints.split(",")
    key = admin_auth.admin_key(SECRET.encode())
    signed = admin_auth.sign(key, 9, ADMIN_SNAPSHOT, destination=endpoints[leader])
    node = cluster.nodes[leader]
    before = _rejected(node)
    assert _ask(endpoints, leader, ADMIN_SNAPSHOT, signed, correlation_id=9).code == ADMIN_OK
    replay = _ask(endpoints, leader, ADMIN_SNAPSHOT, signed, correlation_id=9)   # a new port
    assert replay.code == ADMIN_ERROR and b"replayed" in bytes(replay.payload)
    stale = admin_auth.sign(key, 10, ADMIN_SHUTDOWN, now=time.time() - 120,
                            destination=endpoints[leader])
    answer = _ask(endpoints, leader, ADMIN_SHUTDOWN, stale, correlation_id=10)
    assert answer.code == ADMIN_ERROR and b"outside the 60 s window" in bytes(answer.payload)
    assert _rejected(node) == before + 2


def test_a_captured_admin_request_cannot_be_replayed(tmp_path):
    cluster = LocalCluster(str(tmp_path), snapshot_log_bytes=0, secret=SECRET).start()
    try:
        leader = cluster.leader()
        _replayed_request_is_refused(cluster, leader)
        assert all(not n.closed for n in cluster.nodes.values())
    finally:
        cluster.close()


def test_the_tool_shows_why_its_signed_request_was_refused(tmp_path, monkeypatch):
    """A refusal of a request whose tag verified (clock skew, replay, wrong member) was tagged
    for no request, so the tool and the backup dropped it and reported only a timeout."""
    cluster = LocalCluster(str(tmp_path), snapshot_log_bytes=0, secret=SECRET).start()
    try:
        leader = cluster.leader()
        real_sign = admin_auth.sign
        monkeypatch.setattr(admin_auth, "sign", lambda *a, **k: real_sign(
            *a, **{**k, "now": time.time() + 120}))              # this host's clock is off
        started = time.monotonic()
        with pytest.raises(AdminError, match="outside the 60 s window"):
            admin.snapshot(cluster.data_dir(leader), timeout_s=10.0)
        assert time.monotonic() - started < 5.0                  # the answer, not a timeout
        backup = ClusterBackup(cluster.endpoints.split(","), str(tmp_path / "b"),
                               request_timeout_s=2.0, secret=SECRET.encode())
        try:
            assert backup.do_work() == 0 and "outside the 60 s window" in backup.last_error
        finally:
            backup.close()
    finally:
        cluster.close()


def test_negative_control_a_gate_that_forgets_admits_the_replay(tmp_path, monkeypatch):
    monkeypatch.setattr(admin_auth.AdminGate, "_forget_expired",
                        lambda self, now: self._admitted.clear())
    cluster = LocalCluster(str(tmp_path), snapshot_log_bytes=0, secret=SECRET).start()
    try:
        with pytest.raises(AssertionError):
            _replayed_request_is_refused(cluster, cluster.leader())
    finally:
        cluster.close()


def test_negative_control_an_open_gate_lets_a_stranger_stop_the_cluster(tmp_path, monkeypatch):
    monkeypatch.setattr(admin_auth.AdminGate, "admit",
                        lambda self, ip, ref, cid, kind, payload: (True, bytes(payload), b"", ""))
    cluster = LocalCluster(str(tmp_path), snapshot_log_bytes=0, secret=SECRET).start()
    try:
        leader = cluster.leader()
        with pytest.raises(AssertionError):
            _unsigned_shutdown_is_refused(cluster, leader)
        assert cluster.wait_for(lambda: all(n.closed for n in cluster.nodes.values()), 10)
    finally:
        cluster.close()


def test_without_a_secret_a_request_from_another_machine_is_refused(tmp_path, monkeypatch):
    cluster = LocalCluster(str(tmp_path), snapshot_log_bytes=0).start()
    try:
        leader = cluster.leader()
        node = cluster.nodes[leader]
        assert not os.path.exists(os.path.join(cluster.data_dir(leader), admin_auth.ADMIN_KEY_FILE))
        real = node.ingress.peer_address
        monkeypatch.setattr(node.ingress, "peer_address",
                            lambda ref: None if real(ref) is None else ("10.9.8.7", real(ref)[1]))
        answer = _ask(cluster.endpoints.split(","), leader, ADMIN_SHUTDOWN, b"")
        assert answer.code == ADMIN_ERROR and b"from 10.9.8.7 refused" in bytes(answer.payload)
        assert _rejected(node) == 1
        monkeypatch.setattr(node.ingress, "peer_address", real)     # from this machine: acts
        assert _ask(cluster.endpoints.split(","), leader, ADMIN_SNAPSHOT, b"", 8).code == ADMIN_OK
        with cluster.client() as client:
            add(client)
    finally:
        cluster.close()


@pytest.mark.parametrize("kind, args", [(BACKUP_QUERY, b""), (BACKUP_QUERY, b"\x01\x02"),
                                        (BACKUP_CHUNK, b"\x00" * 5)])
def test_an_admitted_but_malformed_backup_request_is_answered_not_raised(tmp_path, kind, args):
    """Found in review: a backup request too short to unpack raised struct.error into the
    duty cycle and stopped the member."""
    cluster = LocalCluster(str(tmp_path), snapshot_log_bytes=0).start()
    try:
        leader = cluster.leader()
        answer = _ask(cluster.endpoints.split(","), leader, kind, args)
        assert answer.code == ADMIN_ERROR and b"bad backup request" in bytes(answer.payload)
        assert all(n.failure is None for n in cluster.nodes.values())
        with cluster.client() as client:
            add(client)
    finally:
        cluster.close()


def test_refusals_reach_the_counters_file(tmp_path):
    """Module and core refusals (kept in dicts) are published into slots operators read."""
    from aeronpy.cluster.counters import CountersReader
    cluster = LocalCluster(str(tmp_path), snapshot_log_bytes=0, max_sessions=1).start()
    try:
        leader = cluster.leader()
        with cluster.client():
            with pytest.raises(Exception, match="too many sessions"):
                cluster.client(timeout_s=5)
        node = cluster.nodes[leader]
        node.core.counters["invalid_append_response"] = 3      # as if three had come
        node._transport_counters.publish()
        with CountersReader(cluster.data_dir(leader)) as reader:
            values = reader.read()
        assert values["connect_session_limit"] >= 1
        assert values["invalid_append_response"] == 3
        assert values["authentication_rejected"] == 0
    finally:
        cluster.close()


def test_a_backup_with_the_secret_believes_no_untagged_answer(tmp_path):
    """Members without the secret stand in for a forger: their answers carry no tag, so a
    backup holding the key stores nothing from them; without the key it takes them."""
    cluster = LocalCluster(str(tmp_path), snapshot_log_bytes=0).start()
    try:
        assert cluster.leader() is not None
        with cluster.client() as client:
            add(client)
        endpoints = cluster.endpoints.split(",")
        keyed = ClusterBackup(endpoints, str(tmp_path / "b1"), request_timeout_s=0.5,
                              secret=SECRET.encode())
        plain = ClusterBackup(endpoints, str(tmp_path / "b2"), request_timeout_s=0.5)
        try:
            assert keyed.do_work() == 0 and keyed.failures == 1 and keyed.position == 0
            assert "does not verify with this key" in keyed.last_error   # says why
            assert plain.do_work() > 0 and plain.failures == 0
        finally:
            keyed.close()
            plain.close()
    finally:
        cluster.close()


def test_a_failed_snapshot_is_recorded_and_the_tool_says_why(tmp_path, monkeypatch):
    """A snapshot that failed (disk full) was a WARNING on stderr only: errors.log and the tool
    said nothing, and `aeronpy tool snapshot` waited out its timeout ("recorded: no")."""
    import errno
    from aeronpy.cluster import snapshotting
    from aeronpy.cluster.nodefiles import read_errors

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(snapshotting, "write_snapshot_file", disk_full)
    cluster = LocalCluster(str(tmp_path), snapshot_log_bytes=0).start()
    try:
        leader = cluster.leader()
        with cluster.client() as client:
            add(client)
        started = time.monotonic()
        result = admin.snapshot(cluster.data_dir(leader), timeout_s=10.0)
        assert time.monotonic() - started < 5.0 and result["recorded"] is False
        assert "snapshot failed: OSError" in result["problem"]
        assert "No space left" in result["problem"]
        [entry] = [e for e in read_errors(cluster.data_dir(leader))
                   if e.text.startswith("snapshot failed")]
        assert "first at index" in entry.detail
        assert all(n.failure is None for n in cluster.nodes.values())     # it carries on
    finally:
        cluster.close()
