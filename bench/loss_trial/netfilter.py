"""The iptables chains of the trials: the loss trial's random drops on the members' UDP ports;
creating, probing and removing a chain (the partition trial's too, by name)."""
from __future__ import annotations

import os
import shutil
import subprocess
from typing import Mapping, Optional, Sequence

CHAIN = "AERONPY_LOSS_TRIAL"


def iptables(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["iptables", "-w", *args], capture_output=True, text=True, timeout=15)


def remove_chain_command(chain: str = CHAIN) -> str:
    return f"iptables -D INPUT -j {chain}; iptables -F {chain}; iptables -X {chain}"


def missing_prerequisite(chain: str = CHAIN, verb: str = "drops") -> Optional[str]:
    """Why the trial cannot run here, or None. A chain left by an earlier run is not removed
    (a run may still be going): the user is told how."""
    if os.geteuid() != 0:
        return f"needs root: it {verb} datagrams with an iptables chain (run it with sudo)"
    if shutil.which("iptables") is None:
        return "needs iptables (apt-get install iptables)"
    if iptables("-S", chain).returncode == 0:
        return f"the iptables chain {chain} exists (an earlier run?); remove it with: {remove_chain_command(chain)}"
    return None


def install_chain(chain: str = CHAIN, probe_statistic: bool = True) -> Optional[str]:
    """Create the chain, probe the statistic match in it (the loss trial's rules need it), hook
    it first into INPUT; or say why not."""
    created = iptables("-N", chain)
    if created.returncode != 0:
        return f"iptables -N {chain} failed: {created.stderr.strip()}"
    if probe_statistic:
        probe = iptables("-A", chain, "-m", "statistic", "--mode", "random", "--probability", "0.5",
                         "-j", "RETURN")
        if probe.returncode != 0:
            return f"iptables has no statistic match here: {probe.stderr.strip()}"
        iptables("-F", chain)
    hooked = iptables("-I", "INPUT", "1", "-j", chain)
    return None if hooked.returncode == 0 else f"iptables -I INPUT failed: {hooked.stderr.strip()}"


def remove_chain(chain: str = CHAIN) -> bool:
    """Unhook, flush and delete the chain (each step tolerates a missing chain); True if gone."""
    for _ in range(10):                                   # once per time it was hooked
        if iptables("-D", "INPUT", "-j", chain).returncode != 0:
            break
    iptables("-F", chain)
    iptables("-X", chain)
    return iptables("-S", chain).returncode != 0


def set_loss(loss_pct: float, member_ports: Sequence[Mapping[str, int]]) -> None:
    """Drop ``loss_pct`` % of datagrams to the members' consensus and ingress ports and from their
    ingress ports (egress to clients); each datagram matches one rule, so it is dropped once."""
    iptables("-F", CHAIN)
    if loss_pct <= 0:
        return
    to_members = ",".join(str(p[k]) for p in member_ports for k in ("consensus_port", "ingress_port"))
    to_clients = ",".join(str(p["ingress_port"]) for p in member_ports)
    for direction, ports in (("--dports", to_members), ("--sports", to_clients)):
        rule = iptables("-A", CHAIN, "-i", "lo", "-p", "udp", "-m", "multiport", direction, ports, "-m", "statistic",
                        "--mode", "random", "--probability", f"{loss_pct / 100:.4f}", "-j", "DROP")
        if rule.returncode != 0:
            raise RuntimeError(f"iptables rule refused: {rule.stderr.strip()}")
