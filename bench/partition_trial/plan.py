"""What each phase of the partition trial cuts, as data: pure functions, no iptables (tested in
tests/ops/test_partition_trial_checker.py).

A cut is a directed pair ``(src, dst)`` of member ids: the datagrams member ``src`` sends from
its consensus port to member ``dst``'s consensus port are dropped. A member sends all its
consensus traffic from the one socket bound to its consensus port (docs/transport.md), so the
(source port, destination port) pair names one member-to-member direction exactly.
"""
from __future__ import annotations

import random
from typing import Dict, FrozenSet, List, Mapping, NamedTuple, Sequence, Tuple

Cut = Tuple[int, int]

# letter -> what the phase does; "e" runs as two phases, e1 then e2
SCENARIOS: Dict[str, str] = {
    "a": "leader cut from both followers, both directions",
    "b": "one-way: the leader's datagrams reach the followers, nothing comes back to it",
    "c": "one-way: the followers hear nothing from the leader, the leader hears them",
    "d": "one follower isolated, both directions",
    "e1": "bridge: a follower sees both others, the leader and the other follower do not see each other",
    "e2": "bridge: the leader sees both followers, the followers do not see each other",
    "f": "flapping: random one-way and two-way cuts between random pairs, changed every 200-500 ms",
    "g": "the leader's ingress port unreachable from clients (members fine)",
    # extra, not in the default run: one-way cuts between the leader and one follower only
    "h": "one-way: a follower hears the leader, the leader does not hear it",
    "i": "one-way: a follower does not hear the leader, the leader hears it",
}
DEFAULT_SCENARIOS = "a,b,c,d,e,f,g"
FLAP_DWELL_S = (0.2, 0.5)


class Partition(NamedTuple):
    """What to block: member-to-member directions, and members whose ingress clients cannot reach."""
    cuts: FrozenSet[Cut]
    ingress_blocked: FrozenSet[int] = frozenset()


HEALED = Partition(frozenset())


def expand_scenarios(text: str) -> List[str]:
    """``"a,e,g"`` -> ``["a", "e1", "e2", "g"]``; ValueError naming an unknown letter."""
    phases: List[str] = []
    for name in (part.strip() for part in text.split(",")):
        if name == "e":
            phases += ["e1", "e2"]
        elif name in SCENARIOS:
            phases.append(name)
        else:
            raise ValueError(f"unknown scenario {name!r}: choose from a, b, c, d, e, f, g, h, i")
    if not phases:
        raise ValueError("no scenario given")
    return phases


def both_ways(x: int, y: int) -> FrozenSet[Cut]:
    return frozenset({(x, y), (y, x)})


def partition_for(scenario: str, leader: int, members: int = 3) -> Partition:
    """The partition of a fixed scenario (not "f") with ``leader`` leading when it starts."""
    if not 0 <= leader < members or members != 3:
        raise ValueError(f"leader {leader} of {members} members: the scenarios are written for 3")
    f1, f2 = [m for m in range(members) if m != leader]
    if scenario == "a":
        return Partition(both_ways(leader, f1) | both_ways(leader, f2))
    if scenario == "b":
        return Partition(frozenset({(f1, leader), (f2, leader)}))
    if scenario == "c":
        return Partition(frozenset({(leader, f1), (leader, f2)}))
    if scenario == "d":
        return Partition(both_ways(f2, leader) | both_ways(f2, f1))
    if scenario == "e1":                    # f1 is the bridge
        return Partition(both_ways(leader, f2))
    if scenario == "e2":                    # the leader is the bridge
        return Partition(both_ways(f1, f2))
    if scenario == "h":
        return Partition(frozenset({(f2, leader)}))
    if scenario == "i":
        return Partition(frozenset({(leader, f2)}))
    if scenario == "g":
        return Partition(frozenset(), frozenset({leader}))
    raise ValueError(f"scenario {scenario!r} has no fixed partition")


def flapping_schedule(seed: int, duration_s: float, members: int = 3,
                      dwell_s: Tuple[float, float] = FLAP_DWELL_S) -> List[Tuple[float, Partition]]:
    """[(offset_s, partition)] for the flapping phase, from ``seed`` alone: every 200-500 ms
    zero to two member pairs are cut, each one way (either direction) or both ways. Offsets
    start at 0 and stay below ``duration_s``; the heal after the phase is not part of it."""
    rng = random.Random(seed)
    pairs = [(x, y) for x in range(members) for y in range(x + 1, members)]
    schedule: List[Tuple[float, Partition]] = []
    offset_s = 0.0
    for _ in range(100_000):                # bound: far above duration_s / dwell_s[0]
        if offset_s >= duration_s:
            break
        cuts: set = set()
        for x, y in rng.sample(pairs, rng.choice((0, 1, 1, 2, 2))):
            how = rng.choice(("x->y", "y->x", "both"))
            if how != "y->x":
                cuts.add((x, y))
            if how != "x->y":
                cuts.add((y, x))
        schedule.append((round(offset_s, 3), Partition(frozenset(cuts))))
        offset_s += rng.uniform(*dwell_s)
    return schedule


def iptables_rules(partition: Partition, member_ports: Sequence[Mapping[str, int]]) -> List[List[str]]:
    """The rule specifications (arguments after ``-A CHAIN``) that make ``partition`` on loopback."""
    rules = []
    for src, dst in sorted(partition.cuts):
        rules.append(["-i", "lo", "-p", "udp", "--sport", str(member_ports[src]["consensus_port"]),
                      "--dport", str(member_ports[dst]["consensus_port"]), "-j", "DROP"])
    for member in sorted(partition.ingress_blocked):
        port = str(member_ports[member]["ingress_port"])
        rules.append(["-i", "lo", "-p", "udp", "--dport", port, "-j", "DROP"])   # clients -> member
        rules.append(["-i", "lo", "-p", "udp", "--sport", port, "-j", "DROP"])   # member -> clients
    return rules


def describe(partition: Partition) -> str:
    """``0->1 1->0 | ingress of 2 blocked`` (``healed`` when nothing is blocked)."""
    parts = [" ".join(f"{s}->{d}" for s, d in sorted(partition.cuts))]
    if partition.ingress_blocked:
        parts.append("ingress of " + ",".join(map(str, sorted(partition.ingress_blocked))) + " blocked")
    text = " | ".join(p for p in parts if p)
    return text or "healed"
