# cdef contract of aeronpy._streams: the reliable streams' per-frame work, compiled.
# aeronpy/transport/ (streams.py, admission.py, udp.py, counters.py) builds on these; the
# Python model they were ported from is tests/transport/reference_streams.py.
from libc.stdint cimport int32_t, int64_t
from aeronpy._frame cimport FrameReader, FrameWriter

cdef class StreamCounters:
    cdef public int64_t messages_in, messages_out, messages_reassembled, data_frames_out
    cdef public int64_t naks_sent, naks_received, retransmits, status_sent, status_received
    cdef public int64_t heartbeats_sent, setups_sent, setup_jumps, bytes_skipped
    cdef public int64_t fragments_skipped, duplicates, back_pressured, clients_connected
    cdef public int64_t clients_lost, peer_restarts
    cdef public dict drops

cdef class StreamSender:
    cdef readonly int32_t epoch
    cdef FrameWriter _writer
    cdef object _emit
    cdef StreamCounters _c
    cdef int64_t _max_message_bytes, _send_buffer_bytes, _window_bytes, _retransmit_linger_ns
    cdef int64_t _heartbeat_interval_ns, _idle_interval_ns, _setup_linger_ns
    cdef readonly Py_ssize_t max_fragment_bytes
    cdef public int64_t tail_position, sent_position, acked_position, receiver_window
    cdef readonly list _positions, _frames, _lengths
    cdef readonly Py_ssize_t _head, _next
    cdef readonly dict _recent_retransmits
    cdef readonly int64_t _last_emit_ns
    cdef int64_t _last_setup_ns
    cdef public int _quiet_heartbeats      # udp.py restarts the probes for a restarted peer
    cdef int64_t _low_position(self)
    cdef object _offer_c(self, object payload, int64_t now_ns)
    cdef int _transmit_new(self, int64_t now_ns) except -1
    cdef void _release_acked(self)
    cdef void _purge_recent(self, int64_t now_ns)
    cdef int _send_setup(self, int64_t now_ns) except -1
    cdef int64_t _heartbeat_due_ns(self)

cdef class TransportCore:
    cdef public bint closed
    cdef public dict _peers
    cdef public int64_t _now_ns

cdef class StreamReceiver:
    cdef public int32_t stream_epoch
    cdef FrameWriter _writer
    cdef object _emit
    cdef StreamCounters _c
    cdef int64_t _window_bytes, _nak_retry_ns, _status_interval_ns, _idle_interval_ns
    cdef public int64_t expected_position, high_position
    cdef readonly dict _pending
    cdef readonly int64_t _pending_bytes
    cdef readonly object _assembly
    cdef Py_ssize_t _assembly_offset
    cdef Py_ssize_t _assembly_length
    cdef int64_t _last_nak_ns, _last_nak_position, _last_status_ns, _status_threshold
    cdef int64_t _piggyback_gap_ns, _status_prompt_ns, _last_data_ns, _progress_ns
    cdef readonly int64_t _last_status_position
    cdef int64_t _status_due_ns(self)
    cdef int _on_data_c(self, int64_t position, int fragment_flags, int32_t message_length,
                        object payload, object handler, object peer_id, int64_t now_ns) except -1
    cdef int _hold_out_of_order(self, int64_t position, int fragment_flags,
                                int32_t message_length, payload, int64_t now_ns) except -1
    cdef int _accept(self, int flags, int32_t message_length, payload, Py_ssize_t length,
                     handler, peer_id) except -1
    cdef void _abandon_assembly(self)
    cdef int _drain_pending(self, handler, peer_id, int64_t now_ns) except -1
    cdef int64_t _gap_end(self)
    cdef int _maybe_nak(self, int64_t now_ns) except -1
    cdef int _send_status(self, int64_t now_ns) except -1
    cdef int _piggyback_status(self, int64_t now_ns) except -1
    cdef void _note_progress(self, int64_t before, int64_t now_ns) noexcept

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
