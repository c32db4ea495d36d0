"""Mutation testing, round 5b (the async sync, second half): what the core's mutants showed
no fast test held (RaftCore.truncate_log, has_ready, note_durable)."""
from __future__ import annotations

from .harness import PaperNet


def _follower_with_an_append(durable):
    """A follower (1) that took the leader's append of one entry and advanced its Ready,
    ``durable`` or with its sync still running. Returns (net, follower, the entry's index)."""
    net = PaperNet(3)
    net.elect(0)
    net[0].propose(16, b"x")
    net.flush(0)
    (src, _dst, append), = net.take(src=0, dst=1)
    follower = net[1]
    follower.step(src, append, net.now)
    rd = follower.ready()
    index = rd.persist_hi - 1
    follower.advance(rd, durable=durable)
    return net, follower, index


def test_a_cut_takes_the_durable_end_back_below_the_cut():
    """truncate_log(i) on a synced entry: persisted_index drops to i - 1. Else a new entry
    written at i later counted as durable before its sync (the entry durable at i was the cut
    one), and as leader this member's copy counted towards a commit it did not hold."""
    _net, follower, index = _follower_with_an_append(durable=True)
    assert follower.persisted_index == follower.written_index == index
    follower.truncate_log(index)
    assert follower.written_index == index - 1
    assert follower.persisted_index == index - 1
    rd = follower.ready()
    assert rd.truncate_from == index
    follower.advance(rd, durable=False)
    assert follower.persisted_index == index - 1


def test_entries_written_but_not_synced_are_not_handed_out_again():
    """has_ready compares the log's end with written_index, not persisted_index: a follower
    whose sync is running has no Ready until something new comes (the node would otherwise
    take an empty Ready every cycle, and never park, for the whole sync)."""
    _net, follower, index = _follower_with_an_append(durable=False)
    assert follower.written_index == index and follower.persisted_index < index
    assert not follower.has_ready()
    follower.note_durable(index)
    assert follower.persisted_index == index and not follower.has_ready()


def test_the_rejoin_mark_waits_for_the_target_to_be_durable_not_only_committed():
    """rejoin_caught_up counts min(commit_index, persisted_index): a follower's commit index
    runs ahead of its own sync (its leader committed on the others' copies), and the mark may
    go only once this member holds the target durably (it vouches for it from then on)."""
    _net, follower, index = _follower_with_an_append(durable=False)
    follower.rejoining, follower.rejoin_target = True, index
    follower.set_commit(index)                     # committed on the others' copies
    assert follower.persisted_index < index and follower.term == 1
    assert not follower.rejoin_caught_up()
    follower.note_durable(index)
    assert follower.rejoin_caught_up()


def test_a_sync_of_cut_entries_claims_nothing_past_the_written_end():
    """(Round 5.) RaftCore.note_durable is capped at what the driver was handed since the
    last cut: a sync that finishes after a truncation claims none of the cut entries."""
    _net, follower, index = _follower_with_an_append(durable=False)   # its sync still running
    assert follower.written_index == index and follower.persisted_index < index
    assert follower.commit_index < index
    follower.truncate_log(index)                   # cut before that sync finished
    rd = follower.ready()
    assert rd.truncate_from == index
    follower.advance(rd, durable=False)
    follower.note_durable(index)                   # the old sync reports the cut entry
    assert follower.written_index == index - 1
    assert follower.persisted_index == index - 1
