"""aeronpy.testing.process_cluster.free_udp_ports draws below the kernel's ephemeral ports, so
a member killed and restarted on its port cannot find it taken by a socket bound to port 0."""
from __future__ import annotations

import os

import pytest

from aeronpy.testing import process_cluster
from aeronpy.testing.process_cluster import free_udp_ports

_RANGE = "/proc/sys/net/ipv4/ip_local_port_range"


@pytest.mark.skipif(not os.path.exists(_RANGE), reason="no ip_local_port_range (not Linux)")
def test_ports_are_drawn_below_the_ephemeral_range():
    with open(_RANGE) as f:
        ephemeral_low = int(f.read().split()[0])
    ports = free_udp_ports(200)
    assert len(set(ports)) == 200
    if ephemeral_low - 20000 >= 2000:
        assert all(20000 <= p < ephemeral_low for p in ports), sorted(ports)[-5:]


def test_the_range_falls_back_when_the_kernel_leaves_too_few(monkeypatch, tmp_path):
    narrow = tmp_path / "range"
    narrow.write_text("21000\t60999\n")
    real_open = open

    def fake_open(path, *args, **kwargs):
        return real_open(narrow if path == _RANGE else path, *args, **kwargs)
    monkeypatch.setattr("builtins.open", fake_open)
    assert process_cluster._port_range() == (20000, 60000)
    narrow.write_text("32768\t60999\n")
    assert process_cluster._port_range() == (20000, 32768)
    narrow.write_text("garbage\n")
    assert process_cluster._port_range() == (20000, 60000)
