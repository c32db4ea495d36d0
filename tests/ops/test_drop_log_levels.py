"""Frames a restart leaves behind are logged at INFO, not WARNING. After a member restarts, its
peers drop frames of its previous run (``stale_epoch``) and ones ahead of a window its new run
has not opened yet (``beyond_window``), and it drops theirs about its previous run: normal
(docs/operations.md), yet every member logged ``dropped frames 2 (stale_epoch)`` at WARNING (a
fresh user's report). Those drops with no restart in sight (an old process of a member still
sending, a replay), or going on long after one, stay at WARNING, as every other reason does."""
from __future__ import annotations

import logging
from collections import Counter
from types import SimpleNamespace

import pytest

from aeronpy.cluster.logsetup import BurstLogger
from aeronpy.cluster.node_counters import (RESTART_DROPS_GRACE_S, TRANSPORT_EXTRA_SLOTS,
                                           TransportCounterPublisher)

LOGGER = "aeronpy.node.drops"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Writer:
    def __init__(self):
        self.names = [name for name, _, _ in TRANSPORT_EXTRA_SLOTS]
        self.values = [0] * (64 + len(self.names))

    def index(self, name):
        return 64 + self.names.index(name)


class Transport:
    def __init__(self):
        self.socket = SimpleNamespace(datagrams_in=0, datagrams_out=0, bytes_in=0, bytes_out=0,
                                      truncated=0)
        self.counters = SimpleNamespace(naks_sent=0, naks_received=0, retransmits=0,
                                        heartbeats_sent=0, status_sent=0, duplicates=0,
                                        peer_restarts=0, drops=Counter())


@pytest.fixture()
def node(caplog):
    clock = Clock()
    transports = (Transport(), Transport())
    publisher = TransportCounterPublisher(Writer(), transports, clock=clock)
    publisher.drop_log = BurstLogger(logging.getLogger(LOGGER), clock=clock)
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    return SimpleNamespace(clock=clock, transports=transports, publisher=publisher,
                           lines=lambda: [(r.levelname, r.getMessage()) for r in caplog.records
                                          if r.name == LOGGER])


def _quiet(node, seconds):
    node.clock.now += seconds
    node.publisher.publish()


def test_a_peer_restarts_leftovers_are_info_other_drops_stay_warning(node):
    _quiet(node, 60)                                    # long after this node started
    consensus = node.transports[0].counters
    consensus.peer_restarts += 1                        # a peer came back with a new epoch
    consensus.drops["stale_epoch"] += 2                 # ... and its old run's frames arrive
    consensus.drops["beyond_window"] += 1
    consensus.drops["bad_mac"] += 1
    node.publisher.publish()
    assert sorted(node.lines()) == [("INFO", "dropped frames 1 (beyond_window)"),
                                    ("INFO", "dropped frames 2 (stale_epoch)"),
                                    ("WARNING", "dropped frames 1 (bad_mac)")]


def test_at_start_the_drops_about_this_nodes_previous_run_are_info(node):
    node.transports[1].counters.drops["stale_epoch"] += 3
    node.publisher.publish()
    assert node.lines() == [("INFO", "dropped frames 3 (stale_epoch)")]


def test_stale_frames_with_no_restart_in_sight_are_a_warning(node):
    _quiet(node, RESTART_DROPS_GRACE_S + 1)
    node.transports[0].counters.drops["stale_epoch"] += 5
    node.publisher.publish()
    assert node.lines() == [("WARNING", "dropped frames 5 (stale_epoch)")]


def test_stale_frames_that_go_on_past_the_restart_are_a_warning(node):
    _quiet(node, 60)
    consensus = node.transports[0].counters
    consensus.peer_restarts += 1
    for _ in range(int(RESTART_DROPS_GRACE_S) + 3):      # one every second, for ever
        consensus.drops["stale_epoch"] += 1
        node.clock.now += 1.0
        node.publisher.publish()
    levels = [level for level, _ in node.lines()]
    assert levels[0] == "INFO" and levels[-1] == "WARNING", node.lines()
    assert levels == sorted(levels)                     # INFO ... INFO, then WARNING only
