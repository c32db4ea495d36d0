"""bench/bigmsg_trial's pure parts on hand-made inputs: payload and reply layouts and the
byte-exact reply check, the fragment-boundary sizes, the scenarios' phases, the memory bound
and the verdict helpers. No cluster, no iptables."""
import hashlib
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))

from bigmsg_trial import faults, plan  # noqa: E402

MIB = plan.MIB


# -- payloads and the reply check -------------------------------------------------------------

def test_request_round_trips_and_a_flipped_byte_is_seen():
    payload = plan.request_payload("B1:7", 5000, 1234)
    assert len(payload) == 5000
    assert plan.parse_request(payload) == ("B1:7", 1234, True)
    bad = bytearray(payload)
    bad[4000] ^= 1
    assert plan.parse_request(bytes(bad)) == ("B1:7", 1234, False)
    with pytest.raises(ValueError):
        plan.request_payload("B1:7", 5, 0)              # cannot hold its own header


@pytest.mark.parametrize("reply_size", [1, plan.MIN_REPLY_BYTES, 4096])
def test_exact_reply_passes_and_every_kind_of_damage_is_named(reply_size):
    key, request = "K:3", plan.request_payload("K:3", 300, reply_size)
    reply = plan.reply_payload(key, 1, hashlib.sha256(request).digest(), reply_size)
    assert plan.check_reply(key, request, reply_size, reply) == "1"
    assert plan.check_reply(key, request, reply_size, plan.reply_payload(
        key, 2, hashlib.sha256(request).digest(), reply_size)) == "2"       # applied twice
    assert "bytes, not" in plan.check_reply(key, request, reply_size, reply[:-1])
    other = plan.request_payload("K:4", 300, reply_size)
    assert "another request" in plan.check_reply(key, other, reply_size, reply)
    if reply_size > plan.MIN_REPLY_BYTES:
        damaged = bytearray(reply)
        damaged[-1] ^= 0x80
        assert plan.check_reply(key, request, reply_size, bytes(damaged)) == f"reply byte {reply_size - 1} differs"
    assert plan.check_reply(key, request, reply_size, plan.REFUSED_PREFIX + b"x").startswith("REFUSED:")


# -- sizes ----------------------------------------------------------------------------------------

def test_boundary_sizes_straddle_whole_fragments_of_the_enveloped_message():
    sizes = plan.boundary_sizes(MIB, header=36, ks=(1, 2))
    f = plan.FRAGMENT_PAYLOAD_BYTES
    assert {f - 37, f - 36, f - 35, 2 * f - 37, 2 * f - 36, 2 * f - 35} <= set(sizes)
    assert sizes[-1] == MIB and all(s <= MIB for s in sizes)
    last = (MIB + 36) // f
    assert last * f - 36 - 1 in sizes


def test_limit_cases_cover_max_both_ways_and_max_plus_one_both_ways():
    cases = {name: (req, rep, expected) for name, req, rep, expected in plan.limit_cases(MIB)}
    assert cases["request and reply max"] == (MIB, MIB, "1")
    assert cases["reply max+1"] == (256, MIB + 1, "refused")
    assert cases["request max+1"] == (MIB + 1, plan.MIN_REPLY_BYTES, "too-large")
    pairs = [(req, rep) for req, rep, _ in cases.values()]
    assert len(pairs) == len(set(pairs))                 # no case twice


def test_size_cycle_parses_units_and_defaults_the_reply():
    assert plan.size_cycle("4k/64,1m/1m,100") == [(4096, 64), (MIB, MIB), (100, 36)]
    with pytest.raises(ValueError):
        plan.size_cycle("0/5")


def test_limit_violations_only_for_unexpected_outcomes():
    ok = [["a", "1", "1"], ["b", "refused", "REFUSED:MessageTooLargeError: x"], ["c", "too-large", "raised: x"]]
    assert plan.limit_violations(ok) == []
    bad = [["a", "1", "timeout"], ["b", "refused", "1"], ["c", "too-large", "offer() accepted it"]]
    assert len(plan.limit_violations(bad)) == 3


# -- phases, kills, recovery ----------------------------------------------------------------------

def test_every_scenario_expands_and_tags_are_unique_over_the_run():
    phases = [p for s in plan.SCENARIOS for p in plan.phases_for(s)]
    tags = [tag for p in phases for _, tag, _, _ in p.clients]
    assert len(tags) == len(set(tags))
    assert [p.loss_pct for p in plan.phases_for("loss")] == [1.0, 5.0]
    assert plan.phases_for("kill")[0].kills == 2
    assert [p.name for p in plan.phases_for("hol")] == ["hol-alone", "hol-seq", "hol-flood"]
    assert plan.phases_for("hol")[1].small_tags == ("Hs",)
    with pytest.raises(ValueError):
        plan.phases_for("nope")


def test_kills_leave_a_third_of_the_phase_to_recover():
    assert plan.kill_offsets(30.0, 2) == [6.667, 13.333]
    assert plan.kill_offsets(10.0, 0) == []
    assert all(t <= 30.0 * 2 / 3 for t in plan.kill_offsets(30.0, 5))


def test_recovery_is_the_first_acknowledgement_completed_after_the_kill():
    records = [[99.0, 0.5e9, "ack"], [99.5, 2.0e9, "ack"], [100.2, 0.1e9, "timeout"], [100.5, 0.2e9, "ack"]]
    assert plan.recovery_s(100.0, records) == 0.7         # 100.7, the second record (101.5) is later
    assert plan.recovery_s(200.0, records) is None


# -- memory, figures, faults -------------------------------------------------------------------------

def test_memory_bound_adds_up_its_named_parts():
    bound = plan.member_memory_bound(clients=2, reply_bytes=MIB)
    assert bound["reply_cache"] == 2 * 256 * MIB
    assert bound["client_send_buffers"] == 2 * 8 * MIB
    assert bound["raft_log"] == 2 * 256 * MIB + MIB       # until a follower's own snapshot
    assert bound["total"] == sum(v for k, v in bound.items() if k != "total")
    small = plan.member_memory_bound(clients=2, reply_bytes=36)
    assert small["total"] < bound["total"]


def test_memory_violations_flag_only_growth_past_the_bound():
    samples = {0: [(0.0, 100 * MIB), (1.0, 180 * MIB)], 1: [(0.0, 100 * MIB), (1.0, 120 * MIB)], 2: []}
    out = plan.memory_violations(samples, {0: 100 * MIB, 1: 100 * MIB, 2: 100 * MIB}, 50 * MIB)
    assert len(out) == 1 and out[0].startswith("member 0: RssAnon rose 80 MiB")


def test_percentiles_nearest_rank_and_throughput():
    assert plan.percentiles(list(range(1, 101))) == {"p50": 50, "p99": 99}
    assert plan.percentiles([]) == {"p50": None, "p99": None}
    assert plan.throughput_mb_s(10 * MIB, 2.0) == 5.0 and plan.throughput_mb_s(1, 0) == 0.0


def test_fault_rules_duplicate_before_they_drop_both_directions():
    ports = [{"consensus_port": 34000, "ingress_port": 34001, "admin_port": 34002}]
    rules = faults.fault_rules(2.0, 1.0, ports)
    assert [r[-1] if r[-1] == "DROP" else r[-3] for r in rules] == ["TEE", "TEE", "DROP", "DROP"]
    assert rules[0][rules[0].index("--dports") + 1] == "34000,34001"
    assert rules[1][rules[1].index("--sports") + 1] == "34001"
    assert faults.fault_rules(0, 0, ports) == []
