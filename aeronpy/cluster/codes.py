"""Aeron-style result codes shared by the client and the service-side offers.

Same values as ``aeronpy.NOT_CONNECTED`` / ``BACK_PRESSURED`` / ``CLOSED`` (a test checks it);
kept here so the cluster layer never imports the top-level package while it initialises.
"""
NOT_CONNECTED = -1
BACK_PRESSURED = -2
CLOSED = -4
