"""LogIndex: the in-memory Raft log over flat arrays and chunked payload storage.

Why this shape: the leader's hot path is "append an entry, then pack a run of entries into an
AppendEntries frame"; the follower's is "append a packed run". Terms, types, payload offsets
and payload locations therefore live in flat C arrays used as a ring (O(1) lookups by index,
amortised O(1) append by doubling), so packing is a header write plus a memcpy per entry, and the byte size
of any range is O(1) from the offsets (a running sum of payload lengths).

Payloads live in chunks (``PayloadBlock``s of up to 8 MiB, one per entry that is bigger),
appended as the log grows and released whole once every entry in them is dropped. Payload
bytes are never copied once written: an earlier version kept them in one block that doubled
and was compacted by copying (the slot arrays too), and the copies paused a node's duty cycle
for 10-130 ms when the log was tens to hundreds of MiB (bench/results/perf.md, "Snapshot and
log-growth stalls").
A released chunk goes to ``retire`` when set (the node hands it to a thread, which frees it:
an munmap of its pages, with the GIL released).

Storage rules that keep every operation amortised O(1), with no copy proportional to the log:
- the slot arrays are a ring: drop_prefix only moves its head (and releases the payload
  chunks left wholly dead); growth doubles the ring (realloc, which moves pages rather than
  bytes for big arrays) and, if the live slots had wrapped, moves the smaller of their two
  parts (a cost only while the ring still grows: one whose size settled never grows).
- a chunk is never resized or reused after it is released, so a memoryview from payload_at()
  never dangles; but after the next mutating call (append, append_packed, truncate_from,
  drop_prefix) its *content* is unspecified (truncate then append reuses the bytes). Copy it
  if you need to keep it.
Terms must be non-decreasing (Raft guarantees it; ValueError otherwise), which is what makes
first_index_of_term/last_index_of_term binary searches. Not thread-safe.
"""
from cpython.buffer cimport (PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_FillInfo,
                             PyBuffer_Release, PyObject_GetBuffer)
from cpython.bytes cimport (PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize,
                            PyBytes_GET_SIZE)
from libc.stdint cimport int64_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memmove

DEF HEADER_BYTES = 16              # u32 payload_length | u16 type | u16 flags | i64 term
DEF MIN_SLOTS = 64
DEF MIN_BLOCK_BYTES = 4096
DEF CHUNK_MAX_BYTES = 8388608      # payload chunks grow by doubling up to this (bigger entries: their own)
DEF RETIRE_MIN_BYTES = 1048576     # released chunks this big go to `retire` (when set) to be freed
DEF MAX_PAYLOAD_BYTES = 0xFFFFFFFF

PACKED_HEADER_BYTES = HEADER_BYTES


cdef inline void _put_u16(unsigned char* p, uint32_t v) noexcept nogil:
    p[0] = <unsigned char>(v & 0xFF)
    p[1] = <unsigned char>((v >> 8) & 0xFF)


cdef inline void _put_u32(unsigned char* p, uint32_t v) noexcept nogil:
    p[0] = <unsigned char>(v & 0xFF)
    p[1] = <unsigned char>((v >> 8) & 0xFF)
    p[2] = <unsigned char>((v >> 16) & 0xFF)
    p[3] = <unsigned char>((v >> 24) & 0xFF)


cdef inline void _put_i64(unsigned char* p, int64_t v) noexcept nogil:
    cdef uint64_t u = <uint64_t>v
    _put_u32(p, <uint32_t>u)
    _put_u32(p + 4, <uint32_t>(u >> 32))


cdef inline uint32_t _get_u32(const unsigned char* p) noexcept nogil:
    return (<uint32_t>p[0]) | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef inline uint32_t _get_u16(const unsigned char* p) noexcept nogil:
    return (<uint32_t>p[0]) | (<uint32_t>p[1] << 8)


cdef inline int64_t _get_i64(const unsigned char* p) noexcept nogil:
    return <int64_t>((<uint64_t>_get_u32(p)) | ((<uint64_t>_get_u32(p + 4)) << 32))


cdef Py_ssize_t _pow2_at_least(Py_ssize_t n, Py_ssize_t floor) noexcept:
    cdef Py_ssize_t c = floor
    while c < n:
        c *= 2
    return c


cdef class PayloadBlock:
    def __cinit__(self, Py_ssize_t capacity):
        self.data = <unsigned char*>malloc(capacity if capacity > 0 else 1)
        if self.data == NULL:
            raise MemoryError(f"cannot allocate a {capacity}-byte payload block")
        self.capacity = capacity

    def __dealloc__(self):
        # Freeing a big chunk is an munmap of every page it touched: with the GIL released, a
        # chunk dropped on another thread (LogIndex.retire) does not hold up the duty cycle.
        cdef unsigned char* data = self.data
        self.data = NULL
        with nogil:
            free(data)

    def __getbuffer__(self, Py_buffer* view, int flags):
        PyBuffer_FillInfo(view, self, self.data, self.capacity, 1, flags)  # read-only

    def __releasebuffer__(self, Py_buffer* view):
        pass


cdef class LogIndex:
    """Entries (term, type, payload) at consecutive indexes after a base (snapshot point)."""

    def __cinit__(self, int64_t base_index=0, int64_t base_term=0):
        if base_index < 0 or base_term < 0:
            raise ValueError(f"base_index and base_term must be >= 0, got ({base_index}, {base_term})")
        self._terms = <int64_t*>malloc(MIN_SLOTS * sizeof(int64_t))
        self._types = <uint16_t*>malloc(MIN_SLOTS * sizeof(uint16_t))
        self._offsets = <int64_t*>malloc(MIN_SLOTS * sizeof(int64_t))
        self._locs = <int64_t*>malloc(MIN_SLOTS * sizeof(int64_t))
        if self._terms == NULL or self._types == NULL or self._offsets == NULL or self._locs == NULL:
            raise MemoryError("cannot allocate the log index")
        self._slot_cap = MIN_SLOTS
        self._mask = MIN_SLOTS - 1
        self.retire = None
        self._chunks = []
        self._views = []
        self._chunk_base = 0
        self._tail_used = 0
        self._reset_empty(base_index, base_term)
        self.mutation_count = 0

    def __dealloc__(self):
        free(self._terms)
        free(self._types)
        free(self._offsets)
        free(self._locs)

    # ---------------------------------------------------------------- read-only properties
    @property
    def base_index(self) -> int:
        return self._base_index

    @property
    def base_term(self) -> int:
        return self._base_term

    @property
    def first_index(self) -> int:
        return self._base_index + 1

    @property
    def last_index(self) -> int:
        return self._base_index + self._count

    @property
    def last_term(self) -> int:
        return self.c_last_term()

    @property
    def count(self) -> int:
        return self._count

    @property
    def payload_bytes(self) -> int:
        return self._offsets[(self._head + self._count) & self._mask] - self._offsets[self._head]

    def __repr__(self) -> str:
        return (f"LogIndex(base=({self._base_index}, {self._base_term}), last=({self.c_last_index()}, "
                f"{self.c_last_term()}), count={self._count}, payload_bytes={self.payload_bytes})")

    # ---------------------------------------------------------------- cdef fast paths
    cdef inline Py_ssize_t _slot(self, int64_t index) noexcept:
        return (self._head + <Py_ssize_t>(index - self._base_index - 1)) & self._mask

    cdef int64_t c_last_index(self) noexcept:
        return self._base_index + self._count

    cdef int64_t c_last_term(self) noexcept:
        if self._count == 0:
            return self._base_term
        return self._terms[(self._head + self._count - 1) & self._mask]

    cdef int64_t c_term_at(self, int64_t index) except -2:
        if index == self._base_index:
            return self._base_term
        if index < self._base_index or index > self._base_index + self._count:
            raise IndexError(f"term_at({index}): index outside [{self._base_index}, "
                             f"{self._base_index + self._count}]")
        return self._terms[self._slot(index)]

    cdef int c_type_at(self, int64_t index) except -1:
        if index <= self._base_index or index > self._base_index + self._count:
            raise IndexError(f"index {index} outside the entries [{self._base_index + 1}, "
                             f"{self._base_index + self._count}]")
        return self._types[self._slot(index)]

    cdef const unsigned char* c_payload(self, int64_t index, Py_ssize_t* length) except NULL:
        self.c_type_at(index)  # range check
        cdef Py_ssize_t s = self._slot(index)
        length[0] = <Py_ssize_t>(self._offsets[(s + 1) & self._mask] - self._offsets[s])
        return self._ptr(self._locs[s])

    cdef unsigned char* _ptr(self, int64_t loc) noexcept:
        cdef PayloadBlock chunk = <PayloadBlock>self._chunks[(loc >> 32) - self._chunk_base]
        return chunk.data + (loc & 0xFFFFFFFFLL)

    cdef object c_chunk_view(self, int64_t index, Py_ssize_t* start):
        """The memoryview of the chunk holding entry ``index``'s payload, and where in it the
        payload starts (``index`` must be in range: c_payload checked it)."""
        cdef int64_t loc = self._locs[self._slot(index)]
        start[0] = <Py_ssize_t>(loc & 0xFFFFFFFFLL)
        return self._views[(loc >> 32) - self._chunk_base]

    cdef int64_t c_append(self, int64_t term, int entry_type,
                          const unsigned char* payload, Py_ssize_t length) except -1:
        if term < self.c_last_term():
            raise ValueError(f"term {term} is below the last term {self.c_last_term()}: "
                             "log terms never decrease")
        if entry_type < 0 or entry_type > 0xFFFF:
            raise ValueError(f"entry type {entry_type} outside 0..65535")
        if length < 0 or length > MAX_PAYLOAD_BYTES:
            raise ValueError(f"payload of {length} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit")
        self._reserve_slots(1)
        cdef int64_t loc = self._place(length)       # payload may point into our own chunks:
        cdef Py_ssize_t s = (self._head + self._count) & self._mask   # they stay (a new one is only added)
        self._terms[s] = term
        self._types[s] = <uint16_t>entry_type
        self._locs[s] = loc
        if length:
            memmove(self._ptr(loc), payload, length)
        self._offsets[(s + 1) & self._mask] = self._offsets[s] + length
        self._count += 1
        self.mutation_count += 1
        return self._base_index + self._count

    cdef int64_t c_append_packed(self, const unsigned char* blob, Py_ssize_t length,
                                 Py_ssize_t count) except -1:
        # Pass 1: validate every header against the blob's bounds before touching the log,
        # so a malformed blob leaves the log unchanged.
        cdef Py_ssize_t pos = 0, n = 0, payload_total = 0
        cdef uint32_t plen, flags
        cdef int64_t term, prev_term = self.c_last_term()
        while (count < 0 and pos < length) or (count >= 0 and n < count):
            if length - pos < HEADER_BYTES:
                raise ValueError(f"packed entries: truncated header of entry {n} at byte {pos} "
                                 f"(blob is {length} bytes)")
            plen = _get_u32(blob + pos)
            flags = _get_u16(blob + pos + 6)
            term = _get_i64(blob + pos + 8)
            if flags != 0:
                raise ValueError(f"packed entries: entry {n} has unknown flags 0x{flags:04x}")
            if term < prev_term:
                raise ValueError(f"packed entries: entry {n} term {term} below previous term {prev_term}")
            if <Py_ssize_t>plen > length - pos - HEADER_BYTES:
                raise ValueError(f"packed entries: entry {n} payload of {plen} bytes runs past the "
                                 f"end of the {length}-byte blob")
            pos += HEADER_BYTES + plen
            payload_total += plen
            prev_term = term
            n += 1
        if n == 0:
            return self.c_last_index()
        if payload_total > MAX_PAYLOAD_BYTES:
            # one chunk cannot take them all (a location keeps the offset in a chunk in 32
            # bits): entry by entry, each placed as append() does; undone if one fails
            return self._append_packed_each(blob, n)
        # Pass 2: place. The entries that fit the tail chunk's room go there, the rest into one
        # new chunk, allocated before anything changes (a MemoryError leaves the log as it was).
        self._reserve_slots(n)
        cdef Py_ssize_t room = (<PayloadBlock>self._chunks[len(self._chunks) - 1]).capacity - self._tail_used
        cdef Py_ssize_t fits = 0, fit_bytes = 0
        pos = 0
        while fits < n:
            plen = _get_u32(blob + pos)
            if fit_bytes + plen > room:
                break
            fit_bytes += plen
            pos += HEADER_BYTES + plen
            fits += 1
        cdef int64_t tail_serial = self._chunk_base + len(self._chunks) - 1
        if fits < n:
            self._add_chunk(payload_total - fit_bytes)
        # Pass 3: copy.
        cdef Py_ssize_t s = self._head + self._count, j
        cdef Py_ssize_t mask = self._mask
        cdef int64_t off = self._offsets[s & mask]
        cdef int64_t loc = (tail_serial << 32) | self._tail_used
        cdef Py_ssize_t i
        pos = 0
        for i in range(n):
            plen = _get_u32(blob + pos)
            if i == fits:
                loc = (tail_serial + 1) << 32      # the rest start the new chunk
            j = (s + i) & mask
            self._types[j] = <uint16_t>_get_u16(blob + pos + 4)
            self._terms[j] = _get_i64(blob + pos + 8)
            self._locs[j] = loc
            memcpy(self._ptr(loc), blob + pos + HEADER_BYTES, plen)
            loc += plen
            off += plen
            self._offsets[(j + 1) & mask] = off
            pos += HEADER_BYTES + plen
        self._tail_used = <Py_ssize_t>(loc & 0xFFFFFFFFLL)
        self._count += n
        self.mutation_count += 1
        return self._base_index + self._count

    cdef int64_t _append_packed_each(self, const unsigned char* blob, Py_ssize_t n) except -1:
        cdef int64_t first = self.c_last_index() + 1
        cdef Py_ssize_t pos = 0, i
        cdef uint32_t plen
        try:
            for i in range(n):
                plen = _get_u32(blob + pos)
                self.c_append(_get_i64(blob + pos + 8), <int>_get_u16(blob + pos + 4),
                              blob + pos + HEADER_BYTES, plen)
                pos += HEADER_BYTES + plen
        except BaseException:
            self.truncate_from(first)
            raise
        return self._base_index + self._count

    cdef Py_ssize_t c_size_between(self, int64_t lo, int64_t hi) except -1:
        self._check_entry_range(lo, hi)
        cdef Py_ssize_t s = self._slot(lo), k = <Py_ssize_t>(hi - lo)
        return HEADER_BYTES * k + <Py_ssize_t>(self._offsets[(s + k) & self._mask] - self._offsets[s])

    cdef Py_ssize_t c_count_fitting(self, int64_t lo, int64_t hi, Py_ssize_t max_bytes) except -1:
        self._check_entry_range(lo, hi)
        if lo == hi:
            return 0
        # Packed size of [lo, lo+k) grows with k: binary search the largest k that fits.
        cdef Py_ssize_t s = self._slot(lo), good = 1, bad = <Py_ssize_t>(hi - lo) + 1, mid
        cdef int64_t base = self._offsets[s]
        while bad - good > 1:
            mid = good + (bad - good) // 2
            if HEADER_BYTES * mid + (self._offsets[(s + mid) & self._mask] - base) <= max_bytes:
                good = mid
            else:
                bad = mid
        return good

    cdef Py_ssize_t c_pack_unchecked(self, int64_t lo, Py_ssize_t count, unsigned char* out) noexcept:
        cdef Py_ssize_t s = self._slot(lo), i, j, plen
        cdef Py_ssize_t mask = self._mask
        cdef unsigned char* p = out
        for j in range(s, s + count):
            i = j & mask
            plen = <Py_ssize_t>(self._offsets[(i + 1) & mask] - self._offsets[i])
            _put_u32(p, <uint32_t>plen)
            _put_u16(p + 4, self._types[i])
            _put_u16(p + 6, 0)
            _put_i64(p + 8, self._terms[i])
            memcpy(p + HEADER_BYTES, self._ptr(self._locs[i]), plen)
            p += HEADER_BYTES + plen
        return p - out

    # ---------------------------------------------------------------- storage management
    cdef int _check_entry_range(self, int64_t lo, int64_t hi) except -1:
        if lo <= self._base_index or lo > hi or hi > self._base_index + self._count + 1:
            raise IndexError(f"entry range [{lo}, {hi}) outside [{self._base_index + 1}, "
                             f"{self._base_index + self._count + 1})")
        return 0

    cdef int _reserve_slots(self, Py_ssize_t extra) except -1:
        # The slot arrays are a ring (head moves on as entries are dropped; no memmove); one
        # slot past the last entry holds the end offset, so count + extra + 1 must fit.
        if self._count + extra + 1 <= self._slot_cap:
            return 0
        cdef Py_ssize_t old_cap = self._slot_cap
        cdef Py_ssize_t cap = _pow2_at_least(self._count + extra + 1, old_cap * 2)
        cdef int64_t* terms = <int64_t*>realloc(self._terms, cap * sizeof(int64_t))
        if terms == NULL:
            raise MemoryError(f"cannot grow the log index to {cap} entries")
        self._terms = terms
        cdef uint16_t* types = <uint16_t*>realloc(self._types, cap * sizeof(uint16_t))
        if types == NULL:
            raise MemoryError(f"cannot grow the log index to {cap} entries")
        self._types = types
        cdef int64_t* offsets = <int64_t*>realloc(self._offsets, cap * sizeof(int64_t))
        if offsets == NULL:
            raise MemoryError(f"cannot grow the log index to {cap} entries")
        self._offsets = offsets
        cdef int64_t* locs = <int64_t*>realloc(self._locs, cap * sizeof(int64_t))
        if locs == NULL:
            raise MemoryError(f"cannot grow the log index to {cap} entries")
        self._locs = locs
        # A ring that had wrapped (its live slots, end slot included, run past its end to its
        # front) is made valid for the doubled size by moving the smaller of its two parts:
        # the wrapped front part to just past the old end, or the part before the old end to
        # the end of the new ring (the head moves with it).
        cdef Py_ssize_t wrapped = self._head + self._count + 1 - old_cap
        cdef Py_ssize_t upper = old_cap - self._head
        if wrapped > 0 and wrapped <= upper:
            memcpy(self._terms + old_cap, self._terms, wrapped * sizeof(int64_t))
            memcpy(self._types + old_cap, self._types, wrapped * sizeof(uint16_t))
            memcpy(self._offsets + old_cap, self._offsets, wrapped * sizeof(int64_t))
            memcpy(self._locs + old_cap, self._locs, wrapped * sizeof(int64_t))
            self._moved_slots += wrapped
        elif wrapped > 0:
            memcpy(self._terms + cap - upper, self._terms + self._head, upper * sizeof(int64_t))
            memcpy(self._types + cap - upper, self._types + self._head, upper * sizeof(uint16_t))
            memcpy(self._offsets + cap - upper, self._offsets + self._head, upper * sizeof(int64_t))
            memcpy(self._locs + cap - upper, self._locs + self._head, upper * sizeof(int64_t))
            self._moved_slots += upper
            self._head = cap - upper
        self._moved_slots += self._count  # realloc may copy
        self._slot_cap = cap
        self._mask = cap - 1
        return 0

    cdef int64_t _place(self, Py_ssize_t length) except -1:
        """Where a payload of ``length`` bytes goes (a location: chunk serial << 32 | offset),
        the tail chunk's room taken; a new chunk when it does not fit."""
        cdef Py_ssize_t room = (<PayloadBlock>self._chunks[len(self._chunks) - 1]).capacity - self._tail_used
        if length > room:
            self._add_chunk(length)
            self._tail_used = 0
        cdef int64_t loc = ((self._chunk_base + len(self._chunks) - 1) << 32) | self._tail_used
        self._tail_used += length
        return loc

    cdef int _add_chunk(self, Py_ssize_t needed) except -1:
        """Append a chunk with room for ``needed`` bytes, sized to the live log (the next power
        of two, up to CHUNK_MAX_BYTES): a short log keeps small chunks, a long one few. The
        caller sets ``_tail_used`` for it."""
        cdef Py_ssize_t live = <Py_ssize_t>(self._offsets[(self._head + self._count) & self._mask] - self._offsets[self._head])
        cdef Py_ssize_t capacity = _pow2_at_least(live + needed, MIN_BLOCK_BYTES)
        if capacity > CHUNK_MAX_BYTES:
            capacity = CHUNK_MAX_BYTES
        if capacity < needed:
            capacity = needed
        cdef PayloadBlock chunk = PayloadBlock(capacity)
        view = memoryview(chunk)
        self._chunks.append(chunk)
        self._views.append(view)
        return 0

    cdef int _release_front(self, int64_t keep_serial) except -1:
        """Release the chunks before ``keep_serial`` (every entry in them was dropped)."""
        cdef Py_ssize_t k = <Py_ssize_t>(keep_serial - self._chunk_base)
        if k <= 0:
            return 0
        released = self._chunks[:k]
        del self._chunks[:k]
        del self._views[:k]
        self._chunk_base = keep_serial
        self._retire_all(released)
        return 0

    cdef int _retire(self, PayloadBlock chunk) except -1:
        if self.retire is not None and chunk.capacity >= RETIRE_MIN_BYTES:
            self.retire(chunk)
        return 0

    cdef int _retire_all(self, list released) except -1:
        # Called once the log is consistent again (a raising `retire` must not leave entries
        # pointing into chunks already taken off the list); if one call raises, the chunks
        # not handed over yet are freed here, as without a `retire`.
        cdef PayloadBlock chunk
        for chunk in released:
            self._retire(chunk)
        return 0

    cdef int _reset_empty(self, int64_t base_index, int64_t base_term) except -1:
        self._base_index = base_index
        self._base_term = base_term
        self._head = 0
        self._count = 0
        self._offsets[0] = 0
        cdef PayloadBlock chunk
        if len(self._chunks) == 1 and (<PayloadBlock>self._chunks[0]).capacity <= 16 * MIN_BLOCK_BYTES:
            self._tail_used = 0            # a small lone chunk is kept (its bytes are reused)
            return 0
        chunk = PayloadBlock(MIN_BLOCK_BYTES)
        released = self._chunks[::-1]      # the rest is given back (newest first), once the
        self._chunk_base += len(self._chunks)   # log is consistent; serials never repeat
        self._chunks = [chunk]
        self._views = [memoryview(chunk)]
        self._tail_used = 0
        self._retire_all(released)
        return 0

    cdef int _compact_after_drop(self) except -1:
        # Nothing is copied: the slot ring's head has moved on, and the payload chunks left
        # wholly dead are released.
        self._release_front(self._locs[self._head] >> 32)
        return 0

    # ---------------------------------------------------------------- Python API
    def append(self, int64_t term, int entry_type, payload) -> int:
        """Append one entry; returns its index."""
        cdef Py_buffer view
        if PyBytes_CheckExact(payload):
            return self.c_append(term, entry_type, <const unsigned char*>PyBytes_AS_STRING(payload),
                                 PyBytes_GET_SIZE(payload))
        PyObject_GetBuffer(payload, &view, PyBUF_SIMPLE)
        try:
            return self.c_append(term, entry_type, <const unsigned char*>view.buf, view.len)
        finally:
            PyBuffer_Release(&view)

    def append_packed(self, blob, Py_ssize_t count=-1) -> int:
        """Append entries in the packed-entry format; returns the new last index.

        count=-1: the blob must be whole entries exactly. count>=0: the first `count` entries
        are appended and any bytes after them are ignored. A malformed blob (truncated, a
        payload past the end, nonzero flags, a decreasing term) raises ValueError and leaves
        the log unchanged.
        """
        cdef Py_buffer view
        if PyBytes_CheckExact(blob):
            return self.c_append_packed(<const unsigned char*>PyBytes_AS_STRING(blob),
                                        PyBytes_GET_SIZE(blob), count)
        PyObject_GetBuffer(blob, &view, PyBUF_SIMPLE)
        try:
            return self.c_append_packed(<const unsigned char*>view.buf, view.len, count)
        finally:
            PyBuffer_Release(&view)

    def term_at(self, int64_t index) -> int:
        """Term of `index`, base_index <= index <= last_index (the base gives base_term)."""
        return self.c_term_at(index)

    def type_at(self, int64_t index) -> int:
        return self.c_type_at(index)

    def payload_at(self, int64_t index) -> memoryview:
        """Read-only view of the payload; its content is valid until the next mutating call."""
        self.c_type_at(index)
        cdef Py_ssize_t s = self._slot(index)
        cdef int64_t loc = self._locs[s]
        cdef Py_ssize_t start = <Py_ssize_t>(loc & 0xFFFFFFFFLL)
        cdef Py_ssize_t length = <Py_ssize_t>(self._offsets[(s + 1) & self._mask] - self._offsets[s])
        return self._views[(loc >> 32) - self._chunk_base][start:start + length]

    def size_between(self, int64_t lo, int64_t hi) -> int:
        """Packed bytes of [lo, hi)."""
        return self.c_size_between(lo, hi)

    def pack(self, int64_t lo, int64_t hi, Py_ssize_t max_bytes) -> tuple:
        """Entries [lo, hi) packed, stopping before max_bytes is exceeded (always >= 1 entry
        when lo < hi). Returns (bytes, count)."""
        cdef Py_ssize_t n = self.c_count_fitting(lo, hi, max_bytes)
        if n == 0:
            return (b"", 0)
        cdef Py_ssize_t size = self.c_size_between(lo, lo + n)
        out = PyBytes_FromStringAndSize(NULL, size)
        self.c_pack_unchecked(lo, n, <unsigned char*>PyBytes_AS_STRING(out))
        return (out, n)

    def pack_into(self, buf, Py_ssize_t offset, int64_t lo, int64_t hi, Py_ssize_t max_bytes) -> tuple:
        """Like pack() but writes into a writable buffer at offset. The room left in the
        buffer is a hard limit: returns (0, 0) if not even entry lo fits there."""
        cdef Py_buffer view
        cdef Py_ssize_t n, size, room
        PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE)
        try:
            if offset < 0 or offset > view.len:
                raise ValueError(f"offset {offset} outside the {view.len}-byte buffer")
            room = view.len - offset
            n = self.c_count_fitting(lo, hi, max_bytes if max_bytes < room else room)
            if n == 0:
                return (0, 0)
            size = self.c_size_between(lo, lo + n)
            if size > room:
                return (0, 0)
            self.c_pack_unchecked(lo, n, <unsigned char*>view.buf + offset)
            return (size, n)
        finally:
            PyBuffer_Release(&view)

    def truncate_from(self, int64_t index) -> None:
        """Drop index..last_index (a conflicting suffix). index must be > base_index; an
        index past last_index is a no-op."""
        if index <= self._base_index:
            raise IndexError(f"truncate_from({index}): cannot cut into the base (snapshot) at "
                             f"{self._base_index}")
        if index > self._base_index + self._count:
            return
        # the payload tail goes back to just past the last kept entry, in its chunk (with no
        # entry kept: where the first removed one starts); the chunks after that one hold only
        # removed entries and are released (and, with none kept, the ones before it), even when
        # the first removed entry began a chunk: else each truncate followed by an append too
        # big for that chunk would leave one more dead chunk behind
        cdef Py_ssize_t s = self._slot(index), p
        cdef int64_t loc = self._locs[s]
        cdef int64_t serial = loc >> 32
        cdef Py_ssize_t used = <Py_ssize_t>(loc & 0xFFFFFFFFLL)
        if index - 1 > self._base_index:
            p = (s - 1) & self._mask
            serial = self._locs[p] >> 32
            used = <Py_ssize_t>((self._locs[p] & 0xFFFFFFFFLL) + (self._offsets[s] - self._offsets[p]))
        released = []
        while self._chunk_base + len(self._chunks) - 1 > serial:
            released.append(self._chunks.pop())
            self._views.pop()
        if index - 1 == self._base_index:  # no entry kept: the chunks before are dead too
            released.extend(self._chunks[:serial - self._chunk_base])
            del self._chunks[:serial - self._chunk_base]
            del self._views[:serial - self._chunk_base]
            self._chunk_base = serial
        self._tail_used = used
        self._count = <Py_ssize_t>(index - self._base_index - 1)
        self.mutation_count += 1
        self._retire_all(released)           # last: the log is consistent if it raises

    def drop_prefix(self, int64_t index, int64_t term) -> None:
        """Forget entries <= index after a snapshot at (index, term).

        If the log holds `index` with that term the suffix is kept; otherwise (index past the
        end, or a different term there) the whole log is discarded and the log becomes empty
        at base (index, term), as Raft's InstallSnapshot rule says. index < base_index is a
        stale snapshot: no-op.
        """
        if term < 0:
            raise ValueError(f"drop_prefix: term {term} < 0")
        if index < self._base_index:
            return
        cdef Py_ssize_t k
        if index <= self._base_index + self._count and self.c_term_at(index) == term:
            k = <Py_ssize_t>(index - self._base_index)
            if k == 0:
                return
            self._head = (self._head + k) & self._mask
            self._count -= k
            self._base_index = index
            self._base_term = term
            self.mutation_count += 1         # before releasing: a raising `retire` leaves
            if self._count == 0:             # a consistent, counted mutation
                self._reset_empty(index, term)
            else:
                self._compact_after_drop()
        else:
            self.mutation_count += 1
            self._reset_empty(index, term)

    def first_index_of_term(self, int64_t term) -> int:
        """Lowest index of `term` held (the base counts when base_index > 0); 0 if none."""
        if self._base_index > 0 and self._base_term == term:
            return self._base_index
        cdef Py_ssize_t lo = 0, hi = self._count, mid  # first entry with term >= `term`
        while lo < hi:
            mid = (lo + hi) // 2
            if self._terms[(self._head + mid) & self._mask] < term:
                lo = mid + 1
            else:
                hi = mid
        if lo < self._count and self._terms[(self._head + lo) & self._mask] == term:
            return self._base_index + 1 + lo
        return 0

    def last_index_of_term(self, int64_t term) -> int:
        """Highest index of `term` held (the base counts when base_index > 0); 0 if none."""
        cdef Py_ssize_t lo = 0, hi = self._count, mid  # first entry with term > `term`
        while lo < hi:
            mid = (lo + hi) // 2
            if self._terms[(self._head + mid) & self._mask] <= term:
                lo = mid + 1
            else:
                hi = mid
        if lo > 0 and self._terms[(self._head + lo - 1) & self._mask] == term:
            return self._base_index + lo
        if lo == 0 and self._base_index > 0 and self._base_term == term:
            return self._base_index
        return 0

    def _storage_info(self) -> dict:
        """Internal sizes and copy counters, for tests of the amortised storage rules."""
        return {"slot_capacity": self._slot_cap, "head": self._head,
                "chunks": len(self._chunks),
                "chunk_bytes": sum((<PayloadBlock>c).capacity for c in self._chunks),
                "chunk_sizes": [(<PayloadBlock>c).capacity for c in self._chunks],
                "tail_used": self._tail_used,
                "moved_slots": self._moved_slots}

    def entries(self, int64_t lo, int64_t hi):
        """Iterate (index, term, type, payload memoryview) over [lo, hi). RuntimeError if the
        log is mutated during the iteration."""
        self._check_entry_range(lo, hi)
        return _iter_entries(self, lo, hi, self.mutation_count)


def _iter_entries(LogIndex log, int64_t lo, int64_t hi, uint64_t expected_mutations):
    cdef int64_t index
    for index in range(lo, hi):
        if log.mutation_count != expected_mutations:
            raise RuntimeError("LogIndex mutated during entries() iteration")
        yield (index, log.c_term_at(index), log.c_type_at(index), log.payload_at(index))
