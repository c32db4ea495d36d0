"""Mutation testing, round 5 (the async sync): RaftCore.note_durable is capped at what the
driver was handed since the last cut."""
from __future__ import annotations

from .harness import PaperNet


def test_a_sync_of_cut_entries_claims_nothing_past_the_written_end():
    net = PaperNet(3)
    net.elect(0)
    net[0].propose(16, b"x")
    net.flush(0)
    (src, _dst, append), = net.take(src=0, dst=1)
    follower = net[1]
    follower.step(src, append, net.now)
    rd = follower.ready()
    index = rd.persist_hi - 1
    follower.advance(rd, durable=False)            # written, its sync still running
    assert follower.written_index == index and follower.persisted_index < index
    assert follower.commit_index < index
    follower.truncate_log(index)                   # cut before that sync finished
    rd = follower.ready()
    assert rd.truncate_from == index
    follower.advance(rd, durable=False)
    follower.note_durable(index)                   # the old sync reports the cut entry
    assert follower.written_index == index - 1
    assert follower.persisted_index == index - 1
