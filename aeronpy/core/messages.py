"""Consensus messages between members (sender id travels in the frame header, not here).

Field types: terms, indexes, positions are int64; member ids int32; flags bool; ``entries`` is a
blob of packed entries (see docs/internal/interfaces.md 1.2) and ``count`` the number of entries
in it; ``data`` bytes. Message type ids 1..31 are consensus messages.
"""
from aeronpy._msgdef import message_class

CanvassPosition = message_class(
    "CanvassPosition", 1, "term proposed_term last_log_term last_log_index ballot_tag",
    defaults={"ballot_tag": 0},
    doc="Pre-vote (canvass): 'could I win an election in proposed_term with this log?' "
        "Sent without raising the sender's term. ballot_tag: the sender's CoreConfig.ballot_tag.")
RequestVote = message_class(
    "RequestVote", 2, "term last_log_term last_log_index transfer ballot_tag",
    defaults={"transfer": False, "ballot_tag": 0},
    doc="Ballot request in `term`; transfer=True when it follows a TimeoutNow (leadership transfer). "
        "ballot_tag: the sender's CoreConfig.ballot_tag.")
Vote = message_class(
    "Vote", 3, "term granted pre",
    defaults={"pre": False},
    doc="Reply to RequestVote (pre=False) or CanvassPosition (pre=True; term is the proposed term).")
AppendEntries = message_class(
    "AppendEntries", 4, "term prev_index prev_term commit_index entries count",
    defaults={"entries": b"", "count": 0},
    doc="Entries [prev_index+1, prev_index+count] as a packed-entry blob; commit_index is the leader's.")
AppendResponse = message_class(
    "AppendResponse", 5, "term success match_index conflict_index conflict_term",
    defaults={"conflict_index": 0, "conflict_term": 0},
    doc="success: match_index is the follower's last index verified to match the leader. "
        "Reject: conflict_term is the follower's term at the leader's prev_index (0 if its log is "
        "shorter) and conflict_index the first index of that term (or its last_index + 1), so the "
        "leader backs up over a whole term in one round trip.")
Heartbeat = message_class(
    "Heartbeat", 6, "term commit_index",
    doc="Leader liveness; commit_index is min(follower's match, leader's commit).")
HeartbeatResponse = message_class(
    "HeartbeatResponse", 7, "term last_index",
    doc="Follower's reply to a Heartbeat (check-quorum liveness; last_index lets the leader probe).")
TimeoutNow = message_class(
    "TimeoutNow", 8, "term",
    doc="Leadership transfer: the receiver starts an election at once, skipping the canvass.")
InstallSnapshot = message_class(
    "InstallSnapshot", 9, "term snapshot_index snapshot_term offset total_bytes done data",
    doc="One chunk of a snapshot; done=True on the last chunk.")
InstallSnapshotResponse = message_class(
    "InstallSnapshotResponse", 10, "term snapshot_index offset success",
    doc="Acknowledges a snapshot chunk (offset = bytes received so far).")

CONSENSUS_MESSAGES = (CanvassPosition, RequestVote, Vote, AppendEntries, AppendResponse, Heartbeat,
                      HeartbeatResponse, TimeoutNow, InstallSnapshot, InstallSnapshotResponse)

# Terms, indexes and offsets a member could ever reach. 2**62 leaves room for every "+ 1" the
# core does on a peer's value: a corrupt or forged term of 2**63 - 1 once overflowed the next
# election's term, killed the member, and, already persisted in node.state, killed it again at
# every restart (a single datagram on a cluster without a secret).
MAX_WIRE_VALUE = 2 ** 62
# How far past its own term a member adopts a peer's. Any fixed ceiling on terms is a trap: a
# member that adopted the ceiling campaigns one above it, which every peer drops, so no leader
# is ever elected again (a forged term of exactly 2**62 did that). Legitimate terms move by the
# number of elections held meanwhile, never by billions.
MAX_TERM_STEP = 2 ** 32
_FLAGS_AND_BLOBS = frozenset(("entries", "data", "transfer", "granted", "pre", "success", "done",
                              "ballot_tag"))      # the tag: any i64, compared only
_NUMERIC_FIELDS = {cls: tuple(f for f in cls.FIELDS if f not in _FLAGS_AND_BLOBS)
                   for cls in CONSENSUS_MESSAGES}


def out_of_range(msg) -> bool:
    """True when a term, index, count or offset of a consensus message from a peer lies
    outside [0, MAX_WIRE_VALUE]: a message no member sends, to be dropped and counted."""
    for name in _NUMERIC_FIELDS.get(type(msg), ()):
        value = getattr(msg, name)
        if value < 0 or value > MAX_WIRE_VALUE:
            return True
    return False
