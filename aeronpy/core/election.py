"""Leader election as an explicit state machine, in the manner of Aeron's ``Election``.

States (one ``_on_<state>`` tick method each; every change goes through ``_transition``,
which records the reason and counts it):

  FOLLOWER_READY   following a leader, or waiting for one; on election timeout -> CANVASS
  CANVASS          pre-vote: ask "could I win term+1 with my log?" without raising the term.
                   A quorum of yes -> NOMINATE; a quorum of no -> FOLLOWER_READY;
                   timeout -> CANVASS again
  NOMINATE         a short random pause, then -> CANDIDATE_BALLOT
  CANDIDATE_BALLOT term+1, vote for self (persisted before the requests go out), ask for votes.
                   A quorum of grants -> LEADER_READY; a quorum of refusals -> FOLLOWER_READY;
                   timeout -> CANVASS
  LEADER_READY     leading; check-quorum failure or a higher term -> FOLLOWER_READY

Rules (Raft paper section 5.2, 5.4.1 and the thesis section 9.6):
- A vote is granted only to a candidate whose log is at least as up-to-date (last term, then
  last index), at most once per term.
- A member that heard from a live leader within the election timeout refuses canvasses and
  ignores higher-term ballots (disruptive-server protection), unless the ballot is a
  leadership transfer.
- A canvass never changes anybody's term; only a ballot does.
"""
from __future__ import annotations

import enum

from aeronpy.core import config as _config
from aeronpy.core.messages import CanvassPosition, RequestVote, Vote
from aeronpy.core.quorum import quorum_size

TRANSITION_HISTORY_MAX = 64


class ElectionState(enum.IntEnum):
    FOLLOWER_READY = 0
    CANVASS = 1
    NOMINATE = 2
    CANDIDATE_BALLOT = 3
    LEADER_READY = 4


class Election:
    """Owns the election timers and the canvass/ballot tallies of one member's core."""

    __slots__ = ("core", "state", "deadline_ns", "granted", "rejected", "transition_count",
                 "history", "campaign_is_transfer", "campaign_ns")

    def __init__(self, core):
        self.core = core
        self.state = ElectionState.FOLLOWER_READY
        self.deadline_ns = None       # set at the first tick: the core has no clock of its own
        self.granted: set = set()
        self.rejected: set = set()
        self.transition_count = 0
        self.history: list = []       # (now_ns, from_state, to_state, reason), bounded
        self.campaign_is_transfer = False
        # when this member last canvassed or asked for votes (None: never): a leader it names
        # but has not heard from since is only its last one (RaftCore.heard_leader_since_campaign)
        self.campaign_ns = None

    # ---------------------------------------------------------------- state changes
    def _transition(self, new_state: ElectionState, now_ns: int, reason: str) -> None:
        history = self.history
        history.append((now_ns, self.state, new_state, reason))
        if len(history) > TRANSITION_HISTORY_MAX:
            del history[0]
        self.transition_count += 1
        self.state = new_state
        entry = _ENTRY_ACTIONS[new_state]
        entry(self, now_ns)

    def _randomized_timeout_ns(self) -> int:
        timeout = self.core.config.election_timeout_ns
        return self.core._rng.randrange(timeout, 2 * timeout)

    def reset_timer(self, now_ns: int) -> None:
        self.deadline_ns = now_ns + self._randomized_timeout_ns()

    # ---------------------------------------------------------------- entry actions
    def _enter_follower_ready(self, now_ns: int) -> None:
        self.granted.clear()
        self.rejected.clear()
        self.reset_timer(now_ns)

    def _enter_canvass(self, now_ns: int) -> None:
        core = self.core
        self.campaign_ns = now_ns
        self.granted = {core.member_id}
        self.rejected = set()
        self.reset_timer(now_ns)
        msg = self.canvass_message()
        for peer in core.config.voters:
            if peer != core.member_id:
                core.send(peer, msg)
        self._check_canvass_tally(now_ns)

    def canvass_message(self) -> CanvassPosition:
        """'Could I win term + 1 with my log?': the canvass, also a rejoining member's way to
        learn a peer's term (its answer carries it; RaftCore._hold_unheard_leader)."""
        core = self.core
        log = core.log
        return CanvassPosition(core.term, core.term + 1, log.last_term, log.last_index,
                               core.config.ballot_tag)

    def _enter_nominate(self, now_ns: int) -> None:
        delay_max = self.core.config.nominate_delay_max_ns
        self.deadline_ns = now_ns + (self.core._rng.randrange(0, delay_max + 1) if delay_max > 0 else 0)

    def _enter_candidate_ballot(self, now_ns: int) -> None:
        core = self.core
        self.campaign_ns = now_ns
        core.become_candidate(now_ns)
        self.granted = {core.member_id}
        self.rejected = set()
        self.reset_timer(now_ns)
        log = core.log
        msg = RequestVote(core.term, log.last_term, log.last_index, self.campaign_is_transfer,
                          core.config.ballot_tag)
        for peer in core.config.voters:
            if peer != core.member_id:
                core.send(peer, msg)
        self._check_ballot_tally(now_ns)

    def _enter_leader_ready(self, now_ns: int) -> None:
        self.deadline_ns = None
        self.campaign_is_transfer = False
        self.core.become_leader(now_ns)

    # ---------------------------------------------------------------- per-state tick methods
    def on_tick(self, now_ns: int) -> None:
        deadline_ns = self.deadline_ns
        if deadline_ns is not None and now_ns < deadline_ns:
            return    # every state's tick method acts only once its deadline has passed
        if deadline_ns is None and self.state != ElectionState.LEADER_READY:
            self.reset_timer(now_ns)
            return
        _TICK_METHODS[self.state](self, now_ns)

    def _on_follower_ready(self, now_ns: int) -> None:
        if now_ns >= self.deadline_ns and self.core.is_voter:
            self.start_campaign(now_ns, "election timeout", transfer=False)

    def _on_canvass(self, now_ns: int) -> None:
        if now_ns >= self.deadline_ns:
            self._transition(ElectionState.CANVASS, now_ns, "canvass timeout")

    def _on_nominate(self, now_ns: int) -> None:
        if now_ns >= self.deadline_ns:
            self._transition(ElectionState.CANDIDATE_BALLOT, now_ns, "nomination delay over")

    def _on_candidate_ballot(self, now_ns: int) -> None:
        if now_ns >= self.deadline_ns:
            self.start_campaign(now_ns, "ballot timeout", transfer=False)

    def _on_leader_ready(self, now_ns: int) -> None:
        pass  # heartbeats and check-quorum belong to replication

    # ---------------------------------------------------------------- campaign entry points
    def start_campaign(self, now_ns: int, reason: str, transfer: bool) -> bool:
        """Stand for election (on a timeout, or told by TimeoutNow: ``transfer``), unless the
        core withholds its candidacy (RaftCore.withholds_campaign): then the timer restarts
        (a refused transfer leaves it) and False is returned."""
        if self.core.withholds_campaign():
            if not transfer:
                self.reset_timer(now_ns)
            return False
        self.campaign_is_transfer = transfer
        if transfer or not self.core.config.pre_vote:
            self._transition(ElectionState.CANDIDATE_BALLOT, now_ns, reason)
        else:
            self._transition(ElectionState.CANVASS, now_ns, reason)
        return True

    def follow(self, now_ns: int, reason: str) -> None:
        """The core became (or stays) a follower: restart the election timer."""
        if self.state != ElectionState.FOLLOWER_READY:
            self._transition(ElectionState.FOLLOWER_READY, now_ns, reason)
        else:
            self.reset_timer(now_ns)

    def lead(self, now_ns: int, reason: str) -> None:
        self._transition(ElectionState.LEADER_READY, now_ns, reason)

    # ---------------------------------------------------------------- messages
    def on_canvass(self, from_id: int, msg, now_ns: int) -> None:
        """Pre-vote request: never changes our term; yes only if the sender could win."""
        core = self.core
        tag_ok = self._tag_matches(from_id, msg.ballot_tag)    # first: a mismatch is always told
        grant = (tag_ok and msg.proposed_term > core.term
                 and core.log_is_up_to_date(msg.last_log_term, msg.last_log_index)
                 and not core.in_leader_lease(now_ns)
                 and not core.withholds_vote(msg.last_log_index))
        reply_term = msg.proposed_term if grant else core.term
        core.counters_add("canvass_granted" if grant else "canvass_refused")
        core.send(from_id, Vote(reply_term, grant, True))

    def on_request_vote(self, from_id: int, msg, now_ns: int) -> None:
        """Ballot in our current term (the core already adopted a higher term)."""
        core = self.core
        tag_ok = self._tag_matches(from_id, msg.ballot_tag)    # first: a mismatch is always told
        can_vote = core.voted_for == from_id or (core.voted_for == _config.NO_VOTE and core.leader_id is None)
        grant = (tag_ok and can_vote
                 and core.log_is_up_to_date(msg.last_log_term, msg.last_log_index)
                 and not core.withholds_vote(msg.last_log_index))
        if grant:
            core.record_vote(from_id)
            self.reset_timer(now_ns)
        core.counters_add("vote_granted" if grant else "vote_refused")
        core.send(from_id, Vote(core.term, grant, False))

    def _tag_matches(self, from_id: int, tag: int) -> bool:
        """A candidate whose ballot tag differs from ours (both set) gets no vote: it hosts
        other services (CoreConfig.ballot_tag)."""
        own = self.core.config.ballot_tag
        if own == 0 or tag == 0 or tag == own:
            return True
        self.core.counters_add("votes_refused_ballot_tag")
        self.core.note_ballot_tag_mismatch(from_id, tag)
        return False

    def on_vote(self, from_id: int, msg, now_ns: int) -> None:
        core = self.core
        if msg.pre:
            if not msg.granted and msg.term > core.term:
                core.become_follower(msg.term, None, now_ns, "canvass refused with a higher term")
                return
            if self.state != ElectionState.CANVASS or (msg.granted and msg.term != core.term + 1):
                return   # late answer to an earlier canvass
            (self.granted if msg.granted else self.rejected).add(from_id)
            self._check_canvass_tally(now_ns)
            return
        if self.state != ElectionState.CANDIDATE_BALLOT or msg.term != core.term:
            return
        (self.granted if msg.granted else self.rejected).add(from_id)
        self._check_ballot_tally(now_ns)

    def _check_canvass_tally(self, now_ns: int) -> None:
        needed = quorum_size(len(self.core.config.voters))
        if len(self.granted) >= needed:
            self._transition(ElectionState.NOMINATE, now_ns, "canvass won")
        elif len(self.rejected) >= needed:
            self._transition(ElectionState.FOLLOWER_READY, now_ns, "canvass lost")

    def _check_ballot_tally(self, now_ns: int) -> None:
        needed = quorum_size(len(self.core.config.voters))
        if len(self.granted) >= needed:
            self.lead(now_ns, "ballot won")
        elif len(self.rejected) >= needed:
            self.core.become_follower(self.core.term, None, now_ns, "ballot lost")


_ENTRY_ACTIONS = {
    ElectionState.FOLLOWER_READY: Election._enter_follower_ready,
    ElectionState.CANVASS: Election._enter_canvass,
    ElectionState.NOMINATE: Election._enter_nominate,
    ElectionState.CANDIDATE_BALLOT: Election._enter_candidate_ballot,
    ElectionState.LEADER_READY: Election._enter_leader_ready,
}
_TICK_METHODS = {
    ElectionState.FOLLOWER_READY: Election._on_follower_ready,
    ElectionState.CANVASS: Election._on_canvass,
    ElectionState.NOMINATE: Election._on_nominate,
    ElectionState.CANDIDATE_BALLOT: Election._on_candidate_ballot,
    ElectionState.LEADER_READY: Election._on_leader_ready,
}
