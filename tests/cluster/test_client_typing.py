"""The client API's type hints, as a user's type checker sees them (aeronpy ships py.typed).

mypy (the ``test`` extra) checks two small user programs against the aeronpy under test: one
using ClusterClient, AsyncClusterClient and ClientConfig correctly, under ``--strict`` (so an
unannotated client method is an error there too: "call to untyped function"), which must pass;
and one with a fresh user's mistakes (a str payload, a misspelt connect option, a float time
in ns ...), each marked ``# E``, every one of which mypy must flag, and nothing else."""
from __future__ import annotations

import os
import re
import textwrap

import pytest

import aeronpy

mypy_api = pytest.importorskip("mypy.api", reason="mypy is not installed (pip install -e .[test])")


from .mypyrun import mypy_in_a_child as _mypy_in_a_child  # noqa: E402

GOOD = '''
    from __future__ import annotations

    import random

    import aeronpy
    from aeronpy import BACK_PRESSURED, ClientConfig, ClusterClient, MessageRejectedError
    from aeronpy.aio import AsyncClusterClient


    def on_message(correlation_id: int, payload: memoryview) -> None:
        print(correlation_id, bytes(payload))


    def blocking(endpoints: str) -> bytes:
        config = ClientConfig(window_messages=64, resend_timeout_ns=200_000_000)
        with ClusterClient.connect(endpoints, timeout_s=5.0, credentials=b"token", config=config,
                                   bind_host="127.0.0.1", rng=random.Random(1)) as client:
            cid: int = client.offer(b"x")
            if client.offer(bytearray(b"y"), service_id=1) == BACK_PRESSURED:
                client.poll_egress(on_message, 10)
            client.offer(memoryview(b"z"))
            client.flush()
            handed: int = client.poll_egress(on_message)
            ready: bool = client.wait_for_egress(0.01)
            rejected: list[tuple[int, MessageRejectedError]] = client.take_rejections()
            counters: dict[str, int] = client.counters
            terms: dict[str, int] = client.session_terms
            leader: str | None = client.leader_endpoint
            session: int = client.session_id
            connected: bool = client.is_connected
            print(cid, handed, ready, rejected, counters, terms, leader, session, connected)
            return client.request(b"q", service_id=0, timeout_s=1.0)


    async def with_asyncio(endpoints: list[str]) -> bytes:
        client = await AsyncClusterClient.connect(endpoints, timeout_s=5.0, credentials=b"token",
                                                  poll_interval_s=0.001)
        async with client:
            cid: int = client.offer(b"x", service_id=0)
            ready: bool = await client.wait_for_egress(0.1)
            room: bool = await client.wait_for_window(0.1)
            handed: int = client.poll_egress(on_message)
            rejected: list[tuple[int, aeronpy.MessageRejectedError]] = client.take_rejections()
            counters: dict[str, int] = client.counters
            terms: dict[str, int] = client.session_terms
            leader: str | None = client.leader_endpoint
            print(cid, ready, room, handed, rejected, counters, terms, leader)
            return await client.request(bytearray(b"q"), timeout_s=2.0)
'''

BAD = '''
    from __future__ import annotations

    from aeronpy import ClientConfig, ClusterClient
    from aeronpy.aio import AsyncClusterClient


    def blocking(endpoints: str) -> None:
        client = ClusterClient.connect(endpoints, credentails=b"")  # E misspelt option
        ClusterClient.connect(endpoints, credentials="secret")  # E str credentials
        ClusterClient.connect(endpoints, timeout_s=None)  # E
        client.offer("a str")  # E
        client.offer(b"x", service_id="1")  # E
        client.request("a str")  # E
        client.request(b"x", timeout_s=None)  # E
        client.poll_egress(lambda correlation_id: None)  # E callback of the wrong shape
        ClientConfig(resend_timeout_ns=0.5)  # E seconds, not ns
        ClientConfig(window_messages="10")  # E
        text: str = client.request(b"x")  # E a reply is bytes


    async def with_asyncio(endpoints: str) -> None:
        client = await AsyncClusterClient.connect(endpoints, credentails=b"")  # E
        client.offer("a str")  # E
        await client.request("a str")  # E
        leader: int = client.leader_endpoint  # E
'''


REVEAL = '''
    from aeronpy import ClusterClient
    from aeronpy.aio import AsyncClusterClient


    async def types(client: ClusterClient, aclient: AsyncClusterClient) -> None:
        reveal_type(client.offer)
        reveal_type(client.request)
        reveal_type(client.counters)
        reveal_type(client.session_terms)
        reveal_type(client.take_rejections())
        reveal_type(client.leader_endpoint)
        reveal_type(aclient.offer)
        reveal_type(aclient.counters)
        reveal_type(aclient.session_terms)
        reveal_type(aclient.take_rejections())
        reveal_type(aclient.leader_endpoint)
        reveal_type(await aclient.request(b"x"))
'''

# what mypy shows, in order (payloads as the exact union, not a bare or Any); spelt as mypy 2
# does, older ones are normalised to it
_OFFER = "def (payload: bytes | bytearray | memoryview, service_id: int =) -> int"
REVEALED = [
    _OFFER,
    "def (payload: bytes | bytearray | memoryview, service_id: int =, timeout_s: float =) -> bytes",
    "dict[str, int]", "dict[str, int]", "list[tuple[int, aeronpy.errors.MessageRejectedError]]",
    "str | None",
    _OFFER,
    "dict[str, int]", "dict[str, int]", "list[tuple[int, aeronpy.errors.MessageRejectedError]]",
    "str | None", "bytes",
]


def _run_mypy(tmp_path, name: str, source: str, *flags: str) -> tuple[str, int]:
    program = tmp_path / f"{name}.py"
    program.write_text(textwrap.dedent(source))
    # the aeronpy under test (the checkout, or an installed wheel), found through mypy_path;
    # its own modules are read for their types but only the user program's errors reported
    root = os.path.dirname(os.path.dirname(os.path.abspath(aeronpy.__file__)))
    config = tmp_path / "mypy.ini"
    config.write_text(f"[mypy]\nmypy_path = {root}\nfollow_imports = silent\n")
    stdout, stderr, status = _mypy_in_a_child([
        "--config-file", str(config), "--cache-dir", str(tmp_path / ".mypy_cache"),
        "--no-error-summary", "--show-error-codes", "--python-version", "3.10", *flags,
        str(program)])
    assert "error: " not in stderr, stderr
    return stdout, status


def test_a_correct_user_program_type_checks_under_strict(tmp_path):
    out, status = _run_mypy(tmp_path, "good_user", GOOD, "--strict")
    assert status == 0 and out.strip() == "", out


def test_a_users_mistakes_are_flagged(tmp_path):
    out, status = _run_mypy(tmp_path, "bad_user", BAD)
    marked = {number for number, line in enumerate(textwrap.dedent(BAD).splitlines(), 1)
              if "# E" in line}
    flagged = {int(m.group(1)) for m in re.finditer(r"^[^:\n]*bad_user\.py:(\d+): error:", out, re.M)}
    assert status == 1
    assert flagged == marked, f"missed lines {sorted(marked - flagged)}, unexpected " \
                              f"{sorted(flagged - marked)}:\n{out}"


def test_the_client_api_types_are_precise(tmp_path):
    out, _ = _run_mypy(tmp_path, "reveal_user", REVEAL)
    revealed = [_as_mypy2(r) for r in re.findall(r'note: Revealed type is "(.*)"', out)]
    assert revealed == REVEALED, out


def _as_mypy2(revealed: str) -> str:
    """Older mypy's spelling of a type as mypy 2's (builtins., Union[...], bare memoryview)."""
    revealed = revealed.replace("builtins.", "").replace("memoryview[int]", "memoryview")
    return re.sub(r"Union\[([^\[\]]*)\]", lambda m: m.group(1).replace(", ", " | "), revealed)
