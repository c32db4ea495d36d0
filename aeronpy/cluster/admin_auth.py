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
type, code, the request's own tag and payload), and the tool and the backup believe only answers
whose tag verifies: an answer fits the one request it was made for, never another.

Replay: a signed request carries the wall-clock millisecond it was made and the ingress
endpoint it is addressed to, under its tag. A member refuses one addressed to another member,
or made more than ``REQUEST_WINDOW_S`` away from its own clock, and remembers the tags it
admitted within that window: the same tag from another sender is refused as a replay (the
sender that made it may re-send it while unanswered, and the node answers a re-send without
acting twice). A member keeps those tags in ``admin.seen`` in its data dir too (appended, not
synced), so a request it admitted before it restarted is refused after as a replay. A power
loss within the window can lose that record; so can a write that fails (a full disk): the
member then stops keeping it (``seen_lost`` says why; the node logs it) rather than stop. Admin traffic still belongs on a network
the operator controls. The tool and the backup need clocks within the window of the members'
(NTP). A
refusal of a request whose tag verified is itself tagged for that request, so the tool and the
backup can show why.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import struct
import time
from typing import Callable, Optional

from aeronpy.archive.fs import check_regular_if_present, open_regular
from aeronpy.cluster import protocol as P

ADMIN_KEY_FILE = "admin.key"
ADMIN_SEEN_FILE = "admin.seen"      # tags admitted within the window, for after a restart
_SEEN = struct.Struct("<16sq")      # a tag and the wall-clock ms it leaves the window
_KEY_FILE_MAX_BYTES = 4096      # 64 hex digits and a newline; anything much longer is not a key
_KEY_FILE_HINT = ("remove it (a member writes its admin key there at start, and removes it when "
                  "the cluster has no secret)")
_SEEN_FILE_HINT = ("remove it (a member keeps the admin requests it admitted in the last minute "
                   "there, and writes it afresh at start)")
TAG_BYTES = 16
_SIGNED = struct.Struct("<qi")      # correlation_id, request_type: what the tag binds to
_CODE = struct.Struct("<i")         # an answer's code, bound too
_MADE = struct.Struct("<QH")        # a request's wall-clock ms and its destination's length
REQUEST_WINDOW_S = 60.0             # a signed request is admitted this close to the member's clock
MAX_REMEMBERED = 4096               # admitted tags kept for the window (refused beyond: a flood)
_KEY_CONTEXT = b"aeronpy admin requests v1"


def admin_key(secret: bytes) -> bytes:
    """The key admin requests are signed with, derived from the cluster secret."""
    return hashlib.blake2b(_KEY_CONTEXT, key=bytes(secret)[:64], digest_size=32).digest()


_REQUEST, _RESPONSE = b"Q", b"R"   # a request's tag can never pass as an answer's, or back


def _tag(key: bytes, correlation_id: int, request_type: int, body: bytes,
         direction: bytes = _REQUEST, code: int = 0, request_tag: bytes = b"") -> bytes:
    """A request's tag covers its made-at stamp and arguments (``body``); an answer's covers
    its code, the tag of the request it answers, and its payload."""
    h = hashlib.blake2b(key=key, digest_size=TAG_BYTES)
    h.update(direction)
    h.update(_SIGNED.pack(correlation_id, request_type))
    if direction == _RESPONSE:
        h.update(_CODE.pack(code))
        h.update(bytes(request_tag).ljust(TAG_BYTES, b"\0")[:TAG_BYTES])
    h.update(body)
    return h.digest()


def sign_response(key: Optional[bytes], correlation_id: int, request_type: int, code: int,
                  payload: bytes, request_tag: bytes = b"") -> bytes:
    """An AdminResponse's payload: tag + payload with a key (the member's), else as it is.
    ``request_tag``: the tag of the request answered (``request_tag_of`` its payload)."""
    payload = bytes(payload)
    if key is None:
        return payload
    return _tag(key, correlation_id, request_type, payload, _RESPONSE, code, request_tag) + payload


def verify_response(key: Optional[bytes], correlation_id: int, request_type: int, code: int,
                    payload: bytes, request_tag: bytes = b"") -> Optional[bytes]:
    """The answer's payload if its tag is valid for the request whose tag is ``request_tag``
    (or there is no key), else None: a client with the key believes only answers a member
    made to the very request it sent.

    Without a key, a refusal from a member that has a secret (it tags every answer, and an
    unsigned request is refused) comes with a tag nobody can check: the tag is dropped and the
    readable reason returned, with a note that the cluster has a secret. The tag differs per
    request, so left in place it made every refusal look new (and logged raw bytes)."""
    payload = bytes(payload)
    if key is None:
        if code != 0 and not payload.startswith(_REFUSAL_PREFIX) \
                and payload[TAG_BYTES:].startswith(_REFUSAL_PREFIX):
            return payload[TAG_BYTES:] + _NO_SECRET_NOTE
        return payload
    if len(payload) < TAG_BYTES:
        return None
    body = payload[TAG_BYTES:]
    expected = _tag(key, correlation_id, request_type, body, _RESPONSE, code, request_tag)
    return body if hmac.compare_digest(payload[:TAG_BYTES], expected) else None


_REFUSAL_PREFIX = b"admin request "   # every reason AdminGate.admit refuses with starts so
_NO_SECRET_NOTE = (b" [the member tags its answers: the cluster has a secret this client was "
                   b"not given]")

UNVERIFIED_HINT = ("answers came whose tag does not verify with this key: is the secret (or "
                   "the admin.key read) this cluster's?")


def sign(key: Optional[bytes], correlation_id: int, request_type: int, args: bytes = b"",
         now: Optional[float] = None, destination: str = "") -> bytes:
    """The payload of an AdminRequest carrying ``args``: tag + made-at ms + the ingress
    endpoint it is sent to ("host:port" as the cluster config spells it) + args, or args alone
    without a key. ``now``: the wall-clock time to stamp (default: the clock now)."""
    args = bytes(args)
    if key is None:
        return args
    dest = destination.encode()
    body = _MADE.pack(int((time.time() if now is None else now) * 1000), len(dest)) + dest + args
    return _tag(key, correlation_id, request_type, body) + body


class SignedRequest:
    """One AdminRequest as a sender makes it (signed for ``destination`` with ``key``, or plain
    without one) and the check of what comes back: ``answer(msg)`` keeps the first answer to it
    that verifies, and counts the others (a wrong key shows as answers that do not verify)."""

    def __init__(self, key: Optional[bytes], correlation_id: int, request_type: int,
                 args: bytes, destination: str):
        self._key = key
        self.correlation_id = correlation_id
        self.message = P.AdminRequest(correlation_id, request_type,
                                      sign(key, correlation_id, request_type, args,
                                           destination=destination))
        self._tag = request_tag_of(key, self.message.payload)
        self.answered = None            # the AdminResponse, its payload without the tag
        self.unverified = 0

    def on_message(self, msg) -> None:
        if type(msg) is not P.AdminResponse or msg.correlation_id != self.correlation_id \
                or self.answered is not None:
            return
        body = verify_response(self._key, msg.correlation_id, msg.request_type, msg.code,
                               msg.payload, self._tag)
        if body is None:                # with a key: only a member's answer to this one
            self.unverified += 1
        else:
            self.answered = P.AdminResponse(msg.correlation_id, msg.request_type, msg.code, body)

    def why_unanswered(self) -> str:
        """'' or the hint that answers came which did not verify."""
        return f"; {UNVERIFIED_HINT}" if self.unverified else ""


def request_tag_of(key: Optional[bytes], signed_payload: bytes) -> bytes:
    """The tag a signed request payload starts with (b"" without a key): what its answer binds."""
    return b"" if key is None else bytes(signed_payload[:TAG_BYTES])


def verify(key: bytes, correlation_id: int, request_type: int,
           payload: bytes) -> Optional[tuple]:
    """(args, made-at ms, destination) if ``payload`` carries a valid tag, else None."""
    payload = bytes(payload)
    if len(payload) < TAG_BYTES + _MADE.size:
        return None
    body = payload[TAG_BYTES:]
    if not hmac.compare_digest(payload[:TAG_BYTES], _tag(key, correlation_id, request_type, body)):
        return None
    made_ms, dest_len = _MADE.unpack_from(body)
    end = _MADE.size + dest_len
    if len(body) < end:
        return None
    return body[end:], made_ms, body[_MADE.size:end].decode(errors="replace")


def write_key_file(data_dir: str, key: bytes) -> str:
    """Write ``admin.key`` (hex, mode 0600) atomically; returns its path. The temporary file
    is created afresh (never through a link someone left in its place)."""
    path = os.path.join(data_dir, ADMIN_KEY_FILE)
    _replace_private_file(path, key.hex().encode() + b"\n", _KEY_FILE_HINT, sync=True)
    return path


def _write(fd: int, data: bytes) -> int:
    """``os.write`` (a seam for the tests of a full disk)."""
    return os.write(fd, data)


def _replace_private_file(path: str, data: bytes, hint: str, sync: bool) -> None:
    """``path`` holds ``data`` (mode 0600), by a temporary file renamed over it; the temporary
    file is created afresh (never through a link someone left in its place), and anything but
    a regular file in the way is refused by name (a directory would fail the rename, bare)."""
    check_regular_if_present(path, hint)
    tmp = path + ".tmp"
    try:
        os.unlink(tmp)                        # a file, FIFO or link left there goes
    except FileNotFoundError:
        pass
    except OSError:
        check_regular_if_present(tmp, hint)   # a directory: named, not a bare error
        raise
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        if _write(fd, data) != len(data):
            raise OSError(f"short write to {tmp}")
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def remove_key_file(data_dir: str) -> None:
    """A member started without a secret leaves no key from an earlier configuration behind.
    A FIFO or a link there is removed as a file is; a directory is refused, naming it."""
    path = os.path.join(data_dir, ADMIN_KEY_FILE)
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    except OSError:
        check_regular_if_present(path, _KEY_FILE_HINT)   # a directory: say so
        raise


def read_key_file(data_dir: str) -> Optional[bytes]:
    """The key a member wrote to its data dir, or None when it runs without a secret."""
    try:
        fd = open_regular(os.path.join(data_dir, ADMIN_KEY_FILE), hint=_KEY_FILE_HINT)
    except FileNotFoundError:
        return None
    try:
        text = os.read(fd, _KEY_FILE_MAX_BYTES).strip()
    finally:
        os.close(fd)
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
    """A member's admission of AdminRequests (see the module docstring). ``own_endpoint``: this
    member's ingress endpoint as the cluster config spells it ("host:port"), which signed
    requests must be addressed to."""

    def __init__(self, secret: Optional[bytes], own_host: str, own_endpoint: str = "",
                 clock: Callable[[], float] = time.time, window_s: float = REQUEST_WINDOW_S,
                 max_remembered: int = MAX_REMEMBERED, data_dir: Optional[str] = None):
        self.key = None if secret is None else admin_key(secret)
        self.own = own_addresses(own_host)
        self.own_endpoint = own_endpoint
        self._clock = clock
        self._window_s = float(window_s)
        self._max_remembered = int(max_remembered)
        # tag -> (sender ref, time it leaves the window), in the order admitted; a sender ref
        # of None: admitted by this member before it restarted (admin.seen)
        self._admitted: dict = {}
        self._seen_path = None if data_dir is None else os.path.join(data_dir, ADMIN_SEEN_FILE)
        self._seen_fd: Optional[int] = None
        self._seen_records = 0              # whole records in the file: its size / _SEEN.size
        self.seen_lost: Optional[str] = None    # why admin.seen is no longer kept, if so
        if self._seen_path is not None:
            if self.key is None:
                self._remove_seen()
            else:
                self._load_seen()

    # -- admin.seen: the tags admitted within the window, kept across a restart -------------
    def _load_seen(self) -> None:
        """Take the tags still within the window from admin.seen and write it afresh with
        them alone. Its content is only ever compared with tags: a damaged record can refuse
        nothing a member would admit. Records are whole (an append that fails is cut back:
        _note_seen), so a torn tail, which only a crash mid-append leaves, is left out."""
        now = self._clock()
        try:
            fd = open_regular(self._seen_path, hint=_SEEN_FILE_HINT)
        except FileNotFoundError:
            data = b""
        else:
            try:
                data = os.read(fd, 2 * self._max_remembered * _SEEN.size)
            finally:
                os.close(fd)
        for offset in range(0, len(data) - _SEEN.size + 1, _SEEN.size):
            tag, until_ms = _SEEN.unpack_from(data, offset)
            if now < until_ms / 1000.0 <= now + 2 * self._window_s and len(self._admitted) < self._max_remembered:
                self._admitted[tag] = (None, until_ms / 1000.0)
        self._rewrite_seen()

    def _rewrite_seen(self) -> None:
        """admin.seen anew with the tags remembered now (a temporary file renamed over it)."""
        _replace_private_file(self._seen_path, b"".join(
            _SEEN.pack(tag, int(until * 1000)) for tag, (_, until) in self._admitted.items()),
            _SEEN_FILE_HINT, sync=False)
        fd, self._seen_fd = self._seen_fd, None
        if fd is not None:
            os.close(fd)
        self._seen_fd = os.open(self._seen_path, os.O_WRONLY | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0))
        self._seen_records = len(self._admitted)

    def _note_seen(self, tag: bytes, until: float) -> None:
        """Append one admitted tag (no fsync: a process crash keeps it; it is rewritten with
        the live tags only once it holds twice as many records as may be remembered). A write
        that fails or falls short (a full disk) is cut back to the last whole record, and the
        file is kept no longer: admitting requests must not stop the member."""
        if self._seen_fd is None:
            return
        try:
            if self._seen_records >= 2 * self._max_remembered:
                self._rewrite_seen()
                return
            record = _SEEN.pack(tag, int(until * 1000))
            written = _write(self._seen_fd, record)
            if written != len(record):
                raise OSError(f"short write ({written} of {len(record)} bytes)")
            self._seen_records += 1
        except OSError as exc:
            self._give_up_seen(exc)

    def _give_up_seen(self, exc: OSError) -> None:
        self.seen_lost = (f"{self._seen_path}: {exc}; requests admitted from now on are not "
                          "remembered across a restart")
        fd, self._seen_fd = self._seen_fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, self._seen_records * _SEEN.size)   # whole records only
        except OSError:
            pass
        os.close(fd)

    def _remove_seen(self) -> None:
        try:
            os.remove(self._seen_path)
        except FileNotFoundError:
            pass
        except OSError:
            check_regular_if_present(self._seen_path, _SEEN_FILE_HINT)
            raise

    def close(self) -> None:
        fd, self._seen_fd = self._seen_fd, None
        if fd is not None:
            os.close(fd)

    def admit(self, sender_ip: Optional[str], sender_ref: int, correlation_id: int,
              request_type: int, payload: bytes) -> tuple:
        """(True, args, request_tag, "") to act on the request, or (False, reason, request_tag,
        kind) to refuse it: ``kind`` a short fixed name for logs, ``request_tag`` the tag the
        answer must be tagged for (b"" when the request's own tag did not verify). The node
        counts refusals in its ``admin_rejected`` slot. ``sender_ref``: who sent it (the
        ingress's client ref): only that sender may send the same signed request again."""
        if self.key is None:
            if is_local_sender(sender_ip, self.own):
                return True, bytes(payload), b"", ""
            return False, (f"admin request from {sender_ip} refused: without a cluster secret "
                           "only this machine may send admin requests"), b"", "not from this machine"
        verified = verify(self.key, correlation_id, request_type, payload)
        if verified is None:
            return False, ("admin request not authenticated: it needs a tag made with the key "
                           "derived from the cluster's secret (aeronpy tool reads it from the "
                           "member's admin.key)"), b"", "not authenticated"
        args, made_ms, destination = verified
        tag = bytes(payload[:TAG_BYTES])
        if not self._addressed_here(destination):
            return False, (f"admin request addressed to {destination or 'no member'!r}, not to "
                           f"this member ({self.own_endpoint})"), tag, "addressed elsewhere"
        now = self._clock()
        self._forget_expired(now)
        age_s = now - made_ms / 1000.0
        if abs(age_s) > self._window_s:
            return False, (f"admin request made {age_s:+.1f} s from this member's clock, outside "
                           f"the {self._window_s:g} s window: a replay, or the sender's clock is "
                           "off"), tag, "outside the time window"
        seen = self._admitted.get(tag)
        if seen is not None:
            if seen[0] is None:
                return False, ("admin request refused: this member admitted it before it "
                               "restarted (a replay, or a re-send across the restart: send a new "
                               "one)"), tag, "replayed"
            if seen[0] == sender_ref:        # re-sent while unanswered: the node answers again
                return True, args, tag, ""
            return False, "admin request refused: replayed from another sender", tag, "replayed"
        if len(self._admitted) >= self._max_remembered:
            return False, (f"admin request refused: {self._max_remembered} admitted within "
                           f"{self._window_s:g} s already"), tag, "too many"
        until = made_ms / 1000.0 + self._window_s
        self._admitted[tag] = (sender_ref, until)
        self._note_seen(tag, until)
        return True, args, tag, ""

    def _addressed_here(self, destination: str) -> bool:
        """The destination is this member's configured endpoint, or its port at one of this
        member's addresses written as an IP (no name lookups on the duty cycle)."""
        if not self.own_endpoint or destination == self.own_endpoint:
            return True
        from aeronpy.endpoints import ip_literal, split_endpoint
        try:
            host, port = split_endpoint(destination)
            own_port = split_endpoint(self.own_endpoint)[1]
            address = ip_literal(host)       # one spelling per address: "0:0::1" is "::1"
        except ValueError:
            return False
        return port == own_port and (host in self.own
                                     or (address is not None and str(address) in self.own))

    def _forget_expired(self, now: float) -> None:
        admitted = self._admitted
        if len(admitted) >= self._max_remembered:   # full: a sweep (stamps differ in order)
            for tag in [t for t, (_, until) in admitted.items() if until < now]:
                del admitted[tag]
            return
        while admitted:                             # else the oldest admitted, from the front
            tag, (_, until) = next(iter(admitted.items()))
            if until >= now:
                break
            del admitted[tag]
