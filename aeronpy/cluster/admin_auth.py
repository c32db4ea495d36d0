"""Who may send a member an AdminRequest (snapshot, suspend, resume, shutdown, abort, backup).

Admin requests arrive on the client ingress port, which any client can reach, and can stop the
cluster or read its whole log, so a member admits only these:

- **With a cluster ``secret``**: a request whose payload starts with a 16-byte keyed BLAKE2b tag
  over its correlation id, request type and arguments, keyed with ``admin_key(secret)`` (a key
  derived from the secret, so the secret itself is never written anywhere). Members write that
  key to ``admin.key`` in their data dir (mode 0600): ``aeronpy tool``, which runs beside a
  member and reads its data dir, signs with it; ``aeronpy backup`` derives it from the cluster
  config it is given. A request from any host is admitted when its tag verifies.
- **Without a secret**: a request from this machine only (a loopback address, or the member's
  own host address): member-to-member frames are unauthenticated then too, and the operator
  has chosen to trust the machine, not the network.

Anything else is answered with an error naming the reason and counted (``admin_rejected``);
it never acts. With a secret the answers are tagged the same way (over the correlation id,
type, code and payload), and the tool and the backup believe only answers whose tag verifies.
A tag covers one request or answer: a captured one can be replayed by whoever can capture it,
so admin traffic belongs on a network the operator controls.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import struct
from typing import Optional

ADMIN_KEY_FILE = "admin.key"
TAG_BYTES = 16
_SIGNED = struct.Struct("<qi")      # correlation_id, request_type: what the tag binds to
_CODE = struct.Struct("<i")         # an answer's code, bound too
_KEY_CONTEXT = b"aeronpy admin requests v1"


def admin_key(secret: bytes) -> bytes:
    """The key admin requests are signed with, derived from the cluster secret."""
    return hashlib.blake2b(_KEY_CONTEXT, key=bytes(secret)[:64], digest_size=32).digest()


_REQUEST, _RESPONSE = b"Q", b"R"   # a request's tag can never pass as an answer's, or back


def _tag(key: bytes, correlation_id: int, request_type: int, args: bytes,
         direction: bytes = _REQUEST, code: int = 0) -> bytes:
    h = hashlib.blake2b(key=key, digest_size=TAG_BYTES)
    h.update(direction)
    h.update(_SIGNED.pack(correlation_id, request_type))
    if direction == _RESPONSE:
        h.update(_CODE.pack(code))
    h.update(args)
    return h.digest()


def sign_response(key: Optional[bytes], correlation_id: int, request_type: int, code: int,
                  payload: bytes) -> bytes:
    """An AdminResponse's payload: tag + payload with a key (the member's), else as it is."""
    payload = bytes(payload)
    if key is None:
        return payload
    return _tag(key, correlation_id, request_type, payload, _RESPONSE, code) + payload


def verify_response(key: Optional[bytes], correlation_id: int, request_type: int, code: int,
                    payload: bytes) -> Optional[bytes]:
    """The answer's payload if its tag is valid (or there is no key), else None: a client
    with the key believes only answers the members made."""
    payload = bytes(payload)
    if key is None:
        return payload
    if len(payload) < TAG_BYTES:
        return None
    body = payload[TAG_BYTES:]
    expected = _tag(key, correlation_id, request_type, body, _RESPONSE, code)
    return body if hmac.compare_digest(payload[:TAG_BYTES], expected) else None


def sign(key: Optional[bytes], correlation_id: int, request_type: int, args: bytes = b"") -> bytes:
    """The payload of an AdminRequest carrying ``args``: tag + args, or args alone without a key."""
    args = bytes(args)
    if key is None:
        return args
    return _tag(key, correlation_id, request_type, args) + args


def verify(key: bytes, correlation_id: int, request_type: int, payload: bytes) -> Optional[bytes]:
    """The request's arguments if ``payload`` carries a valid tag, else None."""
    payload = bytes(payload)
    if len(payload) < TAG_BYTES:
        return None
    args = payload[TAG_BYTES:]
    if not hmac.compare_digest(payload[:TAG_BYTES], _tag(key, correlation_id, request_type, args)):
        return None
    return args


def write_key_file(data_dir: str, key: bytes) -> str:
    """Write ``admin.key`` (hex, mode 0600) atomically; returns its path. The temporary file
    is created afresh (never through a link someone left in its place)."""
    path = os.path.join(data_dir, ADMIN_KEY_FILE)
    tmp = path + ".tmp"
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        os.write(fd, key.hex().encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def remove_key_file(data_dir: str) -> None:
    """A member started without a secret leaves no key from an earlier configuration behind."""
    try:
        os.remove(os.path.join(data_dir, ADMIN_KEY_FILE))
    except FileNotFoundError:
        pass


def read_key_file(data_dir: str) -> Optional[bytes]:
    """The key a member wrote to its data dir, or None when it runs without a secret."""
    try:
        with open(os.path.join(data_dir, ADMIN_KEY_FILE), "rb") as f:
            text = f.read().strip()
    except FileNotFoundError:
        return None
    try:
        key = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError(f"{os.path.join(data_dir, ADMIN_KEY_FILE)} is not a hex key") from None
    if len(key) != 32:
        raise ValueError(f"{os.path.join(data_dir, ADMIN_KEY_FILE)} holds {len(key)} bytes, not 32")
    return key


def own_addresses(own_host: str) -> frozenset:
    """The addresses the member's configured host (a name or an address) stands for."""
    import socket
    out = {own_host}
    try:
        out.update(info[4][0] for info in socket.getaddrinfo(own_host, None))
    except OSError:          # unresolvable now: the node could not have bound it either
        pass
    return frozenset(out)


def is_local_sender(sender_ip: Optional[str], own: frozenset) -> bool:
    """True for a loopback address or one of the member's own host addresses (this machine)."""
    if sender_ip is None:
        return False
    try:
        address = ipaddress.ip_address(sender_ip)
    except ValueError:
        return False
    return address.is_loopback or sender_ip in own


class AdminGate:
    """A member's admission of AdminRequests (see the module docstring)."""

    def __init__(self, secret: Optional[bytes], own_host: str):
        self.key = None if secret is None else admin_key(secret)
        self.own = own_addresses(own_host)

    def admit(self, sender_ip: Optional[str], correlation_id: int, request_type: int,
              payload: bytes) -> tuple:
        """(True, args) to act on the request, or (False, reason) to refuse it (the node
        counts refusals in its ``admin_rejected`` slot)."""
        if self.key is not None:
            args = verify(self.key, correlation_id, request_type, payload)
            if args is not None:
                return True, args
            return False, ("admin request not authenticated: it needs a tag made with the key "
                           "derived from the cluster's secret (aeronpy tool reads it from the "
                           "member's admin.key)")
        if is_local_sender(sender_ip, self.own):
            return True, bytes(payload)
        return False, (f"admin request from {sender_ip} refused: without a cluster secret "
                       "only this machine may send admin requests")
