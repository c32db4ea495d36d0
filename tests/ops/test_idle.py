"""Idle strategies: what they do after empty cycles, counted through injected functions."""
import socket

import pytest

from aeronpy.cluster.idle import (BackoffIdleStrategy, BusySpinIdleStrategy, SleepingIdleStrategy,
                                  YieldingIdleStrategy, idle_strategy_from_name, select_waiter)
from aeronpy.errors import ConfigError


class Recorder:
    def __init__(self):
        self.yields = 0
        self.sleeps = []

    def yield_fn(self):
        self.yields += 1

    def sleep_fn(self, seconds):
        self.sleeps.append(seconds)


def test_busy_spin_never_yields_or_sleeps():
    s = BusySpinIdleStrategy()
    for _ in range(5):
        s.idle(0)
    s.idle(3)
    assert (s.spins, s.yields, s.parks) == (5, 0, 0)


def test_yield_yields_on_each_empty_cycle_only():
    r = Recorder()
    s = YieldingIdleStrategy(yield_fn=r.yield_fn)
    for work in (0, 0, 1, 0):
        s.idle(work)
    assert r.yields == 3 == s.yields


def test_sleep_sleeps_its_period_on_empty_cycles():
    r = Recorder()
    s = SleepingIdleStrategy(period_s=0.002, sleep_fn=r.sleep_fn)
    for work in (0, 5, 0):
        s.idle(work)
    assert r.sleeps == [0.002, 0.002] and s.parks == 2


def _backoff(r, **kw):
    args = dict(max_spins=3, max_yields=2, min_park_s=1e-5, max_park_s=8e-5,
                yield_fn=r.yield_fn, sleep_fn=r.sleep_fn)
    args.update(kw)
    return BackoffIdleStrategy(**args)


def test_backoff_spins_then_yields_then_parks_doubling_to_the_cap():
    r = Recorder()
    s = _backoff(r)
    for _ in range(10):
        s.idle(0)
    assert (s.spins, s.yields, s.parks) == (3, 2, 5)
    assert r.yields == 2
    assert r.sleeps == pytest.approx([1e-5, 2e-5, 4e-5, 8e-5, 8e-5])


def test_backoff_work_restarts_from_spinning():
    r = Recorder()
    s = _backoff(r)
    for _ in range(8):
        s.idle(0)
    s.idle(1)
    for _ in range(6):
        s.idle(0)
    assert (s.spins, s.yields, s.parks) == (6, 4, 4)
    assert r.sleeps[-1] == pytest.approx(1e-5)  # park period restarted too


def test_backoff_reset():
    r = Recorder()
    s = _backoff(r, max_spins=1, max_yields=0)
    s.idle(0)
    s.idle(0)
    s.idle(0)
    assert s.park_period_s == pytest.approx(4e-5)
    s.reset()
    assert s.park_period_s == pytest.approx(1e-5)
    s.idle(0)
    assert s.spins == 2


def test_backoff_without_spins_or_yields_parks_at_once():
    r = Recorder()
    s = _backoff(r, max_spins=0, max_yields=0)
    s.idle(0)
    assert (s.spins, s.yields, s.parks) == (0, 0, 1)


def test_backoff_parks_in_the_waiter_instead_of_sleeping():
    r = Recorder()
    waits = []
    s = _backoff(r, max_spins=0, max_yields=0, waiter=waits.append)
    s.idle(0)
    s.idle(0)
    assert waits == pytest.approx([1e-5, 2e-5]) and r.sleeps == []


def test_backoff_rejects_bad_arguments():
    with pytest.raises(ValueError):
        BackoffIdleStrategy(max_spins=-1)
    with pytest.raises(ValueError):
        BackoffIdleStrategy(min_park_s=0.01, max_park_s=0.001)
    with pytest.raises(ValueError):
        SleepingIdleStrategy(period_s=0)


def test_select_waiter_wakes_on_a_datagram():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        rx.bind(("127.0.0.1", 0))
        wait = select_waiter([rx])
        assert wait(0) is False
        tx.sendto(b"x", rx.getsockname())
        assert wait(5.0) is True  # returns as soon as the datagram is there


def test_select_waiter_notes_which_sockets_were_readable():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        noted = []
        wait = select_waiter([a.fileno(), b.fileno()], note=noted.append)
        assert wait(0) is False and noted == [[]]
        tx.sendto(b"x", b.getsockname())
        assert wait(5.0) is True and noted[-1] == [b.fileno()]


@pytest.mark.parametrize("name, cls", [("busy-spin", BusySpinIdleStrategy),
                                       ("yield", YieldingIdleStrategy),
                                       ("backoff", BackoffIdleStrategy),
                                       ("sleep", SleepingIdleStrategy)])
def test_from_name(name, cls):
    s = idle_strategy_from_name(name)
    assert type(s) is cls and s.name == name


def test_from_name_passes_the_waiter_to_backoff():
    waits = []
    s = idle_strategy_from_name("backoff", waiter=waits.append)
    for _ in range(s.max_spins + s.max_yields + 1):
        s.idle(0)
    assert len(waits) == 1


def test_backoff_with_a_waiter_parks_on_the_first_empty_cycle():
    """The waiter wakes on input, so a node does not spin first (single-request latency)."""
    waits = []
    s = idle_strategy_from_name("backoff", waiter=waits.append)
    s.idle(0)
    assert waits == [0.001] and s.spins == 0 and s.yields == 0
    s.idle(0)
    s.idle(1)
    s.idle(0)
    # one whole-ms park each time, never the short doubling parks (empty duty cycles)
    assert waits == [0.001, 0.001, 0.001]
    blind = idle_strategy_from_name("backoff")       # no waiter: a blind sleep spins first
    assert blind.max_spins > 0


def test_unknown_name_is_a_config_error():
    with pytest.raises(ConfigError) as e:
        idle_strategy_from_name("spin")
    assert e.value.key == "idle_strategy"
