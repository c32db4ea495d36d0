"""Review of 5f18986 ("only acknowledgements wait for a follower's sync"), node level.

Since 5f18986 a follower's votes, refusals and heartbeat replies go at once; only accepted
AppendResponses wait for its sync (docs/operations.md says so). What the node tells an
operator said its votes wait (strict xfails until the texts were fixed).
"""
from __future__ import annotations

import logging
from types import SimpleNamespace

from aeronpy.cluster.node import ClusterNode
from aeronpy.cluster.node_counters import REFUSAL_COUNTERS


def test_a_followers_slow_sync_warning_does_not_say_its_votes_wait(caplog):
    counters = {}
    fake = SimpleNamespace(
        core=SimpleNamespace(counters_add=lambda name, n=1: counters.__setitem__(name, n)),
        _sync_slow=False, _slow_sync_warn_at_ns=0, log=logging.getLogger("review3"),
        config=SimpleNamespace(file_sync="data", heartbeat_interval_ms=50))
    with caplog.at_level(logging.WARNING, logger="review3"):
        ClusterNode._note_slow_sync(fake, 10**9, 500 * 10**6, leading=False)
    text = caplog.text
    assert "acknowledgements" in text and counters == {"slow_log_syncs": 1}
    assert "votes" not in text, text


def test_counter_descriptions_do_not_say_votes_wait_for_the_sync():
    texts = {name: text for _kind, name, text in REFUSAL_COUNTERS}
    assert "votes" not in texts["slow_log_syncs"].lower(), texts["slow_log_syncs"]
    assert "votes" not in texts["held_messages_dropped"].lower(), texts["held_messages_dropped"]
