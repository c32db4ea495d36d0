"""A member raises its election and leader-heartbeat timeouts to twice its last snapshot's
pause (docs/snapshots.md). The raise had no cap: one freak pause (swap, a stalled VM) of 30 s
set failover to a minute until the next snapshot, past the session timeout, so that failover
would also have closed every client session. It is now capped so that the raised
leader-heartbeat plus election timeout stays below session_timeout_ms, the relation the
configuration checks at load."""
from __future__ import annotations

import logging

from hypothesis import given, settings
from hypothesis import strategies as st

from aeronpy.cluster.node import adaptive_timeouts_ns
from tests.ops.opsfiles import one_member_node

MS = 1_000_000


def test_a_short_pause_keeps_the_configured_timeouts():
    assert adaptive_timeouts_ns(50 * MS, 200 * MS, 400 * MS, 10_000 * MS) == (200 * MS, 400 * MS, False)


def test_a_pause_raises_both_timeouts_to_twice_the_pause():
    assert adaptive_timeouts_ns(500 * MS, 200 * MS, 400 * MS, 10_000 * MS) == (1000 * MS, 1200 * MS, False)


def test_a_freak_pause_is_capped_below_the_session_timeout():
    election, leader, capped = adaptive_timeouts_ns(30_000 * MS, 200 * MS, 400 * MS, 10_000 * MS)
    assert capped
    assert election == (10_000 * MS - 400 * MS + 200 * MS - 1) // 2      # 4.9 s less 1 ns
    assert leader - election == 200 * MS
    assert election + leader < 10_000 * MS


@settings(max_examples=500, deadline=None)
@given(e=st.integers(1, 3_600_000), l_=st.integers(1, 3_600_000), extra=st.integers(1, 10**7),
       pause=st.integers(0, 10**13))
def test_the_raised_timeouts_keep_the_load_time_relation(e, l_, extra, pause):
    e, l_ = e * MS, l_ * MS
    session = e + l_ + extra                         # what the configuration accepts: S > L + E
    election, leader, capped = adaptive_timeouts_ns(pause, e, l_, session)
    assert election >= e and leader >= l_
    assert leader - election == l_ - e
    assert election + leader < session
    if not capped:
        assert election == max(e, 2 * pause)
    else:
        assert election < 2 * pause


def test_a_node_caps_its_timeouts_and_warns_once_per_larger_pause(tmp_path, caplog):
    node = one_member_node(tmp_path, log_level="INFO")
    try:
        cfg = node.core.config
        fit = node._fit_timeouts_to_pause        # what each snapshot's pause calls
        with caplog.at_level(logging.INFO, logger="aeronpy"):
            fit(500 * MS)
            assert (cfg.election_timeout_ns, cfg.leader_heartbeat_timeout_ns) == (1000 * MS, 1200 * MS)
            assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
            fit(30_000 * MS)
            assert cfg.election_timeout_ns + cfg.leader_heartbeat_timeout_ns < 10_000 * MS
            assert cfg.election_timeout_ns > 4_800 * MS
            fit(20_000 * MS)                          # capped again, smaller: not said again
            fit(40_000 * MS)                          # larger: said again
            warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warnings) == 2, warnings
            assert "capped" in warnings[0] and "session_timeout_ms 10000" in warnings[0]
            fit(1 * MS)                               # a quick snapshot brings them back
            assert (cfg.election_timeout_ns, cfg.leader_heartbeat_timeout_ns) == (200 * MS, 400 * MS)
    finally:
        node.close()
