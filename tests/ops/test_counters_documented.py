"""Every counter slot a node publishes is named in docs/operations.md's counters table (the
operator's reference: a slot added without a line there is a counter nobody can read)."""
from __future__ import annotations

import os
import re

from aeronpy.cluster.counters import STANDARD_SLOTS
from aeronpy.cluster.node_admin import ADMIN_EXTRA_SLOTS
from aeronpy.cluster.node_counters import REFUSAL_EXTRA_SLOTS, TRANSPORT_EXTRA_SLOTS

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "operations.md")


def _documented_names(text: str) -> set:
    """Backquoted names in the first cell of the rows of the counters table (the one headed
    ``| counter | kind | meaning |``; other tables' names do not count)."""
    names = set()
    lines = text.splitlines()
    start = lines.index("| counter | kind | meaning |")
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break                # the table ends at its first non-row line
        first_cell = line.split("|")[1]
        names.update(re.findall(r"`([a-z0-9_/]+)`", first_cell))
    expanded = set()
    for name in names:           # `frames_in/out` names frames_in and frames_out
        if "/" in name:
            stem, _, alt = name.rpartition("_")
            left, right = alt.split("/", 1)
            expanded.update({f"{stem}_{left}", f"{stem}_{right}"})
        else:
            expanded.add(name)
    return expanded


def _published_names() -> list:
    slots = STANDARD_SLOTS + TRANSPORT_EXTRA_SLOTS + ADMIN_EXTRA_SLOTS + REFUSAL_EXTRA_SLOTS
    return [slot[0] for slot in slots]


def test_every_published_counter_is_in_the_operations_table():
    with open(DOC) as f:
        documented = _documented_names(f.read())
    missing = [name for name in _published_names() if name not in documented]
    assert missing == []


def test_control_a_counter_missing_from_the_table_is_found():
    with open(DOC) as f:
        text = f.read()
    cut = text.replace("| `stream_heartbeats_sent`, ", "| ")
    assert cut != text
    assert "stream_heartbeats_sent" not in _documented_names(cut)
