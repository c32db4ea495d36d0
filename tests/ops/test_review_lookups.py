"""Review R2 of the bounded host lookups (config.lookup_within): a hung resolver leaves one
thread per lookup given up on, and the start check gives up at its first such lookup, so
threads do not pile up within one check or one tool request; all end when the resolver
returns. A guard (no bug found): it fails if a check went on looking up after a timeout."""
from __future__ import annotations

import threading
import time

import pytest

from aeronpy.cluster import admin_client, config
from aeronpy.cluster.admin_client import AdminError
from aeronpy.errors import ConfigError

from tests.ops.test_lookup_timeouts import BLOCKED, config_with, hung_resolver  # noqa: F401 - fixture


def _lookup_threads() -> list:
    return [t for t in threading.enumerate() if t.name.startswith("aeronpy-lookup-")]


def test_one_thread_per_abandoned_lookup_and_none_after_the_resolver_returns(
        hung_resolver, monkeypatch, tmp_path):  # noqa: F811
    before = len(_lookup_threads())
    monkeypatch.setattr(config, "HOST_LOOKUP_TIMEOUT_S", 0.05)
    with pytest.raises(ConfigError):
        config_with(BLOCKED, tmp_path).check_startable()
    assert len(hung_resolver) == 1                       # gave up at once: no second lookup
    for _ in range(3):
        with pytest.raises(AdminError):
            admin_client.admin_request(["127.0.0.1:1", f"{BLOCKED}:20111"], "127.0.0.1:1", 1, b"",
                                       timeout_s=0.05)
    assert len(hung_resolver) == 4                       # one per request
    assert len(_lookup_threads()) - before <= 4


def test_the_abandoned_threads_end_when_the_resolver_answers(monkeypatch):
    release = threading.Event()
    monkeypatch.setattr(config, "HOST_LOOKUP_TIMEOUT_S", 0.05)
    for _ in range(5):
        with pytest.raises(TimeoutError):
            config.lookup_within(0.02, lambda host: release.wait(10), "slow.example")
    assert len([t for t in _lookup_threads() if "slow.example" in t.name]) == 5
    release.set()
    deadline = time.monotonic() + 5
    while any("slow.example" in t.name for t in _lookup_threads()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not [t for t in _lookup_threads() if "slow.example" in t.name]
