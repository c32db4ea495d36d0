"""What a member checks in each term's first entry: the leader's service list and its values
of the settings every member must share (docs/archive-format.md, "The term entry"). A mismatch
is reported to listeners (the node logs and records it), never a stop.

Split out of module.py for size: a mixin of :class:`ConsensusModule`, using its container,
config, counters and the two listener lists it sets up.
"""
from __future__ import annotations

from aeronpy.cluster.container import (ConfigMismatchError, ServiceSetError, parse_term_entry_tail,
                                       renamed_service_hint, service_names)


def _shown_value(text: str, limit: int = 24) -> str:
    """A setting's value as a term entry carried it, fit for one log line."""
    if text.isascii() and text.isdigit() and len(text) <= limit:
        return text
    return repr(text[:limit]) + ("..." if len(text) > limit else "")


class TermEntryChecks:
    """The term entry's checks (mixin of ConsensusModule)."""

    def _check_term_entry(self, index: int, term: int, payload) -> None:
        """Compare what a term's leader wrote into its first entry after the timestamp (its
        service list and, since the settings are checked, its values of the settings every
        member must share: container.term_entry_tail) with this member's own."""
        services, settings = parse_term_entry_tail(memoryview(payload)[8:])
        if services is not None:
            self._check_service_set(index, term, services)
        if settings is not None:         # None: an earlier version's entry (services only)
            self._check_settings(index, term, settings)

    def _check_service_set(self, index: int, term: int, theirs: list) -> None:
        """Compare the service list a term's leader wrote into its first entry with ours. A
        mismatch is reported, not a stop: a member cannot tell whether it or that leader is
        the misconfigured one (a review showed a misconfigured member that won an election
        would have stopped every correct member, at an entry their log then held for good).
        Each listener gets the ServiceSetError; the node logs and records it."""
        ours = service_names(self.container.services)
        if theirs != ours:
            self.counters["service_set_mismatches"] += 1
            error = ServiceSetError(
                f"the leader of term {term} hosts services {theirs} (log index {index}), this "
                f"member hosts {ours}: members hosting other services diverge. Find the member "
                "whose --service list differs from the cluster's, stop it, and start it with "
                "the right list on an empty data dir (docs/operations.md, 'Changing the set "
                f"of services'){renamed_service_hint(theirs, ours)}")
            for listener in self.service_set_listeners:
                listener(error)

    def _check_settings(self, index: int, term: int, theirs: dict) -> None:
        """Compare the leader's values of the settings every member must share
        (module_config.REPLICATED_SETTINGS) with ours; only names both sides carry count. A
        mismatch is reported (each listener gets the ConfigMismatchError; the node logs and
        records it), never a stop, as for the service list. Votes are not refused over it
        (CoreConfig.ballot_tag stays the service list): a rolling change of a setting restarts
        members one by one, and refused votes would cost availability during the roll."""
        ours = self.config.replicated_settings()
        if index <= self.config.restored_log_end:
            # the old cluster's member list, restored from a backup (restored.py)
            ours.pop("members_digest", None)
        differ = [(name, theirs[name], value) for name, value in ours.items()
                  if name in theirs and theirs[name] != str(value)]
        if not differ:
            return
        self.counters["config_mismatches"] += 1
        # the leader's text comes from the log: a value that is not a short decimal (a buggy
        # or older leader) is shown escaped and cut, never a multi-MB or control-character line
        named = "; ".join(f"{name}: leader {_shown_value(leader)}, this member {mine}"
                          for name, leader, mine in differ)
        # short, the settings last: errors.log keeps 480 bytes of a record (all five differing
        # fit). Expected during a rolling change of a setting (docs/configuration.md).
        if any(name == "members_digest" for name, _l, _m in differ):
            # ids and ports only: compare `aeronpy tool list-members` on each member
            named += " (the [[members]] ids or ports differ)"
        error = ConfigMismatchError(
            f"the leader of term {term} (log index {index}) has other settings than this member, "
            "so their states diverge; give every member the same value, restarting one at a "
            f"time (docs/configuration.md): {named}")
        for listener in self.config_mismatch_listeners:
            listener(error)
