"""Client <-> cluster (ingress/egress) and admin messages. Message type ids 32..63.

Field types: ids, correlation ids, seq numbers, terms are int64; member ids and codes int32;
``service_id`` int32; strings are UTF-8 with a u16 length; ``payload``/``credentials`` bytes
with a u32 length.
"""
from aeronpy._msgdef import message_class

# SessionEvent.code
EVENT_OK = 0
EVENT_ERROR = 1
EVENT_REDIRECT = 2
EVENT_AUTHENTICATION_REJECTED = 3
EVENT_CLOSED = 4

# SessionEvent.detail of the EVENT_ERROR answering a message above the cluster's
# max_message_bytes (the cluster consumes its seq; the client fails a request waiting for it)
DETAIL_MESSAGE_TOO_LARGE = "message too large"
DETAIL_UNKNOWN_SERVICE = "unknown service"

# Client protocol versions (SessionConnect.protocol_version). A cluster accepts every version
# from the oldest to its own. Version 2 adds the cluster's session terms to the OK answering a
# connect: SessionEvent.detail is then "<leader endpoint>;session_timeout_ms=N;..." (see
# format_session_terms), where version 1 has the endpoint alone.
OLDEST_CLIENT_PROTOCOL_VERSION = 1
CLIENT_PROTOCOL_VERSION = 2
SESSION_TERMS = ("session_timeout_ms", "reply_cache_messages", "max_message_bytes")
MAX_SESSION_TERM = 1 << 40


def format_session_terms(endpoint: str, terms: dict) -> str:
    """The detail of a version-2 connect OK: the leader's endpoint, then ``;name=value`` for
    each session term (ints)."""
    return endpoint + "".join(f";{name}={int(terms[name])}" for name in SESSION_TERMS if name in terms)


def parse_session_terms(detail: str) -> tuple[str, dict]:
    """(endpoint, {name: int}) from a connect OK's detail, either version. Names this version
    does not know, and parts that are not ``name=int`` in [0, MAX_SESSION_TERM], are left out:
    a newer cluster may send more, and no real term comes near the bound (2**40 ms is 34
    years), which keeps every use of one (a timeout in ns) within 64 bits."""
    endpoint, *parts = detail.split(";")
    terms = {}
    for part in parts:
        name, sep, value = part.partition("=")
        if sep and name in SESSION_TERMS and value.isascii() and value.isdigit() and len(value) <= 13 \
                and int(value) <= MAX_SESSION_TERM:
            terms[name] = int(value)
    return endpoint, terms

SessionConnect = message_class(
    "SessionConnect", 32, "correlation_id client_nonce response_endpoint credentials protocol_version",
    defaults={"credentials": b"", "protocol_version": 1},
    doc="Client asks for a session; response_endpoint is the client's egress 'host:port'.")
SessionEvent = message_class(
    "SessionEvent", 33, "correlation_id session_id code leader_member_id leadership_term detail",
    defaults={"detail": ""},
    doc="Answer to a connect (OK, ERROR, REDIRECT with detail = leader's ingress endpoint, "
        "AUTHENTICATION_REJECTED) or a notice that the session closed.")
SessionMessage = message_class(
    "SessionMessage", 34, "session_id seq correlation_id service_id payload",
    doc="Ingress: seq numbers a session's messages 1, 2, ... so the cluster sequences each once.")
SessionKeepAlive = message_class("SessionKeepAlive", 35, "session_id leadership_term")
SessionClose = message_class("SessionClose", 36, "session_id leadership_term")
NewLeaderEvent = message_class(
    "NewLeaderEvent", 37, "session_id leadership_term leader_member_id ingress_endpoints",
    doc="Egress: a new leader took over; the client re-sends its unacknowledged messages there.")
EgressMessage = message_class(
    "EgressMessage", 38, "session_id correlation_id ack_seq payload",
    doc="A response. ack_seq: the seq of the message it answers (correlation_id != 0), or the "
        "highest seq applied (the service's own messages, correlation_id 0). Not a cumulative "
        "ack: the reply to a lower seq may still be on its way from another leader.")
SessionAck = message_class(
    "SessionAck", 39, "session_id leadership_term ack_seq",
    doc="Egress: the highest seq applied, so the client can release its resend buffer.")
SessionWindow = message_class(
    "SessionWindow", 40, "session_id leadership_term window_base",
    doc="Ingress: the lowest seq the client still holds in its window, sent ahead of a re-sent "
        "window when it released messages above the highest ack it got and the last ack came "
        "below them (held), so the leader ends the ack holds for messages below it (the client "
        "never re-sends those) and acks.")
AdminRequest = message_class("AdminRequest", 48, "correlation_id request_type payload")
AdminResponse = message_class("AdminResponse", 49, "correlation_id request_type code payload")

CLIENT_MESSAGES = (SessionConnect, SessionEvent, SessionMessage, SessionKeepAlive, SessionClose,
                   NewLeaderEvent, EgressMessage, SessionAck, SessionWindow, AdminRequest,
                   AdminResponse)
