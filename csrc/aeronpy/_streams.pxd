# cdef contract of aeronpy._streams: the compiled common case of the reliable streams.
# The Python classes in aeronpy/transport/ (streams.py, admission.py, udp.py, counters.py)
# subclass these and keep every uncommon case (fragments, out of order, NAK, STATUS, SETUP).
from libc.stdint cimport int32_t, int64_t
from aeronpy._frame cimport FrameReader, FrameWriter

cdef class StreamCounters:
    cdef public int64_t messages_in, messages_out, messages_reassembled, data_frames_out
    cdef public int64_t naks_sent, naks_received, retransmits, status_sent, status_received
    cdef public int64_t heartbeats_sent, setups_sent, setup_jumps, bytes_skipped
    cdef public int64_t fragments_skipped, duplicates, back_pressured, clients_connected
    cdef public int64_t clients_lost, peer_restarts
    cdef public dict drops

cdef class SenderCore:
    cdef public int64_t tail_position, sent_position, acked_position, receiver_window
    cdef public Py_ssize_t max_fragment_bytes
    cdef public int64_t _max_message_bytes, _send_buffer_bytes
    cdef public list _positions, _frames, _lengths
    cdef public Py_ssize_t _head, _next
    cdef public int64_t _last_emit_ns
    cdef public FrameWriter _writer
    cdef public object _emit
    cdef public StreamCounters _c
    cdef object _offer_c(self, object payload, int64_t now_ns)

cdef class TransportCore:
    cdef public bint closed
    cdef public dict _peers
    cdef public int64_t _now_ns

cdef class ReceiverCore:
    cdef public int32_t stream_epoch
    cdef public int64_t expected_position, high_position
    cdef public int64_t _last_status_position, _status_threshold
    cdef public dict _pending
    cdef public object _assembly
    cdef public StreamCounters _c
    cdef int _on_data_c(self, int64_t position, int fragment_flags, int32_t message_length,
                        object payload, object handler, object peer_id, int64_t now_ns) except -1

cdef class AdmissionCore:
    cdef public FrameReader reader
    cdef public int32_t cluster_id, stream_id
    cdef public int64_t max_message_bytes
    cdef public dict drops
    cpdef int admit_at(self, datagram, Py_ssize_t offset, bint whole=*) except -1

cdef class DatagramWalker:
    cdef object _transport
    cdef AdmissionCore _admission
    cdef FrameReader _reader
    cdef int32_t _own_epoch
    cdef dict _drops
