"""CPU per client SessionMessage on the leader, from the ingress frame to the proposed log
entry, without transport or Raft replication: the path ClusterNode._on_ingress_message runs.

    python bench/ingress_path_bench.py [--messages N] [--sessions S]

Two paths over the same frames, in this one process (so the ratio is what to read):
  python:   session_message_fields + ConsensusModule.on_session_message (main before the
            compiled path: checks, _stamp, struct pack, _propose in Python)
  compiled: module.ingress_path.on_frame (csrc/_ingress.pyx)
each called from a Python function as the node's _on_ingress_message does. The core is a
stand-in whose propose does what RaftCore.propose does (leader check, LogIndex.append, flag).
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
from aeronpy._ingress import session_message_fields  # noqa: E402
from aeronpy._logindex import LogIndex  # noqa: E402
from aeronpy.cluster import entries as E  # noqa: E402
from aeronpy.cluster import protocol as P  # noqa: E402
from aeronpy.cluster.module import ConsensusModule  # noqa: E402
from aeronpy.cluster.module_config import ModuleConfig  # noqa: E402
from aeronpy.core.raft import RaftCore  # noqa: E402
from aeronpy.service import Role  # noqa: E402
from aeronpy.testing.services import EchoService  # noqa: E402


class _LeaderState:
    transfer_target = None
    broadcast_pending = False


class _Core:
    """A leading core with RaftCore.propose's work (the real method), nothing else."""
    propose = RaftCore.propose

    def __init__(self, log: LogIndex):
        self.role, self.term, self.leader_id, self.log = Role.LEADER, 1, 0, log
        self.commit_index = 0
        self.leader_state = _LeaderState()


def _ready_leader(sessions: int):
    log = LogIndex()
    endpoints = {f"127.0.0.1:{7000 + i}": i for i in range(sessions)}
    config = ModuleConfig(members={0: "m0:9000"}, client_ref_of_endpoint=endpoints.get)
    module = ConsensusModule(0, _Core(log), [EchoService()], config, 0)
    module.start()
    for i in range(sessions):
        log.append(1, E.SESSION_OPEN, E.encode_session_open(1_000, i + 1, 10 + i, f"127.0.0.1:{7000 + i}"))
    module.apply_ready(SimpleNamespace(apply_lo=1, apply_hi=sessions + 1), 0)
    assert module.leader_ready and len(module.sessions) == sessions
    return module, log


def run(path: str, messages: int, sessions: int) -> float:
    module, log = _ready_leader(sessions)
    ids = [s.session_id for s in module.sessions]
    seqs = [0] * sessions
    frames = []
    body = b"x" * 32
    for i in range(messages):
        k = i % sessions
        seqs[k] += 1
        frames.append((k, memoryview(_codec.encode(P.SessionMessage(ids[k], seqs[k], 500 + i, 0, body)))))
    clock = time.monotonic_ns

    if path == "python":
        def on_ingress(client_ref, payload):
            fields = session_message_fields(payload)
            module.on_session_message(client_ref, fields, clock())
    else:
        def on_ingress(client_ref, payload):
            module.ingress_path.on_frame(client_ref, payload, clock)
    first = log.last_index + 1
    cpu0 = time.process_time()
    for ref, frame in frames:
        on_ingress(ref, frame)
    cpu = time.process_time() - cpu0
    assert log.last_index - first + 1 == messages == module.counters["proposed"], path
    return cpu / messages * 1e6


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--sessions", type=int, default=4)
    args = parser.parse_args(argv)
    best = {}
    for _ in range(3):      # interleaved, best of 3 each
        for path in ("python", "compiled"):
            us = run(path, args.messages, args.sessions)
            best[path] = min(best.get(path, us), us)
    for path, us in best.items():
        print(f"{path:9s}: {us:.2f} us CPU per message, frame to proposed entry "
              f"(best of 3, {args.messages} msgs, {args.sessions} sessions)")
    print(f"ratio compiled/python: {best['compiled'] / best['python']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
