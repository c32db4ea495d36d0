"""A hand-driven network of RaftCores for unit tests: messages wait in an outbox until the
test delivers (or drops) them, time moves only when the test says so."""
from __future__ import annotations

import random

from aeronpy.core import CoreConfig, HardState, RaftCore, Role
from aeronpy.testing.storage import default_log_factory

MS = 1_000_000
LogIndex = default_log_factory()


def make_log(terms, base_index: int = 0, base_term: int = 0):
    """A log whose entries at base+1.. have the given terms (payload names index and term)."""
    log = LogIndex(base_index, base_term)
    for offset, term in enumerate(terms):
        log.append(term, 16, b"i%d-t%d" % (base_index + 1 + offset, term))
    return log


class PaperNet:
    def __init__(self, n: int = 3, seed: int = 0, logs=None, terms=None, **config):
        ids = tuple(range(n))
        self.cores: dict = {}
        self.outbox: list = []            # (src, dst, msg) in send order
        self.persisted_hard_state: dict = {}
        self.readies: dict = {i: [] for i in ids}
        self.applied: dict = {i: [] for i in ids}
        self.now = 0
        self.blocked: set = set()
        for i in ids:
            log = logs[i] if logs else LogIndex()
            term = terms[i] if terms else (log.last_term if logs else 0)
            cfg = CoreConfig(i, ids, **config)
            self.cores[i] = RaftCore(cfg, random.Random(seed * 1000 + i), HardState(term), log)
            self.persisted_hard_state[i] = HardState(term)

    def __getitem__(self, i) -> RaftCore:
        return self.cores[i]

    def flush(self, i: int) -> None:
        core = self.cores[i]
        for _ in range(16):
            if not core.has_ready():
                return
            rd = core.ready()
            self.readies[i].append(rd)
            if rd.hard_state is not None:
                self.persisted_hard_state[i] = rd.hard_state
            for to, msg in rd.messages:
                self.outbox.append((i, to, msg))
            for index in range(rd.apply_lo, rd.apply_hi):
                self.applied[i].append((index, core.log.term_at(index)))
            core.advance(rd)

    def flush_all(self) -> None:
        for i in self.cores:
            self.flush(i)

    def tick(self, i: int, advance_ms: float = 0) -> None:
        self.now += int(advance_ms * MS)
        self.cores[i].tick(self.now)
        self.flush(i)

    def step(self, dst: int, src: int, msg) -> None:
        self.cores[dst].step(src, msg, self.now)
        self.flush(dst)

    def take(self, src=None, dst=None, kind=None) -> list:
        """Remove and return the queued messages that match."""
        taken, kept = [], []
        for item in self.outbox:
            s, d, m = item
            if (src is None or s == src) and (dst is None or d == dst) and (kind is None or type(m) is kind):
                taken.append(item)
            else:
                kept.append(item)
        self.outbox = kept
        return taken

    def deliver_all(self, rounds_max: int = 10_000) -> int:
        delivered = 0
        while self.outbox and delivered < rounds_max:
            src, dst, msg = self.outbox.pop(0)
            if (src, dst) in self.blocked:
                continue
            self.step(dst, src, msg)
            delivered += 1
        assert not self.outbox, "message storm: deliver_all did not settle"
        return delivered

    def campaign(self, i: int) -> None:
        """Make member ``i`` time out (others are not ticked) and run it through canvass and nominate."""
        core = self.cores[i]
        for _ in range(200):
            self.tick(i, 10)
            self.deliver_all()
            if core.role != Role.FOLLOWER or core.election_state.name not in ("FOLLOWER_READY", "CANVASS", "NOMINATE"):
                return
        raise AssertionError(f"member {i} never started a ballot")

    def elect(self, i: int) -> None:
        self.campaign(i)
        self.deliver_all()
        assert self.cores[i].role == Role.LEADER, f"member {i} failed to win: {self.cores[i]}"
        self.deliver_all()
