"""Writer process for the SIGKILL crash tests: appends entries under a file_sync policy and
prints each index the archive reports durable (one line each, flushed) until it is killed.

Entry contents are a pure function of (index, term) so the checker can verify every byte.
Run: python crash_writer.py DATA_DIR FILE_SYNC SEGMENT_BYTES MIN_SIZE MAX_SIZE SEED
"""
import hashlib
import random
import sys


def payload_for(index: int, term: int, min_size: int, max_size: int) -> bytes:
    size = random.Random(index * 7919 + term).randint(min_size, max_size)
    seed = hashlib.blake2b(f"{index}:{term}".encode(), digest_size=16).digest()
    return (seed * (size // 16 + 1))[:size]


def main() -> None:
    data_dir, file_sync, segment_bytes, min_size, max_size, seed = sys.argv[1:7]
    segment_bytes, min_size, max_size = int(segment_bytes), int(min_size), int(max_size)
    from aeronpy.archive import Archive
    rng = random.Random(int(seed))
    arc = Archive.open(data_dir, file_sync=file_sync, segment_bytes=segment_bytes)
    rec = arc.recover()
    log = rec.log
    term = max(rec.hard_state.term, log.last_term) + 1   # each incarnation writes a new term
    arc.save_hard_state(term, None)
    out = sys.stdout
    out.write(f"start {log.last_index} {term}\n")
    out.flush()
    reported = rec.durable_index
    for _ in range(1_000_000):  # bounded; the parent kills us long before
        lo = log.last_index + 1
        for _ in range(rng.randint(1, 40)):
            log.append(term, 16, payload_for(log.last_index + 1, term, min_size, max_size))
        arc.append_from(log, lo, log.last_index + 1)
        arc.request_sync()
        durable = arc.poll_synced()
        if durable > reported:
            reported = durable
            out.write(f"durable {durable}\n")
            out.flush()


if __name__ == "__main__":
    main()
