"""A service failure names where it happened: a log index for callbacks that apply an entry;
for the callbacks of one member alone (role change, snapshot, terminate) it said 'at log index
0' or the index last applied, as if an entry had caused it (an operator review)."""
from aeronpy.cluster.container import ServiceError


def test_an_entry_callback_names_its_log_index():
    text = str(ServiceError(0, "on_session_message", ValueError("bad"), 42))
    assert text == "service 0 raised in on_session_message at log index 42: ValueError: bad"


def test_a_local_callback_says_no_entry_caused_it():
    text = str(ServiceError(1, "on_role_change", KeyError("x"), 0))
    assert "a callback of this member alone, after log index 0" in text
    assert "at log index" not in text
