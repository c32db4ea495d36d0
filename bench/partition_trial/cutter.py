"""The iptables chain of the partition trial: DROP rules per cut direction (plan.iptables_rules).

Its own chain (not the loss trial's), hooked first in INPUT; the loss trial's netfilter module
creates and removes it (loss_trial.harness.run_in_chain) and runs the commands."""
from __future__ import annotations

from typing import Mapping, Sequence

from loss_trial.netfilter import iptables
from partition_trial.plan import Partition, iptables_rules

CHAIN = "AERONPY_PARTITION_TRIAL"


def apply(partition: Partition, member_ports: Sequence[Mapping[str, int]]) -> None:
    """Replace the chain's rules by those of ``partition``. The new rules go in before the old
    ones are deleted, so a cut kept from one flapping step to the next never lapses."""
    old = sum(1 for line in iptables("-S", CHAIN).stdout.splitlines() if line.startswith("-A "))
    rules = iptables_rules(partition, member_ports)
    for rule in rules:
        added = iptables("-I", CHAIN, "1", *rule)
        if added.returncode != 0:
            raise RuntimeError(f"iptables rule refused: {added.stderr.strip()}")
    for _ in range(old):                                  # the old rules are now at the end
        iptables("-D", CHAIN, str(len(rules) + 1))
