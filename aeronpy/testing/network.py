"""A simulated datagram network on virtual time: per-link drop, duplication, delay/reorder and
partitions (symmetric between groups, or one direction at a time).

Endpoints are small ints: members are 0..n-1, simulated clients are negative. Every random
choice comes from the ``random.Random`` handed in, so a run replays exactly from its seed.

Links between members reorder freely (harsher than the real transport; Raft must not care).
Links to and from clients keep each link's order (``ordered_client_links``), as the real
transport's streams do: the session protocol sequences a client's messages in order and
treats a gap as "the client re-sends its window", so reordering a window of N messages
would turn every re-send into a handful of accepted messages. Loss, duplication (in order)
and delay still apply to them.
"""
from __future__ import annotations

MS = 1_000_000


class LinkFaults:
    """Fault settings of one directed link (or the default for all links)."""

    __slots__ = ("drop", "duplicate", "delay_lo_ns", "delay_hi_ns")

    def __init__(self, drop: float = 0.0, duplicate: float = 0.0, delay_ms=(1.0, 1.0)):
        lo, hi = delay_ms
        if not (0.0 <= drop <= 1.0 and 0.0 <= duplicate <= 1.0):
            raise ValueError(f"drop and duplicate are probabilities in [0, 1], got {drop}, {duplicate}")
        if lo < 0 or hi < lo:
            raise ValueError(f"delay_ms must be (lo, hi) with 0 <= lo <= hi, got {delay_ms}")
        self.drop = float(drop)
        self.duplicate = float(duplicate)
        self.delay_lo_ns = int(lo * MS)
        self.delay_hi_ns = int(hi * MS)

    def __repr__(self) -> str:
        return (f"LinkFaults(drop={self.drop}, duplicate={self.duplicate}, "
                f"delay_ms=({self.delay_lo_ns / MS}, {self.delay_hi_ns / MS}))")


class SimNetwork:
    """Decides the fate of each datagram; the simulator schedules the deliveries."""

    def __init__(self, rng, schedule):
        self._rng = rng
        self._schedule = schedule          # schedule(at_ns, deliver_fn, *args)
        self.default = LinkFaults()
        self.links: dict = {}              # (src, dst) -> LinkFaults overriding the default
        self.blocked: set = set()          # directed (src, dst) pairs cut off
        self.ordered_client_links = True
        self._last_arrival: dict = {}      # (src, dst) -> latest scheduled arrival on an ordered link
        self.sent = 0
        self.delivered_scheduled = 0
        self.dropped_blocked = 0
        self.dropped_random = 0
        self.duplicated = 0

    # ------------------------------------------------------------------ configuration
    def configure(self, drop: float = 0.0, duplicate: float = 0.0, delay_ms=(1.0, 1.0)) -> None:
        """Default faults of every link; per-link overrides are cleared."""
        self.default = LinkFaults(drop, duplicate, delay_ms)
        self.links.clear()

    def configure_link(self, src: int, dst: int, drop: float = 0.0, duplicate: float = 0.0,
                       delay_ms=(1.0, 1.0)) -> None:
        self.links[(src, dst)] = LinkFaults(drop, duplicate, delay_ms)

    def partition(self, members, *groups) -> None:
        """Endpoints in different groups cannot talk. A member (id >= 0) named in no group is
        isolated; a client (id < 0) named in no group still reaches everyone."""
        group_of = {}
        for number, group in enumerate(groups):
            for member in group:
                if member in group_of:
                    raise ValueError(f"member {member} is in two partition groups")
                if member not in members:
                    raise ValueError(f"unknown member {member} in a partition group")
                group_of[member] = number
        self.blocked.clear()
        for a in members:
            for b in members:
                if a < 0 and a not in group_of or b < 0 and b not in group_of:
                    continue
                if a != b and group_of.get(a, ("alone", a)) != group_of.get(b, ("alone", b)):
                    self.blocked.add((a, b))

    def block(self, src: int, dst: int) -> None:
        """Asymmetric cut: datagrams from ``src`` to ``dst`` are lost (the reverse still flows)."""
        self.blocked.add((src, dst))

    def unblock(self, src: int, dst: int) -> None:
        self.blocked.discard((src, dst))

    def heal(self) -> None:
        """Remove every partition and cut (fault probabilities stay as configured)."""
        self.blocked.clear()

    def can_reach(self, src: int, dst: int) -> bool:
        return (src, dst) not in self.blocked

    # ------------------------------------------------------------------ traffic
    def send(self, now_ns: int, src: int, dst: int, deliver, *args) -> None:
        """Schedule ``deliver(*args)`` at the destination zero, one or two times."""
        self.sent += 1
        if (src, dst) in self.blocked:
            self.dropped_blocked += 1
            return
        faults = self.links.get((src, dst), self.default)
        rng = self._rng
        if faults.drop and rng.random() < faults.drop:
            self.dropped_random += 1
            return
        copies = 1
        if faults.duplicate and rng.random() < faults.duplicate:
            copies = 2
            self.duplicated += 1
        ordered = self.ordered_client_links and (src < 0 or dst < 0)
        for _ in range(copies):
            lo, hi = faults.delay_lo_ns, faults.delay_hi_ns
            at_ns = now_ns + (lo if lo == hi else rng.randrange(lo, hi + 1))
            if ordered:
                at_ns = max(at_ns, self._last_arrival.get((src, dst), 0))
                self._last_arrival[(src, dst)] = at_ns
            self.delivered_scheduled += 1
            self._schedule(at_ns, deliver, *args)

    def stats(self) -> dict:
        return {"sent": self.sent, "scheduled": self.delivered_scheduled, "dropped_blocked": self.dropped_blocked,
                "dropped_random": self.dropped_random, "duplicated": self.duplicated}
