"""The trial's iptables chain: random drops (the loss trial's rule) and random duplicates (TEE
to 127.0.0.1: the copy is delivered again right behind the original, so it duplicates but does
not reorder; a copy may be copied again with the same probability) on the members' ports."""
from __future__ import annotations

from typing import Mapping, Sequence

from loss_trial.netfilter import iptables

CHAIN = "AERONPY_BIGMSG_TRIAL"


def fault_rules(loss_pct: float, dup_pct: float, member_ports: Sequence[Mapping[str, int]]) -> list:
    """The iptables arguments (after ``-A CHAIN``) of each rule, duplicates first (TEE goes on to
    the next rule, so a duplicated datagram may still be dropped)."""
    to_members = ",".join(str(p[k]) for p in member_ports for k in ("consensus_port", "ingress_port"))
    to_clients = ",".join(str(p["ingress_port"]) for p in member_ports)
    rules = []
    for pct, target in ((dup_pct, ["TEE", "--gateway", "127.0.0.1"]), (loss_pct, ["DROP"])):
        if pct <= 0:
            continue
        for direction, ports in (("--dports", to_members), ("--sports", to_clients)):
            rules.append(["-i", "lo", "-p", "udp", "-m", "multiport", direction, ports, "-m", "statistic",
                          "--mode", "random", "--probability", f"{pct / 100:.4f}", "-j", *target])
    return rules


def set_faults(loss_pct: float, dup_pct: float, member_ports: Sequence[Mapping[str, int]]) -> None:
    iptables("-F", CHAIN)
    for rule in fault_rules(loss_pct, dup_pct, member_ports):
        done = iptables("-A", CHAIN, *rule)
        if done.returncode != 0:
            raise RuntimeError(f"iptables rule refused: {done.stderr.strip()}")
