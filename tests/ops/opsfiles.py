"""What the ops tests set up: a one-member cluster file or embedded node, and special files
where regular ones belong."""
from __future__ import annotations

import os
import textwrap

from aeronpy.testing.process_cluster import free_udp_ports


def write_one_member_config(directory) -> None:
    """``cluster.toml`` in ``directory``: member 0 on free loopback ports, data dirs beside it."""
    consensus, ingress = free_udp_ports(2)
    with open(os.path.join(directory, "cluster.toml"), "w") as f:
        f.write(textwrap.dedent(f"""
            cluster_id = 7
            data_dir = "{directory}/data-{{member_id}}"
            [[members]]
            id = 0
            host = "127.0.0.1"
            consensus_port = {consensus}
            ingress_port = {ingress}
        """))


def one_member_node(tmp_path, service=None, log_level: str = "WARNING",
                    check_startable: bool = True, ports=None, **config):
    """An embedded one-member `ClusterNode` hosting ``service`` (default: an echo) on free
    loopback ports (or ``ports``, (consensus, ingress): a restart on the same ones), data dir
    ``tmp_path/n0``; ``config`` adds NodeConfig keys."""
    from aeronpy.cluster.config import NodeConfig
    from aeronpy.cluster.node import ClusterNode
    from aeronpy.testing.services import EchoService
    consensus, ingress = ports or free_udp_ports(2)
    cfg = NodeConfig(cluster_id=config.pop("cluster_id", 1), member_id=0,
                     data_dir=str(tmp_path / "n0"), log_level=log_level,
                     members=[{"id": 0, "host": "127.0.0.1", "consensus_port": consensus,
                               "ingress_port": ingress}], **config)
    return ClusterNode(cfg, [service if service is not None else EchoService()],
                       check_startable=check_startable)


def make_special(path: str, kind: str) -> None:
    """Put a FIFO (``fifo``), a directory (``dir``) or a link to /dev/zero (``devzero``) at
    ``path``, in place of whatever is there."""
    if os.path.isdir(path) and not os.path.islink(path):
        os.rmdir(path)
    elif os.path.lexists(path):
        os.remove(path)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dir":
        os.mkdir(path)
    else:
        os.symlink("/dev/zero", path)
