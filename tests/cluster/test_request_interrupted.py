"""A sync ``request()`` that ends by an exception of its own (a send that fails, a
KeyboardInterrupt while it waits) lets go of its correlation id: kept awaited, the reply that
comes later would sit in the client's reply map for good."""
import pytest

from .fakes import FakeWorld
from .memnet import MemNet


def client_on_a_cluster():
    w = FakeWorld(members=3)
    w.elect(0)
    w.settle()
    client = MemNet(w).client()
    assert client.request(b"warm") == b"re:warm"
    return client


def test_a_failed_send_abandons_the_request():
    client = client_on_a_cluster()
    core = client._core

    def broken_flush():
        raise OSError("network is unreachable")
    client.flush = broken_flush
    with pytest.raises(OSError):
        client.request(b"x")
    assert not core._awaiting


def test_an_interrupt_while_waiting_abandons_the_request():
    client = client_on_a_cluster()
    core = client._core
    calls = []

    def interrupted():
        calls.append(1)
        raise KeyboardInterrupt
    client.do_work = interrupted
    client.flush = lambda: None             # nothing leaves: the wait is where it stops
    with pytest.raises(KeyboardInterrupt):
        client.request(b"x")
    assert calls and not core._awaiting
