"""Majority arithmetic, kept in one place so every rule counts the same way."""
from __future__ import annotations


def quorum_size(voter_count: int) -> int:
    """Smallest number of voters that forms a majority."""
    return voter_count // 2 + 1


def quorum_index(match_indexes: list) -> int:
    """Highest index held by a majority, given one match index per voter (leader included)."""
    ordered = sorted(match_indexes, reverse=True)
    return ordered[quorum_size(len(ordered)) - 1]


def has_quorum(count: int, voter_count: int) -> bool:
    return count >= quorum_size(voter_count)
