"""``aeronpy tool describe`` says how long ago its latest error was recorded: an old config
mismatch stays in errors.log (nothing clears it) and read as the node's current problem."""
from __future__ import annotations

import time

import pytest

from aeronpy.cluster import tool
from aeronpy.cluster.counters import CountersWriter
from aeronpy.cluster.nodefiles import ErrorLog

MEMBERS = [{"id": 0, "host": "127.0.0.1", "consensus_port": 20100, "ingress_port": 20101}]
HOUR_NS = 3600 * 10**9


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "node0"
    writer = CountersWriter(d, member_id=0, cluster_id=7, members=MEMBERS)
    yield str(d)
    writer.close()


def record(data_dir: str, text: str, ago_ns: int) -> None:
    log = ErrorLog(data_dir)
    log.record(text, now_ns=time.time_ns() - ago_ns)
    log.close()


def test_the_latest_error_shows_its_age(data_dir):
    record(data_dir, "config mismatch: member 1 has cluster_id 8", 3 * HOUR_NS + 12 * 60 * 10**9 + 30 * 10**9)
    result = tool.describe(data_dir)
    line = next(x for x in result.text.splitlines() if x.startswith("errors"))
    assert "latest error (3 h 12 min ago, " in line and line.endswith(
        "): config mismatch: member 1 has cluster_id 8"), line
    latest = result.data["latest_error"]
    assert latest["text"] == "config mismatch: member 1 has cluster_id 8"
    assert 3 * 3600 + 12 * 60 + 30 <= latest["age_s"] < 4 * 3600


def test_the_latest_is_the_one_seen_last_not_the_one_first_recorded_last(data_dir):
    """An error first seen long ago that keeps recurring is the latest; one recorded once an
    hour ago is not."""
    record(data_dir, "recurring", 5 * HOUR_NS)
    record(data_dir, "once, an hour ago", HOUR_NS)
    record(data_dir, "recurring", 2 * 60 * 10**9 + 5 * 10**9)
    line = next(x for x in tool.describe(data_dir).text.splitlines() if x.startswith("errors"))
    assert "2 distinct, latest error (2 min ago, " in line and line.endswith("): recurring"), line


@pytest.mark.parametrize("seconds, text", [(0, "0 s"), (59, "59 s"), (60, "1 min"),
                                           (3599, "59 min"), (3600, "1 h 0 min"),
                                           (26 * 3600 + 61, "1 d 2 h"), (-5, "0 s")])
def test_age_text(seconds, text):
    assert tool.age_text(seconds) == text
