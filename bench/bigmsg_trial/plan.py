"""What the big-message trial sends and how it judges the answers, as pure functions (tested in
tests/ops/test_bigmsg_trial_plan.py): payload and reply layouts, the sizes at fragment
boundaries, the members' memory bound from their configuration, latency summaries.

A request is ``key | reply_size | filler`` where the filler is SHAKE-128 of the key, so the
service can check every request byte and the client every reply byte without either keeping
copies. A reply is ``count (u32) | sha256(request) | filler`` of exactly ``reply_size`` bytes,
the filler SHAKE-128 of ``b"R" + key``.
"""
from __future__ import annotations

import hashlib
import struct
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

MIB = 1 << 20
MAX_MESSAGE_BYTES = MIB                  # the node default (docs/configuration.md)
MTU_BYTES = 1408
FRAGMENT_PAYLOAD_BYTES = MTU_BYTES - 40  # 24-byte frame header + 16-byte DATA body, no MAC
SESSION_MESSAGE_HEADER_BYTES = 36        # docs/wire-format.md, SessionMessage
EGRESS_MESSAGE_HEADER_BYTES = 32         # docs/wire-format.md, EgressMessage
REPLY_HEADER = struct.Struct(">I32s")    # applications of the key, sha256 of the request
MIN_REPLY_BYTES = REPLY_HEADER.size
REFUSED_PREFIX = b"REFUSED:"             # the service's answer when session.offer() refused a reply
REFUSED_TEXT = "REFUSED:MessageTooLargeError"
SEP = b"|"


def filler(seed: bytes, n: int) -> bytes:
    return hashlib.shake_128(seed).digest(n) if n > 0 else b""


def request_payload(key: str, size: int, reply_size: int) -> bytes:
    """A request of exactly ``size`` bytes (at least the header) asking for ``reply_size``."""
    head = key.encode() + SEP + str(reply_size).encode() + SEP
    if size < len(head):
        raise ValueError(f"request of {size} bytes cannot hold its header {head!r}")
    return head + filler(key.encode(), size - len(head))


def parse_request(message) -> Tuple[str, int, bool]:
    """(key, reply_size, every filler byte as sent) of a request; ValueError if unreadable."""
    data = bytes(message)
    first = data.index(SEP)
    second = data.index(SEP, first + 1)
    key = data[:first].decode()
    reply_size = int(data[first + 1:second])
    body = data[second + 1:]
    return key, reply_size, body == filler(key.encode(), len(body))


def reply_payload(key: str, count: int, request_digest: bytes, reply_size: int) -> bytes:
    n = max(reply_size, MIN_REPLY_BYTES)
    return REPLY_HEADER.pack(count, request_digest) + filler(b"R" + key.encode(), n - MIN_REPLY_BYTES)


def check_reply(key: str, request: bytes, reply_size: int, reply) -> str:
    """"1" when ``reply`` is byte for byte the one applied-once answer to ``request``, else
    what is wrong with it (the loss trial's checker wants "1")."""
    data = bytes(reply)
    if data.startswith(REFUSED_PREFIX):
        return data[:200].decode(errors="replace")
    want = max(reply_size, MIN_REPLY_BYTES)
    if len(data) != want:
        return f"reply of {len(data)} bytes, not {want}"
    count, digest = REPLY_HEADER.unpack_from(data)
    if digest != hashlib.sha256(request).digest():
        return "reply names another request (digest differs)"
    expected = filler(b"R" + key.encode(), want - MIN_REPLY_BYTES)
    if data[MIN_REPLY_BYTES:] != expected:
        bad = next(i for i, (a, b) in enumerate(zip(data[MIN_REPLY_BYTES:], expected)) if a != b)
        return f"reply byte {MIN_REPLY_BYTES + bad} differs"
    return str(count)


def boundary_sizes(max_bytes: int = MAX_MESSAGE_BYTES, header: int = 0,
                   ks: Sequence[int] = (1, 2, 3, 47, 48, 766)) -> List[int]:
    """Payload sizes that put the message (payload + ``header`` of its envelope) one byte
    short of, exactly at and one byte past ``k`` whole fragments, and the largest fragment
    count the limit allows; all within [MIN_REPLY_BYTES, max_bytes]."""
    last = (max_bytes + header) // FRAGMENT_PAYLOAD_BYTES
    sizes = set()
    for k in (*ks, last):
        for d in (-1, 0, 1):
            n = k * FRAGMENT_PAYLOAD_BYTES - header + d
            if MIN_REPLY_BYTES + 64 <= n <= max_bytes:
                sizes.add(n)
    return sorted(sizes | {max_bytes})


def limit_cases(max_bytes: int = MAX_MESSAGE_BYTES) -> List[Tuple[str, int, int, str]]:
    """(name, request_size, reply_size, expected) of the sizes scenario: expected "1" (a
    byte-exact reply), "refused" (the service's session.offer() raised MessageTooLargeError)
    or "too-large" (the client's offer() must raise MessageTooLargeError at once)."""
    cases = []
    for n in boundary_sizes(max_bytes, SESSION_MESSAGE_HEADER_BYTES) + boundary_sizes(max_bytes):
        cases.append((f"request {n}", n, MIN_REPLY_BYTES, "1"))
    for n in boundary_sizes(max_bytes, EGRESS_MESSAGE_HEADER_BYTES) + boundary_sizes(max_bytes):
        cases.append((f"reply {n}", 256, n, "1"))
    cases.append(("request and reply max", max_bytes, max_bytes, "1"))
    cases.append(("reply max+1", 256, max_bytes + 1, "refused"))
    cases.append(("request max+1", max_bytes + 1, MIN_REPLY_BYTES, "too-large"))
    seen, unique = set(), []
    for case in cases:
        if case[1:] not in seen:
            seen.add(case[1:])
            unique.append(case)
    return unique


def size_cycle(spec: str) -> List[Tuple[int, int]]:
    """"4k/64,64k/64k,1m/1m" -> [(request_size, reply_size), ...]."""
    units = {"k": 1024, "m": MIB, "": 1}

    def parse(text: str) -> int:
        text = text.strip().lower()
        unit = text[-1] if text and text[-1] in "km" else ""
        value = int(text[:-1] if unit else text) * units[unit]
        if value <= 0:
            raise ValueError(f"size must be positive: {text!r}")
        return value

    pairs = []
    for item in spec.split(","):
        request, _, reply = item.partition("/")
        pairs.append((parse(request), parse(reply or "36")))
    return pairs


def member_memory_bound(*, max_message_bytes: int = MAX_MESSAGE_BYTES, clients: int,
                        reply_bytes: int, followers: int = 2, reply_cache_messages: int = 256,
                        egress_queue_max: int = 4096, window_bytes: int = 128 * 1024,
                        max_append_bytes: int = 64 * 1024, snapshot_log_bytes: int = 256 * MIB,
                        slack_bytes: int = 64 * MIB) -> Dict[str, int]:
    """The growth of a member's anonymous memory (RssAnon) over its idle baseline that its
    configuration allows, by part (bytes). Stream buffers as StreamConfig.for_message_bytes
    sizes them (node.py): a send buffer holds 2 x the stream's largest message, at least 8 MiB;
    a receiver holds one reassembly (the largest message) and a window of out-of-order frames
    (plus ~136 bytes each, at most max(window / 16, 1024) of them). The reply cache holds
    reply_cache_messages replies per session; an egress queue egress_queue_max replies per
    client. The in-memory Raft log (LogIndex) keeps every entry's payload until a snapshot drops
    the prefix: a member snapshots past snapshot_log_bytes, a follower on its own only past twice
    that, plus the entry that crossed it. ``slack_bytes``: the Python allocator's arenas and a duty cycle's transient copies
    of a message (decode, log append, apply), which no setting names."""
    client_stream = max(max_message_bytes, 256 * 1024) + 4096
    client_largest = max(4 * MIB, client_stream)
    consensus_largest = max(4 * MIB, max_append_bytes + client_stream)
    held = window_bytes + max(window_bytes // 16, 1024) * 136
    parts = {
        "client_receivers": clients * (client_stream + held),
        "client_send_buffers": clients * max(8 * MIB, 2 * client_largest),
        "egress_queues": clients * egress_queue_max * reply_bytes,
        "reply_cache": clients * reply_cache_messages * reply_bytes,
        "consensus_send_buffers": followers * max(8 * MIB, 2 * consensus_largest),
        "consensus_receivers": followers * (consensus_largest + held),
        "raft_log": 2 * snapshot_log_bytes + max_message_bytes,
        "slack": slack_bytes,
    }
    parts["total"] = sum(parts.values())
    return parts


def percentiles(values: Sequence[float], points: Sequence[float] = (50, 99)) -> Dict[str, Optional[float]]:
    """Nearest-rank percentiles (None for no values)."""
    ordered = sorted(values)
    out: Dict[str, Optional[float]] = {}
    for p in points:
        if not ordered:
            out[f"p{p:g}"] = None
            continue
        rank = max(1, -(-len(ordered) * p // 100))
        out[f"p{p:g}"] = ordered[int(rank) - 1]
    return out


def throughput_mb_s(acked_bytes: int, seconds: float) -> float:
    return round(acked_bytes / MIB / seconds, 2) if seconds > 0 else 0.0


def memory_violations(samples: Mapping[int, Sequence[Tuple[float, int]]], baselines: Mapping[int, int],
                      bound: int, label: str = "member") -> List[str]:
    """Each process whose RssAnon (samples: (t, bytes)) rose above its baseline + ``bound``."""
    out = []
    for who, series in sorted(samples.items()):
        if not series or who not in baselines:
            continue
        peak = max(v for _, v in series)
        if peak - baselines[who] > bound:
            out.append(f"{label} {who}: RssAnon rose {(peak - baselines[who]) / MIB:.0f} MiB over its "
                       f"baseline, above the bound of {bound / MIB:.0f} MiB")
    return out


# -- the scenarios, as phases ------------------------------------------------------------------
MIX = "4k/4k,64k/36,256k/256k,1m/36,36/1m,1m/1m"      # (request/reply) sizes the big client cycles
SMALL = "64/36"


class Phase(NamedTuple):
    name: str
    loss_pct: float = 0.0
    dup_pct: float = 0.0
    kills: int = 0                    # leader SIGKILLs (restarted 2 s later), spread over the phase
    clients: Tuple[Tuple[str, str, float, str], ...] = ()   # (kind, tag, rate/s or 0, sizes)
    until_clients_done: bool = False  # the phase lasts until its clients exit (bounded)

    @property
    def small_tags(self) -> Tuple[str, ...]:
        return tuple(tag for kind, tag, _, sizes in self.clients if sizes == SMALL)


SCENARIOS: Dict[str, str] = {
    "sizes": "fragment-boundary sizes, max_message_bytes request and reply, max+1 both ways",
    "loss": "mixed 4 KiB..1 MiB requests and replies at 1 % then 5 % loss, beside a paced small client",
    "dup": "the same at 2 % loss and 2 % duplicated datagrams",
    "kill": "1 MiB requests and replies at 1 % loss; the leader SIGKILLed twice mid-stream, restarted",
    "flood": "offer() of 1 MiB, then of 64 KiB messages as fast as accepted (memory, MB/s)",
    "hol": "a paced small client alone, beside a closed-loop 1 MiB client, beside a 1 MiB flood",
}
DEFAULT_SCENARIOS = ",".join(SCENARIOS)


def phases_for(scenario: str) -> List[Phase]:
    """The phases of one scenario; client tags are unique over the run."""
    small = lambda tag, rate=100.0: ("seq", tag, rate, SMALL)          # noqa: E731
    if scenario == "sizes":
        return [Phase("sizes", clients=(("limits", "L", 0.0, ""),), until_clients_done=True)]
    if scenario == "loss":
        return [Phase(f"loss{pct:g}", loss_pct=pct, clients=(("seq", f"B{pct:g}", 0.0, MIX), small(f"S{pct:g}")))
                for pct in (1.0, 5.0)]
    if scenario == "dup":
        return [Phase("dup2", loss_pct=2.0, dup_pct=2.0, clients=(("seq", "Bd", 0.0, MIX), small("Sd")))]
    if scenario == "kill":
        return [Phase("kill", loss_pct=1.0, kills=2, clients=(("seq", "K", 0.0, "1m/1m"), small("Sk")))]
    if scenario == "flood":
        return [Phase("flood1m", clients=(("flood", "F1", 0.0, "1m/36"),)),
                Phase("flood64k", clients=(("flood", "F64", 0.0, "64k/36"),))]
    if scenario == "hol":
        return [Phase("hol-alone", clients=(small("Ha", 200.0),)),
                Phase("hol-seq", clients=(small("Hs", 200.0), ("seq", "Hb", 0.0, "1m/1m"))),
                Phase("hol-flood", clients=(small("Hf", 200.0), ("flood", "Hg", 0.0, "1m/36")))]
    raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")


def kill_offsets(phase_s: float, kills: int) -> List[float]:
    """When (s from the phase's start) each kill happens: evenly spread, the last leaving at
    least a third of the phase to recover in."""
    return [round(phase_s * 2 / 3 * (i + 1) / (kills + 1), 3) for i in range(kills)]


def recovery_s(kill_at: float, records: Sequence[list]) -> Optional[float]:
    """From a kill (wall clock s) to the first acknowledged request of ``records`` completed
    after it (sent before or after it); None: none was."""
    done = [r[0] + r[1] / 1e9 for r in records if r[2] == "ack" and r[0] + r[1] / 1e9 > kill_at]
    return round(min(done) - kill_at, 3) if done else None


def limit_violations(cases: Sequence[Sequence[str]]) -> List[str]:
    """Each limits case whose outcome is not the expected one."""
    out = []
    for name, expected, got in cases:
        ok = {"1": got == "1",
              "refused": str(got).startswith(REFUSED_TEXT),
              "too-large": str(got).startswith("raised")}.get(expected, False)
        if not ok:
            out.append(f"{name}: expected {expected}, got {got}")
    return out
