"""The iptables chain of the partition trial: DROP rules per cut direction (plan.iptables_rules).

Its own chain (not the loss trial's), hooked first in INPUT; the loss trial's ``iptables``
helper runs the commands."""
from __future__ import annotations

import os
import shutil
from typing import Mapping, Optional, Sequence

from loss_trial.netfilter import iptables
from partition_trial.plan import Partition, iptables_rules

CHAIN = "AERONPY_PARTITION_TRIAL"


def remove_chain_command() -> str:
    return f"iptables -D INPUT -j {CHAIN}; iptables -F {CHAIN}; iptables -X {CHAIN}"


def missing_prerequisite() -> Optional[str]:
    """Why the trial cannot run here, or None. A chain left by an earlier run is not removed
    (that run may still be going): the user is told how."""
    if os.geteuid() != 0:
        return "needs root: it cuts datagrams with an iptables chain (run it with sudo)"
    if shutil.which("iptables") is None:
        return "needs iptables (apt-get install iptables)"
    if iptables("-S", CHAIN).returncode == 0:
        return f"the iptables chain {CHAIN} exists (an earlier run?); remove it with: {remove_chain_command()}"
    return None


def install_chain() -> Optional[str]:
    created = iptables("-N", CHAIN)
    if created.returncode != 0:
        return f"iptables -N {CHAIN} failed: {created.stderr.strip()}"
    hooked = iptables("-I", "INPUT", "1", "-j", CHAIN)
    return None if hooked.returncode == 0 else f"iptables -I INPUT failed: {hooked.stderr.strip()}"


def remove_chain() -> bool:
    """Unhook, flush and delete the chain (each step tolerates a missing chain); True if gone."""
    for _ in range(10):                                   # once per time it was hooked
        if iptables("-D", "INPUT", "-j", CHAIN).returncode != 0:
            break
    iptables("-F", CHAIN)
    iptables("-X", CHAIN)
    return iptables("-S", CHAIN).returncode != 0


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
