"""Transport layer: reliable, ordered, flow-controlled message streams over UDP.

``UdpTransport`` (udp.py) runs the streams (streams.py) over the compiled poll loop
(``aeronpy._udp``) and frame layer (``aeronpy._frame``), with admission (admission.py) and
plain-int counters (counters.py). Protocol: docs/transport.md.
"""
from aeronpy.transport.counters import DROP_REASONS, TransportCounters
from aeronpy.transport.streams import BACK_PRESSURED, CLOSED, NOT_CONNECTED, StreamConfig
from aeronpy.transport.udp import CLIENT_SENDER_ID, UdpTransport

__all__ = ["UdpTransport", "StreamConfig", "TransportCounters", "DROP_REASONS",
           "BACK_PRESSURED", "CLOSED", "NOT_CONNECTED", "CLIENT_SENDER_ID"]
