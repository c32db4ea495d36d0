"""Golden byte vectors: one fixed instance of every message type and its exact encoding, stored in
golden.json, so the wire format cannot drift silently.

To change the format on purpose: bump the version (or, for a consensus message only, which
members of one version exchange, say so in docs/wire-format.md), then regenerate with
    python tests/codec/test_codec_golden.py --write
and review the diff of golden.json by eye.
"""
import json
import os
import sys

import pytest

from aeronpy import _codec as codec
from aeronpy.cluster import protocol as p
from aeronpy.core import messages as m

GOLDEN_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden.json")

# Two packed entries: (term 3, type 16, b"buy 10@99.5") and (term 3, type 1, b"").
_ENTRIES = (bytes.fromhex("0b000000" "1000" "0000" "0300000000000000") + b"buy 10@99.5"
            + bytes.fromhex("00000000" "0100" "0000" "0300000000000000"))

GOLDEN_INSTANCES = [
    m.CanvassPosition(term=5, proposed_term=6, last_log_term=4, last_log_index=1000, ballot_tag=-7),
    m.RequestVote(term=6, last_log_term=4, last_log_index=1000, transfer=True,
                  ballot_tag=0x1122334455667788),
    m.Vote(term=6, granted=True, pre=False),
    m.AppendEntries(term=3, prev_index=41, prev_term=2, commit_index=40, entries=_ENTRIES, count=2),
    m.AppendResponse(term=3, success=False, match_index=0, conflict_index=17, conflict_term=2),
    m.Heartbeat(term=3, commit_index=43),
    m.HeartbeatResponse(term=3, last_index=43),
    m.TimeoutNow(term=-1),
    m.InstallSnapshot(term=3, snapshot_index=500, snapshot_term=2, offset=65536, total_bytes=131072,
                      done=True, data=b"\x00\x01\xfe\xff"),
    m.InstallSnapshotResponse(term=3, snapshot_index=500, offset=131072, success=True),
    p.SessionConnect(correlation_id=-2, client_nonce=0x0123456789ABCDEF, response_endpoint="127.0.0.1:9020",
                     credentials=b"tok", protocol_version=1),
    p.SessionEvent(correlation_id=9, session_id=77, code=p.EVENT_REDIRECT, leader_member_id=2,
                   leadership_term=3, detail="10.0.0.2:9010 é"),
    p.SessionMessage(session_id=77, seq=12, correlation_id=1001, service_id=0, payload=b"ping"),
    p.SessionKeepAlive(session_id=77, leadership_term=3),
    p.SessionClose(session_id=77, leadership_term=3),
    p.NewLeaderEvent(session_id=77, leadership_term=4, leader_member_id=1,
                     ingress_endpoints="h0:9010,h1:9010,h2:9010"),
    p.EgressMessage(session_id=77, correlation_id=1001, ack_seq=12, payload=b"pong"),
    p.SessionAck(session_id=77, leadership_term=4, ack_seq=2 ** 63 - 1),
    p.SessionWindow(session_id=77, leadership_term=4, window_base=13),
    p.AdminRequest(correlation_id=5, request_type=1, payload=b""),
    p.AdminResponse(correlation_id=5, request_type=1, code=-7, payload=b"{}"),
]


def _load_golden() -> dict:
    with open(GOLDEN_PATH, encoding="utf-8") as f:
        return json.load(f)


def test_golden_covers_every_message_type_once():
    golden = _load_golden()
    names = [type(msg).__name__ for msg in GOLDEN_INSTANCES]
    assert sorted(names) == sorted(cls.__name__ for cls in codec.message_classes().values())
    assert sorted(golden) == sorted(names)


@pytest.mark.parametrize("msg", GOLDEN_INSTANCES, ids=lambda msg: type(msg).__name__)
def test_encoding_matches_golden_bytes(msg):
    entry = _load_golden()[type(msg).__name__]
    assert entry["repr"] == repr(msg), "the golden instance itself changed"
    assert codec.encode(msg).hex() == entry["hex"]
    assert codec.decode(bytes.fromhex(entry["hex"])) == msg


def _write_golden() -> None:
    golden = {type(msg).__name__: {"repr": repr(msg), "hex": codec.encode(msg).hex()}
              for msg in GOLDEN_INSTANCES}
    with open(GOLDEN_PATH, "w", encoding="utf-8") as f:
        json.dump(golden, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        _write_golden()
        print(f"wrote {GOLDEN_PATH}")
