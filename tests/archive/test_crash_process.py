"""Real-process crash tests: a writer appends under file_sync="data" and reports every index the
archive says is durable; we SIGKILL it at random moments, restart recovery, and check that every
reported-durable entry is there, checksum-valid, in order, with the right bytes, and that no
torn debris is left after the recovered end.

Bounded: a fixed number of kills, each wait bounded in time, the whole run under a deadline
(a hang guard, generous because fsync latency on a shared machine varies 50x; a typical run of
both tests takes 10-20 s).
"""
from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time

import pytest

from aeronpy.archive import Archive
from aeronpy.testing.process_cluster import child_env

from .crash_writer import payload_for

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")

WRITER = os.path.join(os.path.dirname(__file__), "crash_writer.py")
STARTUP_TIMEOUT_S = 20.0


class _LineReader:
    """Lines from a child's stdout, with a deadline on every wait."""

    def __init__(self, proc: subprocess.Popen):
        self.fd = proc.stdout.fileno()
        self.buf = b""
        self.eof = False

    def read_until(self, deadline: float) -> list:
        lines = []
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                break
            chunk = os.read(self.fd, 65536)
            if not chunk:
                self.eof = True
                break
            self.buf += chunk
            *complete, self.buf = self.buf.split(b"\n")
            lines.extend(line.decode() for line in complete)
            if lines and lines[-1].startswith("start"):
                break
        return lines


def verify_log(log, reported_durable: int, lo: int, min_size: int, max_size: int) -> None:
    """Every entry from ``lo`` to the end matches its generator, terms never decrease, and the
    log reaches at least ``reported_durable``. Raises AssertionError naming the first problem."""
    assert log.last_index >= reported_durable, (
        f"entries up to {reported_durable} were reported durable, the log ends at {log.last_index}")
    prev_term = log.term_at(max(lo - 1, log.base_index))
    for i in range(max(lo, log.first_index), log.last_index + 1):
        term = log.term_at(i)
        assert term >= prev_term, f"term decreases at index {i}: {prev_term} -> {term}"
        assert bytes(log.payload_at(i)) == payload_for(i, term, min_size, max_size), \
            f"payload of index {i} (term {term}) is not what was written"
        prev_term = term


def run_kill_cycles(data_dir: str, kills: int, segment_bytes: int, min_size: int, max_size: int,
                    seed: int, budget_s: float) -> dict:
    rng = random.Random(seed)
    env = child_env()
    deadline = time.monotonic() + budget_s
    reported, verified_to, stats = 0, 0, {"kills": 0, "torn_tails_cut": 0, "max_index": 0}
    for k in range(kills):
        if time.monotonic() >= deadline:
            # a slow (loaded) machine does fewer kills instead of failing; the callers require
            # a minimum, and the last cycle's check was full (below)
            break
        proc = subprocess.Popen(
            [sys.executable, WRITER, data_dir, "data", str(segment_bytes), str(min_size),
             str(max_size), str(seed * 1000 + k)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        reader = _LineReader(proc)
        try:
            if rng.random() < 0.15:  # sometimes mid-start-up or mid-recovery
                lines = reader.read_until(time.monotonic() + rng.uniform(0.0, 0.15))
            else:
                lines = reader.read_until(time.monotonic() + STARTUP_TIMEOUT_S)
                assert any(l.startswith("start") for l in lines), \
                    f"writer did not start: {proc.stderr.read().decode() if reader.eof else lines}"
                lines += reader.read_until(time.monotonic() + rng.uniform(0.0, 0.06))
            lines += _kill_and_collect(proc, reader)
        finally:  # on any failure too: never leave a writer running or its pipes open
            if proc.poll() is None:
                proc.kill()
            try:
                proc.wait(timeout=STARTUP_TIMEOUT_S)
            finally:
                proc.stdout.close()
                proc.stderr.close()
        for line in lines:
            if line.startswith("durable "):
                reported = max(reported, int(line.split()[1]))
        stats["kills"] += 1

        arc = Archive.open(data_dir, file_sync="data", segment_bytes=segment_bytes)
        try:  # closed on a failed check too: a leaked archive keeps its descriptors
            rec = arc.recover()
            # every 10th check and the last cover the whole log; the others only what the
            # previous ones did not cover
            full = k % 10 == 9 or k == kills - 1
            verify_log(rec.log, reported, 1 if full else verified_to, min_size, max_size)
            verified_to = rec.log.last_index
            stats["max_index"] = verified_to
            if rec.cut is not None and rec.cut.path is not None:
                with open(rec.cut.path, "rb") as f:
                    f.seek(rec.cut.offset)
                    assert not any(f.read()), f"debris left after the recovered end in {rec.cut.path}"
                stats["torn_tails_cut"] += not rec.cut.clean
        finally:
            arc.close()
    if stats["kills"] and stats["kills"] < kills:    # stopped by the budget: one full check
        arc = Archive.open(data_dir, file_sync="data", segment_bytes=segment_bytes)
        try:
            verify_log(arc.recover().log, reported, 1, min_size, max_size)
        finally:
            arc.close()
    return stats


def _kill_and_collect(proc: subprocess.Popen, reader: _LineReader) -> list:
    """SIGKILL the writer and read what it printed before dying."""
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=STARTUP_TIMEOUT_S)
    return reader.read_until(time.monotonic() + 1.0)


def test_sigkill_writer_loses_nothing_reported_durable(tmp_path):
    stats = run_kill_cycles(str(tmp_path / "data"), kills=50, segment_bytes=64 << 10,
                            min_size=1, max_size=300, seed=11, budget_s=150)
    # 50 on a quiet machine (about 60 s); a loaded one may run out of budget first
    assert stats["kills"] >= 20 and stats["max_index"] > 0, stats


def test_sigkill_with_records_straddling_segment_ends(tmp_path):
    # records of 0.5-3 KiB in 4 KiB segments: nearly every batch rolls over to a new segment
    stats = run_kill_cycles(str(tmp_path / "data"), kills=20, segment_bytes=4096,
                            min_size=500, max_size=3000, seed=12, budget_s=100)
    assert stats["kills"] >= 10 and stats["max_index"] > 0, stats


def test_verify_log_negative_control():
    """The checker itself fails on a wrong payload and on a log shorter than reported."""
    from aeronpy._logindex import LogIndex
    good = LogIndex()
    for i in range(1, 6):
        good.append(2, 16, payload_for(i, 2, 1, 50))
    verify_log(good, 5, 1, 1, 50)
    with pytest.raises(AssertionError, match="reported durable"):
        verify_log(good, 6, 1, 1, 50)
    bad = LogIndex()
    for i in range(1, 6):
        bad.append(2, 16, payload_for(i, 2, 1, 50) if i != 3 else b"x")
    with pytest.raises(AssertionError, match="payload of index 3"):
        verify_log(bad, 5, 1, 1, 50)
