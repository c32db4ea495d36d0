"""Review s22 of the piggybacked STATUS and the tail-HEARTBEAT back-off (ddc765a).

- ``ClientConfig.stream_heartbeat_interval_ns`` takes any int64 (the natural "never" is
  2**63 - 1), but the compiled ``_heartbeat_due_ns`` adds it to the last emit time in int64:
  the sum wraps negative and a HEARTBEAT goes out on every timer run (each ms) while data is
  unacknowledged. The reference model (Python ints) sends none. The sum now saturates.
- The back-off restarts on an acknowledgement alone (no new data): the commit's own test sends
  new data with the answer, which restarts it too, so it passes without that rule. Pinned here
  on both implementations.
"""
from __future__ import annotations

import pytest

from aeronpy import ClientConfig
from aeronpy._frame import HEARTBEAT, FrameReader, FrameWriter
from aeronpy.transport.counters import TransportCounters
from aeronpy.transport.streams import StreamConfig, StreamSender

from . import reference_streams as reference

MS = 1_000_000
T0 = 10**15          # a monotonic clock some days after boot


def _heartbeats(sender_cls, config, until_ns, acks=None, step_ns=MS // 2):
    """Times (ms after T0) of the HEARTBEATs of a sender holding two unacknowledged messages,
    its do_work run every ``step_ns``; ``acks``: {ms: consumed position} STATUS answers."""
    frames = []
    s = sender_cls(FrameWriter(7, 0, 1, 42), frames.append, config, TransportCounters(), T0)
    s.offer(b"a" * 10, T0)
    s.offer(b"b" * 10, T0)
    reader, times, acks = FrameReader(), [], dict(acks or {})
    for step in range(until_ns // step_ns + 1):
        now = T0 + step * step_ns
        at_ms = (now - T0) / MS
        if at_ms in acks:
            s.on_status(acks.pop(at_ms), config.window_bytes, now)
        before = len(frames)
        s.do_work(now)
        times += [at_ms for f in frames[before:] if reader.read(f) == HEARTBEAT]
    return times


def _client_stream_config(heartbeat_interval_ns):
    # as ClusterClient.connect builds it from a ClientConfig
    cfg = ClientConfig(stream_heartbeat_interval_ns=heartbeat_interval_ns)
    return StreamConfig.for_message_bytes(cfg.max_message_bytes,
                                          heartbeat_interval_ns=cfg.stream_heartbeat_interval_ns)


def test_the_largest_heartbeat_interval_a_client_accepts_sends_no_heartbeat():
    cfg = _client_stream_config(2**63 - 1)
    assert _heartbeats(StreamSender, cfg, 20 * MS) == []      # [0.0, 0.5, 1.0, ...] before a fix


def test_control_the_reference_and_a_normal_interval():
    # the reference model never probes with that interval; the driver does see probes at 5 ms
    assert _heartbeats(reference.StreamSender, _client_stream_config(2**63 - 1), 20 * MS) == []
    assert _heartbeats(StreamSender, _client_stream_config(5 * MS), 20 * MS) == [5, 15]


@pytest.mark.parametrize("sender_cls", [StreamSender, reference.StreamSender],
                         ids=["compiled", "reference"])
def test_an_acknowledgement_without_new_data_restarts_the_back_off(sender_cls):
    cfg = StreamConfig(heartbeat_interval_ns=5 * MS, idle_interval_ns=100 * MS)
    # probes at 5, 15, 35; at 36 the first message (10 bytes) is acknowledged, the second not:
    # the next probe comes 5 ms after the last one (40), not 40 ms after it (75)
    assert _heartbeats(sender_cls, cfg, 80 * MS, acks={36: 10}) == [5, 15, 35, 40, 50, 70]


@pytest.mark.parametrize("sender_cls", [StreamSender, reference.StreamSender],
                         ids=["compiled", "reference"])
def test_control_without_an_acknowledgement_the_back_off_goes_on(sender_cls):
    cfg = StreamConfig(heartbeat_interval_ns=5 * MS, idle_interval_ns=100 * MS)
    assert _heartbeats(sender_cls, cfg, 80 * MS) == [5, 15, 35, 75]
