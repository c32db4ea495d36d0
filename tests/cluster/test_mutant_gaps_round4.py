"""Gaps found by mutation testing, round 4 (sessions, term checks, admin auth, new member,
restore marker, identity file): each test fails on the mutant named in its docstring (/work/notes/trials/mutants4) and passes
on the real code."""
from __future__ import annotations

import os
import struct

import pytest

from aeronpy import CLOSED
from aeronpy.cluster import admin_auth, identity
from aeronpy.cluster import entries as E
from aeronpy.cluster import new_member, restored
from aeronpy.cluster import protocol as P
from aeronpy.cluster.container import service_names
from aeronpy.cluster.module import ConsensusModule
from aeronpy.cluster.module_config import ModuleConfig
from aeronpy.cluster.restored import RESTORED_MARKER_FILE, read_restored_log_end
from aeronpy.errors import ConfigError
from aeronpy.service import CloseReason

from .fakes import FakeCore, RecordingService

TS = 1_700_000_000_000_000_000
NEW_LEADERSHIP_TERM = 1


class KeepingService(RecordingService):
    """Keeps every session it was told of, and on each message offers to all of them (a
    service that broadcasts to the sessions it knows), recording what each offer returned."""

    def __init__(self):
        super().__init__()
        self.kept = []
        self.offers = []

    def on_session_open(self, session, timestamp_ns):
        super().on_session_open(session, timestamp_ns)
        self.kept.append(session)

    def on_session_message(self, session, timestamp_ns, message):
        self.messages.append(bytes(message))
        self.offers.append([(s.id, s.offer(b"news")) for s in self.kept])


class OtherService(RecordingService):
    service_name = "gaps:Other"


def _module(services):
    module = ConsensusModule(1, FakeCore(1), services, ModuleConfig())
    module.start()
    return module


def _open(module, index, nonce=6, endpoint="c:1"):
    module.apply(index, 1, E.SESSION_OPEN, E.encode_session_open(TS + index, 5, nonce, endpoint))


def _close(module, index, session_id):
    module.apply(index, 1, E.SESSION_CLOSE,
                 E.encode_session_close(TS + index, session_id, CloseReason.CLIENT_ACTION))


# ---- sessions.py ----------------------------------------------------------------------------
def test_a_session_a_service_kept_is_closed_once_its_close_is_applied():
    """S01 (SessionTable.close does not mark the state closed): a service holding the
    ClientSession after on_session_close must see is_closed and get CLOSED from offer
    (ClientSession.offer's contract), not queue replies for a client that is gone."""
    service = KeepingService()
    module = _module([service])
    _open(module, 1, nonce=6)
    _open(module, 2, nonce=7)
    _close(module, 3, 1)
    module.apply(4, 1, E.SESSION_MESSAGE, E.encode_session_message(TS + 4, 2, 1, 9, 0, b"m"))
    first, second = service.kept
    assert first.is_closed and not second.is_closed
    [[(first_id, to_first), (second_id, to_second)]] = service.offers
    assert (first_id, to_first) == (1, CLOSED)
    assert second_id == 2 and to_second != CLOSED            # an open one still takes it
    assert module.failure is None


def test_a_connect_with_the_nonce_of_a_closed_session_opens_a_new_one():
    """S02 (SessionTable.close leaves the (endpoint, nonce) index entry): a SESSION_OPEN with
    the endpoint and nonce of a session already closed (a connect re-sent after its session
    timed out) then found the closed id and raised KeyError while applying."""
    service = RecordingService()
    module = _module([service])
    _open(module, 1, nonce=6)
    _close(module, 2, 1)
    _open(module, 3, nonce=6)
    assert 3 in module.sessions and 1 not in module.sessions
    assert module.sessions.find_client("c:1", 6).session_id == 3
    assert [e[:2] for e in service.events] == [("open", 1), ("close", 1), ("open", 3)]
    assert module.counters["session_open_duplicate"] == 0
    assert module.failure is None


# ---- term_checks.py -------------------------------------------------------------------------
def test_a_leader_hosting_the_same_services_in_another_order_is_reported():
    """C03 (the service lists compared as sets): a message names its service by its place in
    the list (service id), so a leader with [B, A] against this member's [A, B] sends each
    member's messages to the other service. That is a mismatch to report."""
    module = _module([RecordingService(), OtherService()])
    reports = []
    module.service_set_listeners.append(reports.append)
    ours = service_names(module.container.services)
    assert len(ours) == 2 and ours[0] != ours[1]
    tail = b"SVCSET1\0" + "\n".join(reversed(ours)).encode()      # docs/archive-format.md
    module.apply(1, 2, NEW_LEADERSHIP_TERM, TS.to_bytes(8, "little") + tail)
    assert module.counters["service_set_mismatches"] == 1
    assert len(reports) == 1 and "term 2" in str(reports[0])
    control = _module([RecordingService(), OtherService()])
    control.apply(1, 2, NEW_LEADERSHIP_TERM,
                  TS.to_bytes(8, "little") + b"SVCSET1\0" + "\n".join(ours).encode())
    assert control.counters["service_set_mismatches"] == 0


# ---- admin_auth.py --------------------------------------------------------------------------
KEY = admin_auth.admin_key(b"correct horse battery staple")


def test_an_answers_tag_never_verifies_as_a_requests_however_its_bytes_are_laid_out():
    """A03 (the tag does not hash its direction): an answer's tag covers (correlation id,
    type, code, request tag, payload) and a request's (correlation id, type, body), so without
    the direction byte an answer re-laid as a request whose body is code + request tag +
    payload carried a tag that verified: a member's answer became a signed request."""
    kind = 1
    request_tag = bytes(4) + bytes(2) + bytes(range(10))    # made-at ms, then dest length 0
    answer = admin_auth.sign_response(KEY, 42, kind, 0, b"args", request_tag)
    tag = answer[:admin_auth.TAG_BYTES]
    forged = tag + struct.pack("<i", 0) + request_tag + b"args"
    assert admin_auth.verify(KEY, 42, kind, forged) is None
    # control: the same layout signed as a request does verify (the check can pass)
    body = forged[admin_auth.TAG_BYTES:]
    genuine = admin_auth._tag(KEY, 42, kind, body) + body
    assert admin_auth.verify(KEY, 42, kind, genuine) is not None


def test_a_signed_request_keeps_the_first_answer_that_verifies():
    """A23 (a later answer overwrites the first): the node answers a re-sent request again,
    and a member that restarted in between refuses the re-send (admitted before a restart);
    the sender must keep the answer to the request it acted on."""
    request = admin_auth.SignedRequest(KEY, 9, 1, b"", "127.0.0.1:20101")
    tag = admin_auth.request_tag_of(KEY, request.message.payload)
    ok = admin_auth.sign_response(KEY, 9, 1, 0, b"done", tag)
    refused = admin_auth.sign_response(KEY, 9, 1, 1, b"admin request refused: ...", tag)
    request.on_message(P.AdminResponse(9, 1, 0, ok))
    request.on_message(P.AdminResponse(9, 1, 1, refused))
    assert request.answered == P.AdminResponse(9, 1, 0, b"done")
    assert request.unverified == 0


# ---- new_member.py --------------------------------------------------------------------------
def test_taking_the_new_member_mark_syncs_its_removal_before_returning(tmp_path, monkeypatch):
    """M04 (the removal not synced): the mark must be gone for good before the node's first
    duty cycle, else a power loss right after brings it back and the member, which may have
    voted by then, starts as new again."""
    data_dir = str(tmp_path / "n0")
    new_member.prepare_new_member(data_dir)
    synced = []

    class RecordingFs:
        def sync_dir(self, path):
            synced.append((path, os.path.exists(os.path.join(path, new_member.NEW_MEMBER_FILE))))

    monkeypatch.setattr(new_member, "_FS", RecordingFs())
    assert new_member.take_new_member_mark(data_dir) is True
    assert (data_dir, False) in synced         # the data dir synced after the file was removed
    synced.clear()
    assert new_member.take_new_member_mark(data_dir) is False


# ---- restored.py ----------------------------------------------------------------------------
def test_a_restore_marker_holding_true_is_not_an_index(tmp_path):
    """R02 (isinstance, not type, checked): JSON true is a bool, which isinstance counts as
    the int 1; a marker saying `true` must be reported as unusable, not read as index 1."""
    for value, expected in [("true", None), ("false", None), ("7", 7)]:
        (tmp_path / RESTORED_MARKER_FILE).write_text('{"restored_log_end": %s}' % value)
        end, why = read_restored_log_end(str(tmp_path))
        if expected is None:
            assert end == 0 and why is not None and "not an index" in why, (value, end, why)
        else:
            assert (end, why) == (expected, None)


def test_the_restore_marker_is_synced_before_it_is_renamed_into_place(tmp_path, monkeypatch):
    """R03 (no fsync before the rename): a power loss could leave restored.json renamed in
    but empty, which the member then reports as unreadable at every start."""
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append("replace"), real_replace(a, b))[1])
    restored.write_restored_marker(str(tmp_path), 12, "backup of cluster 3")
    assert "replace" in calls and "fsync" in calls[:calls.index("replace")], calls
    assert "fsync" in calls[calls.index("replace"):], calls      # the directory, after it
    assert restored.read_restored_log_end(str(tmp_path)) == (12, None)


# ---- identity.py ----------------------------------------------------------------------------
def test_a_damaged_identity_file_is_refused_even_when_its_ids_match(tmp_path):
    """I03 (the checksum not compared): a damaged identity file was read as whatever ids its
    bytes held; one whose ids still matched passed, hiding the damage."""
    identity.check_identity(str(tmp_path), 3, 1)            # written at the first start
    path = tmp_path / identity.IDENTITY_FILE
    raw = bytearray(path.read_bytes())
    identity.check_identity(str(tmp_path), 3, 1)            # control: the good file passes
    raw[24] ^= 0x01                                         # the reserved word: ids unchanged
    path.write_bytes(bytes(raw))
    with pytest.raises(ConfigError, match="fails its checksum"):
        identity.check_identity(str(tmp_path), 3, 1)
