"""One simulated member: the driver that connects a ``RaftCore`` to storage, network and the
hosted services. It does, for every Ready, exactly what a real node's duty cycle does:
truncate, persist (sync per policy), send, apply, advance. Kept small so the cluster layer's
``ConsensusModule`` can replace the applier later without touching the simulator.
"""
from __future__ import annotations

from aeronpy.core import CoreConfig, RaftCore
from aeronpy.service import Role
from aeronpy.testing.applier import MinimalApplier

READY_ROUNDS_MAX = 16   # a Ready can enable another (commit after persist); never loop forever


class SimMember:
    def __init__(self, member_id: int, config: CoreConfig, storage, services: list, rng, transport, checker):
        self.member_id = member_id
        self.storage = storage
        self.alive = True
        self._transport = transport      # transport.send_member(src, dst, msg) / .send_reply(...)
        self._checker = checker
        recovered = storage.recover()
        self.core = RaftCore(config, rng, recovered.hard_state, recovered.log,
                             commit_index=recovered.log.base_index)
        self.applier = MinimalApplier(member_id, services, self.core, self._reply)
        checker.on_start(self)

    @property
    def services(self) -> list:
        return self.applier.services

    def _reply(self, client_id: int, correlation_id: int, payload: bytes) -> None:
        self._transport.send_reply(self.member_id, client_id, correlation_id, payload)

    # ------------------------------------------------------------------ inputs
    def on_tick(self, now_ns: int) -> None:
        self.core.tick(now_ns)
        self.process(now_ns)

    def on_message(self, src: int, msg, now_ns: int) -> None:
        self.core.step(src, msg, now_ns)
        self.process(now_ns)

    def on_client_message(self, now_ns: int, client_id: int, correlation_id: int, service_id: int, body) -> None:
        outcome = self.applier.on_client_message(now_ns, client_id, correlation_id, service_id, body)
        if outcome == "not_leader":
            self._transport.send_redirect(self.member_id, client_id, correlation_id, self.core.leader_id)
        self.process(now_ns)

    # ------------------------------------------------------------------ the duty cycle's second half
    def process(self, now_ns: int) -> None:
        core = self.core
        storage = self.storage
        checker = self._checker
        for _ in range(READY_ROUNDS_MAX):
            if not core.has_ready():
                break
            rd = core.ready()
            if rd.truncate_from is not None:
                checker.before_truncate(self, rd.truncate_from)
                storage.truncate_from(rd.truncate_from)
            if rd.hard_state is not None:
                storage.save_hard_state(rd.hard_state.term, rd.hard_state.voted_for)
            if rd.persist_hi > rd.persist_lo:
                storage.append_from(core.log, rd.persist_lo, rd.persist_hi)
            if storage.file_sync != "none" and (rd.persist_hi > rd.persist_lo or rd.truncate_from is not None):
                storage.sync()      # group commit: one sync per Ready, before anything is sent
            checker.on_persisted(self, rd)
            for to, msg in rd.messages:
                checker.on_send(self, to, msg)
                self._transport.send_member(self.member_id, to, msg)
            if rd.role_changed is not None:
                checker.on_role_change(self, rd.role_changed)
                self.applier.on_role_change(rd.role_changed)
            self.applier.commit_index = rd.commit_index
            log = core.log
            for index in range(rd.apply_lo, rd.apply_hi):
                checker.on_apply(self, index)
                self.applier.apply(log, index)
            core.advance(rd)
        checker.after_event(self)

    @property
    def role(self) -> Role:
        return self.core.role
