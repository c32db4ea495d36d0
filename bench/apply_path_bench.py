"""CPU per applied SESSION_MESSAGE in ConsensusModule.apply_ready, leader and follower, without
transport or Raft: the apply + reply-cache + egress-queue path every member runs per message.

    python bench/apply_path_bench.py [--messages N] [--batch B] [--sessions S]

EchoService (one reply per message, 32-byte payloads) on a real LogIndex; the leader's egress is
drained after every batch as the node drains it (drain_egress_encoded into a send that only
counts; on a tree without it, drain_egress into a send that encodes), minus the socket.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from types import SimpleNamespace

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from aeronpy import _codec  # noqa: E402
from aeronpy._logindex import LogIndex  # noqa: E402
from aeronpy.cluster import entries as E  # noqa: E402
from aeronpy.cluster.module import ConsensusModule  # noqa: E402
from aeronpy.cluster.module_config import ModuleConfig  # noqa: E402
from aeronpy.service import Role  # noqa: E402
from aeronpy.testing.services import EchoService  # noqa: E402


class _Core:
    def __init__(self, role: Role, log: LogIndex):
        self.role, self.term, self.leader_id, self.log = role, 1, 0, log
        self.commit_index = 0

    def propose(self, entry_type, payload) -> int:
        return 0


def fill_log(log: LogIndex, messages: int, sessions: int) -> None:
    for i in range(sessions):
        log.append(1, E.SESSION_OPEN, E.encode_session_open(1_000, i + 1, 10 + i, f"127.0.0.1:{7000 + i}"))
    seqs = [0] * sessions
    body = b"x" * 32
    for i in range(messages):
        k = i % sessions
        seqs[k] += 1
        log.append(1, E.SESSION_MESSAGE, E.encode_session_message(2_000 + i, k + 1, seqs[k], 500 + i, 0, body))


def run(role: Role, messages: int, batch: int, sessions: int) -> float:
    log = LogIndex()
    module = ConsensusModule(0, _Core(role, log), [EchoService()], ModuleConfig(members={0: "m0:9000"}), 0)
    module.start()
    module.apply_ready(SimpleNamespace(apply_lo=1, apply_hi=1), 0)    # a leader turns ready here
    fill_log(log, messages, sessions)
    sent = [0]

    def send(client_ref, message) -> bool:       # what the node's send does, minus the socket
        if type(message) is not bytes:
            message = _codec.encode(message)
        sent[0] += 1
        return True

    def send_bytes(client_ref, data: bytes) -> int:
        sent[0] += 1
        return 1
    if hasattr(module, "drain_egress_encoded"):       # the node's drain, where there is one
        def drain():
            module.drain_egress_encoded(send_bytes, _codec.encode)
    else:
        def drain():
            module.drain_egress(send)
    module.apply_ready(SimpleNamespace(apply_lo=1, apply_hi=sessions + 1), 0)
    drain()
    total = log.last_index + 1
    cpu0 = time.process_time()
    lo = sessions + 1
    while lo < total:
        hi = min(total, lo + batch)
        module.apply_ready(SimpleNamespace(apply_lo=lo, apply_hi=hi), 0)
        drain()
        lo = hi
    cpu = time.process_time() - cpu0
    assert module.applied_index == total - 1 and module.container.services[0].messages == messages
    if role is Role.LEADER:
        assert module.leader_ready and sent[0] > 0
    return cpu / messages * 1e6


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--sessions", type=int, default=1)
    args = parser.parse_args(argv)
    for role in (Role.FOLLOWER, Role.LEADER):
        best = min(run(role, args.messages, args.batch, args.sessions) for _ in range(3))
        print(f"{role.name.lower():8s}: {best:.2f} us CPU per applied message "
              f"(best of 3, {args.messages} msgs, batches of {args.batch})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
