# C-level contract of aeronpy._logindex (docs/internal/interfaces.md 1.2).
# Other Cython modules: `from aeronpy._logindex cimport LogIndex`.
from libc.stdint cimport int64_t, uint16_t, uint64_t


cdef class PayloadBlock:
    """Fixed-size, read-only-exported byte store. Never resized: growing the log moves the
    payloads to a new block, so a memoryview handed out earlier never dangles."""
    cdef unsigned char* data
    cdef Py_ssize_t capacity


cdef class LogIndex:
    cdef int64_t _base_index
    cdef int64_t _base_term
    cdef int64_t* _terms          # slot -> term
    cdef uint16_t* _types         # slot -> entry type
    cdef int64_t* _offsets        # slot -> payload start (+ _pay_shift); one extra end slot
    cdef Py_ssize_t _slot_cap     # capacity of _terms/_types (_offsets has one more)
    cdef Py_ssize_t _head         # first live slot (slots before it were dropped lazily)
    cdef Py_ssize_t _count        # live entries: slots [_head, _head + _count)
    cdef int64_t _pay_shift       # position in _block = _offsets[slot] - _pay_shift
    cdef PayloadBlock _block
    cdef object _block_view       # memoryview of _block, sliced by payload_at
    cdef readonly uint64_t mutation_count   # bumped by every mutating call
    cdef uint64_t _moved_slots    # slots/bytes copied by reclaim and growth: amortisation checks
    cdef uint64_t _moved_bytes

    # --- fast paths for other Cython modules (same checks as the Python API) ---
    cdef int64_t c_last_index(self) noexcept
    cdef int64_t c_last_term(self) noexcept
    cdef int64_t c_term_at(self, int64_t index) except -2          # IndexError outside [base, last]
    cdef int c_type_at(self, int64_t index) except -1              # IndexError outside [first, last]
    # Pointer to the payload of `index` and its length; valid until the next mutating call.
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
    cdef int _reserve_bytes(self, Py_ssize_t extra) except -1
    cdef int _relocate_payloads(self, Py_ssize_t new_capacity) except -1
    cdef Py_ssize_t _slot(self, int64_t index) noexcept
    cdef int _reset_empty(self, int64_t base_index, int64_t base_term) except -1
    cdef int _compact_after_drop(self) except -1
