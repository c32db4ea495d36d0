"""Small stand-ins for the cluster side of DESIGN.md 1.1, enough to drive a service by hand.

The real cluster delivers timers as log entries; here a test fires them explicitly with
``advance_to``, in deadline order (ties by correlation id), as the cluster would.
"""
from aeronpy.examples import orders as wire


class FakeSession:
    def __init__(self, session_id):
        self.id = session_id
        self.sent = []            # raw payloads offered on egress

    def offer(self, payload):
        self.sent.append(bytes(payload))
        return len(payload)

    def events(self):
        return [wire.decode_event(p) for p in self.sent]

    def take(self):
        """Decoded events since the last take()."""
        out = self.events()
        self.sent.clear()
        return out


class FakeCluster:
    def __init__(self, member_id=0):
        self.member_id = member_id
        self.time_ns = 0
        self.timers = {}          # correlation_id -> deadline_ns
        self.sessions = {}
        self.service = None

    def start(self, service, snapshot=None):
        self.service = service
        service.on_start(self, snapshot)
        return service

    # the Cluster facade used by the service
    max_timers = 1_000_000          # as the cluster's: a new id beyond it is refused

    def schedule_timer(self, correlation_id, deadline_ns):
        if correlation_id not in self.timers and len(self.timers) >= self.max_timers:
            return False
        self.timers[correlation_id] = deadline_ns
        return True

    def cancel_timer(self, correlation_id):
        return self.timers.pop(correlation_id, None) is not None

    def get_client_session(self, session_id):
        return self.sessions.get(session_id)

    @property
    def client_sessions(self):
        return list(self.sessions.values())

    # test drivers
    def open_session(self, session_id):
        session = self.sessions[session_id] = FakeSession(session_id)
        self.service.on_session_open(session, self.time_ns)
        return session

    def close_session(self, session_id):
        session = self.sessions.pop(session_id)
        self.service.on_session_close(session, self.time_ns, 0)

    def send(self, session, payload, at_ns=None):
        if at_ns is not None:
            self.advance_to(at_ns)
        self.service.on_session_message(session, self.time_ns, memoryview(payload))

    def advance_to(self, now_ns):
        """Move cluster time forward, firing due timers first, in deadline order."""
        while True:
            due = sorted((deadline, cid) for cid, deadline in self.timers.items() if deadline <= now_ns)
            if not due:
                break
            deadline, cid = due[0]
            del self.timers[cid]
            self.time_ns = max(self.time_ns, deadline)
            self.service.on_timer_event(cid, self.time_ns)
        self.time_ns = max(self.time_ns, now_ns)
