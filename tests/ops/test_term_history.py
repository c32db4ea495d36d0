"""``aeronpy tool recording-log`` shows each member's term history: (term, first index) of every
leadership term its log holds. Nothing recorded term starts before, so it always read 0."""
from __future__ import annotations

import json
import time

import aeronpy.cli as cli
from aeronpy.archive import Archive
from aeronpy.service import Role
from aeronpy.testing.inproc import close_leader_handing_over, inproc_cluster


def run_tool(data_dir: str, capsys, *extra: str) -> tuple:
    code = cli.main(["tool", "recording-log", "--data-dir", data_dir, *extra])
    out, err = capsys.readouterr()
    return code, out, err


def expected_terms(log) -> list:
    """(term, first index) of each term the in-memory log holds, from the log itself."""
    terms = sorted({log.term_at(i) for i in range(1, log.last_index + 1)})
    return [{"term": t, "first_index": log.first_index_of_term(t)} for t in terms]


def close_leader_while_followers_run(nodes) -> object:
    leader = next(n for n in nodes if n.role == Role.LEADER)
    led = leader.core.term
    close_leader_handing_over(nodes)
    return leader, led


def test_every_member_records_its_terms_across_a_leader_change(capsys):
    with inproc_cluster() as (nodes, pump, client):
        old, led = close_leader_while_followers_run(nodes)
        rest = [n for n in nodes if n is not old]
        deadline = time.monotonic() + 20
        for _ in range(200_000):       # until a new leader's term start is committed everywhere
            for n in rest:
                n.do_work()
            leader = next((n for n in rest if n.role == Role.LEADER), None)
            if leader is not None and leader.core.term > led and all(
                    n.commit_index >= leader.core.log.first_index_of_term(leader.core.term) > 0
                    for n in rest):
                break
            assert time.monotonic() < deadline, "no new leader within 20 s"
        for node in rest:
            node.close()
        for node in nodes:
            code, out, err = run_tool(node.config.data_dir, capsys, "--json")
            data = json.loads(out)
            assert code == 0, err
            want = expected_terms(node.core.log)
            assert data["terms"] == want and data["term_starts"] == len(want), (node.member_id, data)
        for node in rest:
            assert [t["term"] for t in expected_terms(node.core.log)][-2:] == [led, leader.core.term]
        code, out, _ = run_tool(rest[0].config.data_dir, capsys)
        last = expected_terms(rest[0].core.log)[-1]
        assert code == 0 and f"term: {last['term']}, first_index: {last['first_index']}" in out, out


def test_a_start_the_log_no_longer_reaches_is_not_shown(tmp_path, capsys):
    """A member stopped right after a truncation cut a term's first entries: the recorded
    start lies past the log's end, and recovery and the tool both leave it out."""
    from aeronpy._logindex import LogIndex  # noqa: F401 - the archive's in-memory log
    data_dir = str(tmp_path / "node0")
    arc = Archive.open(data_dir, file_sync="none", segment_bytes=1 << 16)
    log = arc.recover().log
    for term in (1, 2, 2, 3, 3):
        log.append(term, 16, b"entry")
    arc.append_from(log, 1, 6)
    arc.record_term_starts(log, 1, 6)
    arc.truncate_from(4)
    arc.close()
    code, out, err = run_tool(data_dir, capsys, "--json")
    data = json.loads(out)
    assert code == 0, err
    assert [e["term"] for e in data["entries"] if e["type"] == "TERM_START"] == [1, 2, 3]
    assert data["terms"] == [{"term": 1, "first_index": 1}, {"term": 2, "first_index": 2}]
    arc = Archive.open(data_dir, file_sync="none", segment_bytes=1 << 16)
    assert [(t.term, t.index) for t in arc.recover().term_starts] == [(1, 1), (2, 2)]
    arc.close()
