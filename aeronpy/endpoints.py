"""Host and endpoint spelling, IPv4 and IPv6, shared by the members, the client and the tools.

An endpoint is ``host:port``; an IPv6 address is written in brackets, ``[::1]:20101`` (a bare
``::1:20101`` is ambiguous and refused). Members and clients of one cluster use one address
family: a socket of one family cannot send to the other.

Link-local IPv6 addresses (``fe80::/10``, which need a zone such as ``%eth0``) and
IPv4-mapped ones (``::ffff:a.b.c.d``) are refused with a clear error: give a global or
unique-local address, or the IPv4 address itself.
"""
from __future__ import annotations

import ipaddress
import socket
from typing import Optional, Tuple, Union

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


def ip_literal(host: str) -> Optional[IPAddress]:
    """The address ``host`` spells (brackets around an IPv6 address allowed), or None for a
    name. A zone (``fe80::1%eth0``) is refused here, as everywhere."""
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if "%" in text:
        raise ValueError(f"{host!r}: scoped IPv6 addresses (with a %zone) are not supported; "
                         "give a global or unique-local address")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    check_usable(address, host)
    return address


def check_usable(address: IPAddress, host: str) -> None:
    """Refuse the IPv6 addresses the transport cannot name without a zone or would confuse
    with IPv4."""
    if address.version != 6:
        return
    if address.is_link_local:
        raise ValueError(f"{host!r} is a link-local IPv6 address (it needs a %zone, which is "
                         "not supported); give a global or unique-local address")
    if address.ipv4_mapped is not None:
        raise ValueError(f"{host!r} is an IPv4-mapped IPv6 address; give the IPv4 address "
                         f"{address.ipv4_mapped} instead")


def resolve(host: str, lookup=None) -> Tuple[int, str]:
    """``(socket.AF_INET or AF_INET6, address)`` of ``host``: an address as given, a name by
    its IPv4 address if it has one, else by its IPv6 address. ``lookup(fn, host, *args)``
    runs the resolver calls (a timeout wrapper); by default they are called directly.
    Raises ValueError for an address the transport refuses, ``socket.gaierror`` when a name
    does not resolve (an invalid name too)."""
    literal = ip_literal(host)
    if literal is not None:
        return (socket.AF_INET6 if literal.version == 6 else socket.AF_INET), str(literal)
    call = lookup or (lambda fn, *args: fn(*args))
    name = host.strip()
    try:
        return socket.AF_INET, call(socket.gethostbyname, name)
    except UnicodeError as exc:       # a label over 63 characters, ...: no such name
        raise socket.gaierror(socket.EAI_NONAME, f"not a valid host name ({exc})") from None
    except socket.gaierror as v4_error:
        try:
            infos = call(socket.getaddrinfo, name, None, socket.AF_INET6, socket.SOCK_DGRAM)
        except socket.gaierror:
            raise v4_error from None
    address = ipaddress.ip_address(infos[0][4][0].partition("%")[0])
    check_usable(address, host)
    return socket.AF_INET6, str(address)


def family_name(family: int) -> str:
    return "IPv6" if family == socket.AF_INET6 else "IPv4"


def canonical_host(host: str) -> str:
    """An address in the one spelling `ipaddress` gives it (``0:0::1`` is ``::1``), a name as
    it is: members name a client by the address its datagrams come from, written so, and the
    client must spell its own endpoint the same way."""
    try:
        return str(ipaddress.ip_address(host.strip().strip("[]")))
    except ValueError:
        return host.strip()


def format_endpoint(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets."""
    host = host.strip()
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def split_endpoint(endpoint: str) -> Tuple[str, int]:
    """``(host, port)`` of ``host:port`` or ``[ipv6]:port`` (the host without brackets)."""
    endpoint = endpoint.strip()       # blanks around one endpoint (a line read from a file)
    if ";" in endpoint or any(c.isspace() for c in endpoint):
        # two endpoints joined by the wrong separator: said so, not taken for a bad IPv6 host
        raise ValueError(f"endpoint {endpoint!r}: separate endpoints with commas, "
                         "'host:port,host:port'")
    if endpoint.startswith("["):
        host, sep, rest = endpoint[1:].partition("]")
        if not sep or not rest.startswith(":") or not host:
            raise ValueError(f"endpoint {endpoint!r} is not '[ipv6-address]:port'")
        port = rest[1:]
    else:
        host, sep, port = endpoint.rpartition(":")
        if not sep or not host:
            raise ValueError(f"endpoint {endpoint!r} is not 'host:port'")
        if ":" in host:
            raise ValueError(f"endpoint {endpoint!r}: write an IPv6 address in brackets, "
                             "'[address]:port'")
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"endpoint {endpoint!r}: port {port!r} is not a number") from None
    if not 0 <= number <= 0xFFFF:
        raise ValueError(f"endpoint {endpoint!r}: port {number} is out of range")
    return host, number
