# C-level contract of aeronpy._logindex (docs/internal/interfaces.md 1.2).
# Other Cython modules: `from aeronpy._logindex cimport LogIndex`.
from libc.stdint cimport int64_t, uint16_t, uint64_t


cdef class PayloadBlock:
    """Fixed-size, read-only-exported byte store (a chunk of payloads). Never resized or
    reused after its log released it, so a memoryview handed out earlier never dangles."""
    cdef unsigned char* data
    cdef Py_ssize_t capacity


cdef class LogIndex:
    cdef int64_t _base_index
    cdef int64_t _base_term
    cdef int64_t* _terms          # slot -> term
    cdef uint16_t* _types         # slot -> entry type
    cdef int64_t* _offsets        # slot -> running sum of payload lengths before it; one extra end slot
    cdef int64_t* _locs           # slot -> payload location: chunk serial << 32 | offset in it
    cdef Py_ssize_t _slot_cap     # capacity of the slot ring (a power of two)
    cdef Py_ssize_t _mask         # _slot_cap - 1
    cdef Py_ssize_t _head         # ring slot of the first live entry
    cdef Py_ssize_t _count        # live entries: ring slots _head .. _head + _count - 1 (mod cap)
    cdef list _chunks             # PayloadBlocks, oldest first; the last takes new payloads
    cdef list _views              # a memoryview of each chunk, sliced by payload_at
    cdef int64_t _chunk_base      # serial of _chunks[0]
    cdef Py_ssize_t _tail_used    # bytes of the last chunk in use
    # Called with a released chunk of 1 MiB or more (None: it is freed at once). The node
    # hands it to a thread, which drops it: freeing it (munmap) then costs that thread.
    cdef public object retire
    cdef readonly uint64_t mutation_count   # bumped by every mutating call
    cdef uint64_t _moved_slots    # slots/bytes copied by reclaim and growth: amortisation checks

    # --- fast paths for other Cython modules (same checks as the Python API) ---
    cdef int64_t c_last_index(self) noexcept
    cdef int64_t c_last_term(self) noexcept
    cdef int64_t c_term_at(self, int64_t index) except -2          # IndexError outside [base, last]
    cdef int c_type_at(self, int64_t index) except -1              # IndexError outside [first, last]
    # Pointer to the payload of `index` and its length; valid until the next mutating call.
    # c_chunk_view: the memoryview of the chunk holding it and the payload's start in it.
    cdef object c_chunk_view(self, int64_t index, Py_ssize_t* start)
    cdef const unsigned char* c_payload(self, int64_t index, Py_ssize_t* length) except NULL
    cdef int64_t c_append(self, int64_t term, int entry_type,
                          const unsigned char* payload, Py_ssize_t length) except -1
    # Append `count` packed entries (-1: the whole blob); returns the new last index.
    cdef int64_t c_append_packed(self, const unsigned char* blob, Py_ssize_t length,
                                 Py_ssize_t count) except -1
    cdef Py_ssize_t c_size_between(self, int64_t lo, int64_t hi) except -1
    # Number of entries from `lo` (< hi) whose packed size fits max_bytes, at least 1.
    cdef Py_ssize_t c_count_fitting(self, int64_t lo, int64_t hi, Py_ssize_t max_bytes) except -1
    # Pack [lo, lo + count) into out (caller checked the room: c_size_between); returns bytes.
    cdef Py_ssize_t c_pack_unchecked(self, int64_t lo, Py_ssize_t count, unsigned char* out) noexcept

    # --- internals ---
    cdef int _check_entry_range(self, int64_t lo, int64_t hi) except -1
    cdef int _reserve_slots(self, Py_ssize_t extra) except -1
    cdef unsigned char* _ptr(self, int64_t loc) noexcept
    cdef int64_t _place(self, Py_ssize_t length) except -1
    cdef int _add_chunk(self, Py_ssize_t needed) except -1
    cdef int _release_front(self, int64_t keep_serial) except -1
    cdef int _retire(self, PayloadBlock chunk) except -1
    cdef int _retire_all(self, list released) except -1
    cdef int64_t _append_packed_each(self, const unsigned char* blob, Py_ssize_t n) except -1
    cdef Py_ssize_t _slot(self, int64_t index) noexcept
    cdef int _reset_empty(self, int64_t base_index, int64_t base_term) except -1
    cdef int _compact_after_drop(self) except -1
