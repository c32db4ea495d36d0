# cdef contract of aeronpy._udp: the UDP poll loop (batched, non-blocking, never raising on I/O).
from libc.stdint cimport uint64_t

cdef extern from "udp_platform.h":
    ctypedef long long udp_sock_t
    ctypedef struct udp_counters:
        uint64_t datagrams_in
        uint64_t bytes_in
        uint64_t datagrams_out
        uint64_t bytes_out
        uint64_t send_would_block
        uint64_t conn_refused
        uint64_t nobufs
        uint64_t truncated
        uint64_t oversize_out
        uint64_t other_errors
        uint64_t frames_coalesced
    ctypedef struct udp_batch:
        int capacity
        int slot_bytes
        int count
        unsigned char *arena
        int *lens
        uint64_t *keys
        int family
    ctypedef union udp_addr:
        pass
    int UDP_HAVE_MMSG
    int UDP_KEY6_BYTES
    int udp_batch_init(udp_batch *b, int capacity, int slot_bytes, int family) nogil
    void udp_batch_free(udp_batch *b) nogil
    int udp_recv_batch(udp_sock_t s, udp_batch *b, int max, int use_mmsg, udp_counters *c) nogil
    int udp_send_batch(udp_sock_t s, udp_batch *b, int use_mmsg, udp_counters *c) nogil
    int udp_batch_queue(udp_batch *b, uint64_t key, const udp_addr *to,
                        const unsigned char *head, int head_len,
                        const unsigned char *body, int body_len) nogil
    int udp_batch_append_frame(udp_batch *b, uint64_t key, const udp_addr *to,
                               const unsigned char *frame, int frame_len, int max_len,
                               udp_counters *c) nogil
    uint64_t udp_addr_digest(const udp_addr *a) nogil
    void udp_key6_bytes(const udp_batch *b, int i, unsigned char *out) nogil
    int udp_addr6_of_bytes(const unsigned char *k, udp_addr *a) nogil
    int udp_wait_readable(udp_sock_t s, long long timeout_ns) nogil


cdef class UdpSocket:
    cdef object _sock              # the Python socket object that owns the descriptor
    cdef udp_sock_t _fd
    cdef udp_batch _rx             # static receive arena, reused by every poll()
    cdef udp_batch _tx             # queued send batch, flushed by flush()
    cdef udp_counters _c
    cdef object _rx_view           # read-only memoryview over the whole receive arena
    cdef readonly bint use_mmsg
    cdef readonly int max_datagram_bytes
    cdef readonly bint closed
    cdef readonly int family         # socket.AF_INET or socket.AF_INET6
    cdef bint _v6                    # family == AF_INET6, read on every send
    cdef udp_addr _to                # an IPv6 destination, decoded from its address key

    cdef int _destination(self, object address_key, uint64_t *key, const udp_addr **to) except -1
    cpdef int queue(self, object address_key, object datagram) except -2
    cpdef int queue_parts(self, object address_key, object head, object body) except -2
    cpdef int queue_frame(self, object address_key, object frame) except -2
    cpdef int flush(self)
