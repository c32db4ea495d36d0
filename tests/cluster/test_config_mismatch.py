"""Members whose replicated-state settings differ are told so at each term entry.

Some settings decide, on every member at apply, what a service's calls return and what the
replicated state holds (``max_timers``, the reply cache bounds, ``max_message_bytes``, the
service message queue bound): members that differ in them diverge. They were documented as
"keep it the same on every member" and never checked. Now a leader writes its values into its
term's first entry (after its service list, docs/archive-format.md "The term entry") and a
member applying that entry with other values reports it as a service-list mismatch is
reported: the ``config_mismatches`` counter, a log ERROR and an errors.log record naming each
setting with the leader's value and its own. It does not stop, and votes are not refused over
it (a rolling change of a setting restarts the members one by one).

Logs written before hold term entries with the service list alone (``SVCSET1``): they apply
with no settings report, and their service list is still checked.
"""
from __future__ import annotations

import logging
import struct
import time

import pytest

from aeronpy.cluster import entries as E
from aeronpy.cluster.container import service_names, service_set_tag, service_set_tail
from aeronpy.cluster.module import ConsensusModule
from aeronpy.cluster.module_config import ModuleConfig
from aeronpy.cluster.nodefiles import read_errors
from aeronpy.service import Role

from .fakes import FakeCore, RecordingService

NEW_LEADERSHIP_TERM = 1
TS = 1_700_000_000_000_000_000

# the settings a term entry carries, and another value for each
SETTINGS = {"max_timers": 77, "reply_cache_messages": 31, "max_message_bytes": 4096,
            "reply_cache_replies_per_message": 3, "service_message_queue_max": 99}


def _values(config: ModuleConfig) -> dict:
    return {name: getattr(config, name) for name in SETTINGS}


def _new_tail(names, settings: dict) -> bytes:
    """A term entry tail as docs/archive-format.md lays it out (built by hand, not by the code
    under test): magic, u32 length of the service list, the list, then name=value lines."""
    body = "\n".join(names).encode()
    text = "\n".join(f"{k}={v}" for k, v in settings.items()).encode()
    return b"SVCSET2\0" + struct.pack("<I", len(body)) + body + text


def _old_tail(names) -> bytes:
    return b"SVCSET1\0" + "\n".join(names).encode()


def _module(**config):
    service = RecordingService()
    module = ConsensusModule(1, FakeCore(1), [service], ModuleConfig(**config))
    module.start()
    reports = {"config": [], "services": []}
    module.config_mismatch_listeners.append(reports["config"].append)
    module.service_set_listeners.append(reports["services"].append)
    return module, service, reports


def _term_entry(module, index: int, term: int, tail: bytes) -> None:
    module.apply(index, term, NEW_LEADERSHIP_TERM, TS.to_bytes(8, "little") + tail)


def _apply_a_message(module, index: int) -> None:
    """A session opens and sends one message: the member applies on after a report."""
    module.apply(index, 4, E.SESSION_OPEN, E.encode_session_open(TS + 1, 5, 6, "c:1"))
    module.apply(index + 1, 4, E.SESSION_MESSAGE,
                 E.encode_session_message(TS + 2, index, 1, 9, 0, b"after"))


def _ours(module) -> list:
    return service_names(module.container.services)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_a_leader_with_another_value_is_reported_and_the_member_applies_on(name):
    module, service, reports = _module(**{name: SETTINGS[name]})
    leader = _values(ModuleConfig())                  # the leader runs with the defaults
    _term_entry(module, 1, 4, _new_tail(_ours(module), leader))
    assert module.counters["config_mismatches"] == 1
    assert module.counters["service_set_mismatches"] == 0 and not reports["services"]
    [error] = reports["config"]
    text = str(error)
    assert f"{name}: leader {leader[name]}, this member {SETTINGS[name]}" in text, text
    assert "term 4" in text and "log index 1" in text
    assert "give every member the same value" in text       # what the operator does
    for other in set(SETTINGS) - {name}:
        assert other not in text                            # only what differs is named
    _apply_a_message(module, 2)
    assert service.messages == [b"after"] and module.applied_index == 3
    assert module.failure is None


def test_every_differing_setting_is_named_in_one_report_that_fits_errors_log():
    module, _service, reports = _module(**SETTINGS)
    leader = _values(ModuleConfig())
    _term_entry(module, 1, 2, _new_tail(_ours(module), leader))
    assert module.counters["config_mismatches"] == 1
    [error] = reports["config"]
    for name, value in SETTINGS.items():
        assert f"{name}: leader {leader[name]}, this member {value}" in str(error)
    assert len(f"{type(error).__qualname__}: {error}".encode()) <= 480   # one errors.log record


def test_control_equal_settings_report_nothing():
    module, service, reports = _module(**SETTINGS)
    _term_entry(module, 1, 4, _new_tail(_ours(module), SETTINGS))
    assert module.counters["config_mismatches"] == 0 and not reports["config"]
    assert module.counters["service_set_mismatches"] == 0 and not reports["services"]
    _apply_a_message(module, 2)
    assert service.messages == [b"after"]


def test_a_new_tail_still_carries_the_service_list_a_member_checks():
    module, _service, reports = _module()
    _term_entry(module, 1, 3, _new_tail(["x:Other"], _values(ModuleConfig())))
    assert module.counters["service_set_mismatches"] == 1
    assert "hosts services ['x:Other']" in str(reports["services"][0])
    assert module.counters["config_mismatches"] == 0 and not reports["config"]


def test_an_old_tail_has_no_settings_and_its_service_list_is_still_checked():
    module, service, reports = _module(**SETTINGS)       # all differ from any leader's default
    _term_entry(module, 1, 1, _old_tail(_ours(module)))
    assert module.counters["config_mismatches"] == 0 and not reports["config"]
    assert module.counters["service_set_mismatches"] == 0
    _term_entry(module, 2, 2, _old_tail(["x:Other"]))
    assert module.counters["service_set_mismatches"] == 1
    assert "hosts services ['x:Other']" in str(reports["services"][0])
    assert module.counters["config_mismatches"] == 0 and not reports["config"]
    _term_entry(module, 3, 3, b"")                       # no tail at all (payload of 8 bytes)
    _apply_a_message(module, 4)
    assert service.messages == [b"after"] and module.counters["config_mismatches"] == 0


@pytest.mark.parametrize("tail", [
    b"SVCSET2\0",                                         # no length
    b"SVCSET2\0\xff\xff\xff\x7f" + b"a:B",                # a length past the end
    b"SVCSET3\0" + b"anything",                           # a later layout: not ours to read
], ids=["no-length", "length-past-end", "unknown-magic"])
def test_a_tail_that_does_not_parse_is_not_a_report(tail):
    module, service, reports = _module(**SETTINGS)
    _term_entry(module, 1, 1, tail)
    assert module.counters["config_mismatches"] == 0 and not reports["config"]
    assert module.counters["service_set_mismatches"] == 0 and not reports["services"]
    _apply_a_message(module, 2)
    assert service.messages == [b"after"]


def test_settings_one_side_does_not_know_are_not_compared():
    """A later version may add settings (or drop one): only names both sides carry count."""
    module, _service, reports = _module()
    leader = _values(ModuleConfig())
    del leader["service_message_queue_max"]
    leader["a_later_setting"] = 5
    leader["not_a_number"] = "x"
    _term_entry(module, 1, 1, _new_tail(_ours(module), leader))
    assert module.counters["config_mismatches"] == 0 and not reports["config"]


def test_the_tail_the_code_builds_is_the_documented_layout():
    from aeronpy.cluster.container import parse_term_entry_tail, term_entry_tail
    services = [RecordingService()]
    config = ModuleConfig(**SETTINGS)
    tail = term_entry_tail(services, config.replicated_settings())
    assert tail == _new_tail(service_names(services), SETTINGS)
    assert parse_term_entry_tail(tail) == (service_names(services),
                                           {k: str(v) for k, v in SETTINGS.items()})
    assert parse_term_entry_tail(service_set_tail(services)) == (service_names(services), None)
    assert parse_term_entry_tail(b"") == (None, None)


# ---- a node: counter slot, log ERROR, errors.log ---------------------------------------------
def _node(tmp_path, **config):
    from tests.ops.opsfiles import one_member_node
    return one_member_node(tmp_path, **config)


def _lead(node) -> None:
    """Run until the node leads and has applied its own term entry."""
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and not (node.role == Role.LEADER and node.module.leader_ready):
        node.do_work()
    assert node.role == Role.LEADER and node.module.leader_ready


def _slot(node, name: str) -> int:
    node._transport_counters.publish()
    return node.counters.values[node.counters.index(name)]


def _run_twice(tmp_path, first: dict, second: dict, tail=None):
    """A node leads a term under ``first`` (optionally writing ``tail`` as its term entry's
    tail, as an earlier version did), closes, and starts again under ``second``: replaying
    that term entry, it compares the first run's values with its own."""
    node = _node(tmp_path, **first)
    me = node.config.members[0]
    if tail is not None:
        node.core.config.term_entry_tail = tail(node.module.container.services)
    try:
        _lead(node)
    finally:
        node.close()
    # the same ports unless told otherwise: they are part of the members list compared too
    node = _node(tmp_path, **{"ports": (me.consensus_port, me.ingress_port), **second})
    _lead(node)
    return node


def test_a_node_restarted_with_another_value_reports_it_and_serves_on(tmp_path, caplog):
    caplog.set_level(logging.ERROR)
    node = _run_twice(tmp_path, {"max_timers": 1000}, {"max_timers": 2000})
    try:
        assert node.module.counters["config_mismatches"] == 1
        assert _slot(node, "config_mismatches") == 1
        assert _slot(node, "service_set_mismatches") == 0
        lines = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert any("max_timers: leader 1000, this member 2000" in line for line in lines), lines
        errors = " ".join(e.text for e in read_errors(node.config.data_dir))
        assert "max_timers: leader 1000, this member 2000" in errors and "term 1" in errors
        assert node.failure is None
        # it led its own term since (its own values: nothing more) and serves on
        assert node.core.term >= 2 and node.module.counters["config_mismatches"] == 1
    finally:
        node.close()


def test_control_a_node_restarted_with_the_same_values_reports_nothing(tmp_path, caplog):
    caplog.set_level(logging.ERROR)
    node = _run_twice(tmp_path, {"max_timers": 1000}, {"max_timers": 1000})
    try:
        assert _slot(node, "config_mismatches") == 0
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert read_errors(node.config.data_dir) == []
    finally:
        node.close()


def test_a_node_replaying_an_old_term_entry_reports_no_settings_but_checks_services(tmp_path):
    """An earlier version's term entry (service list only) under other settings: no settings
    report; the same old entry naming other services is still reported."""
    node = _run_twice(tmp_path, {"max_timers": 1000}, {"max_timers": 2000},
                      tail=lambda services: service_set_tail(services))
    try:
        assert _slot(node, "config_mismatches") == 0 and _slot(node, "service_set_mismatches") == 0
    finally:
        node.close()
    node = _run_twice(tmp_path / "other", {"max_timers": 1000}, {"max_timers": 2000},
                      tail=lambda services: _old_tail(["x:Other"]))
    try:
        assert _slot(node, "config_mismatches") == 0 and _slot(node, "service_set_mismatches") == 1
        errors = " ".join(e.text for e in read_errors(node.config.data_dir))
        assert "hosts services ['x:Other']" in errors and "max_timers" not in errors
    finally:
        node.close()


def test_votes_are_never_refused_over_settings(tmp_path):
    """ballot_tag stays the service list's digest: a rolling change of a setting restarts
    members one by one, and refused votes would cost availability meanwhile."""
    nodes = [_node(tmp_path / str(i), max_timers=v, reply_cache_messages=v)
             for i, v in enumerate((1000, 2000))]
    try:
        services = nodes[0].module.container.services
        assert {n.core.config.ballot_tag for n in nodes} == {service_set_tag(services)}
        assert nodes[0].core.config.term_entry_tail != nodes[1].core.config.term_entry_tail
    finally:
        for n in nodes:
            n.close()


def test_a_leaders_odd_value_is_shown_escaped_and_cut():
    """The leader's text comes from the log: a multi-MB value or one with control characters
    (a buggy or older leader) went into the ERROR line as it was."""
    module, _service, reports = _module()
    leader = _values(ModuleConfig())
    leader["max_timers"] = "9" * 4_000_000 + "\x1b[2J\r"
    _term_entry(module, 1, 4, _new_tail(_ours(module), leader))
    [error] = reports["config"]
    text = str(error)
    assert len(text) < 600 and "\x1b" not in text and "\r" not in text
    assert "max_timers: leader '9999" in text and "..." in text


def test_a_node_restarted_with_another_members_list_reports_it(tmp_path, caplog):
    """Nothing compared the [[members]] lists: a member started with a wrong port for a peer
    (or an extra member) followed with no error, and the cluster could not elect once another
    member went down (found by an operator walkthrough). Its ids and ports are compared now."""
    from aeronpy.testing.process_cluster import free_udp_ports
    caplog.set_level(logging.ERROR)
    node = _run_twice(tmp_path, {}, {"ports": tuple(free_udp_ports(2))})
    try:
        assert _slot(node, "config_mismatches") == 1
        lines = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert any("members_digest: leader" in line and "[[members]] ids or ports differ" in line
                   for line in lines), lines
        assert node.failure is None
    finally:
        node.close()


# ---- a log restored from a backup onto other ports (restored.py) -------------------------------
def test_restored_term_entries_are_not_compared_for_the_members_list_alone():
    """Up to the restored log's end only the old member list goes uncompared: another shared
    setting there is still reported, and so is another member list past it."""
    module, _service, reports = _module(members_digest=111, restored_log_end=4)
    leader = {**_values(ModuleConfig()), "members_digest": 222}
    _term_entry(module, 1, 2, _new_tail(_ours(module), leader))
    _term_entry(module, 4, 3, _new_tail(_ours(module), leader))
    assert module.counters["config_mismatches"] == 0 and not reports["config"]
    _term_entry(module, 5, 4, _new_tail(_ours(module), {**leader, "max_timers": 77}))
    [error] = reports["config"]
    assert "members_digest" in str(error) and "max_timers" in str(error)


def test_control_without_a_restore_the_old_members_list_is_reported():
    module, _service, reports = _module(members_digest=111)
    _term_entry(module, 1, 2, _new_tail(_ours(module), {**_values(ModuleConfig()),
                                                        "members_digest": 222}))
    [error] = reports["config"]
    assert "[[members]] ids or ports differ" in str(error)


@pytest.mark.parametrize("restored", [True, False])
def test_a_node_restored_onto_other_ports_reports_no_old_members_list(tmp_path, caplog, restored):
    """`aeronpy backup --restore-to` into a data dir, started on other ports: the old term
    entries it replays carried the old ports and were each reported as a ConfigMismatchError
    (docs/backup.md said: harmless, take a snapshot). The restore marker ends that; a plain
    copy of the same files (the control) still reports it."""
    import shutil
    from aeronpy.cluster.backup import restore_to
    from aeronpy.cluster.restored import RESTORED_MARKER_FILE, read_restored_log_end
    from aeronpy.testing.process_cluster import free_udp_ports
    caplog.set_level(logging.INFO)
    node = _node(tmp_path / "old")
    try:
        _lead(node)
        last = node.core.log.last_index
    finally:
        node.close()
    old_dir, new_dir = str(tmp_path / "old" / "n0"), str(tmp_path / "new" / "n0")
    if restored:
        copied = restore_to(old_dir, new_dir)
        assert RESTORED_MARKER_FILE in copied and read_restored_log_end(new_dir) == (last, None)
    else:
        shutil.copytree(old_dir, new_dir, ignore=shutil.ignore_patterns("identity"))
    node = _node(tmp_path / "new", ports=tuple(free_udp_ports(2)), log_level="INFO")
    try:
        _lead(node)
        assert _slot(node, "config_mismatches") == (0 if restored else 1)
        assert node.core.term >= 2 and node.failure is None
        if restored:
            assert any(f"term entries up to index {last} carry the old cluster's member list"
                       in r.getMessage() for r in caplog.records)
    finally:
        node.close()


@pytest.mark.parametrize("text", ["", "{", '{"restored_log_end": -3}', '{"restored_log_end": "9"}',
                                  '["x"]', '{"restored_log_end": 1e400}'])
def test_an_unusable_restore_marker_is_reported_and_ignored(tmp_path, text):
    from aeronpy.cluster.restored import RESTORED_MARKER_FILE, read_restored_log_end
    (tmp_path / RESTORED_MARKER_FILE).write_text(text)
    end, why = read_restored_log_end(str(tmp_path))
    assert end == 0 and RESTORED_MARKER_FILE in why
    assert read_restored_log_end(str(tmp_path / "none")) == (0, None)
