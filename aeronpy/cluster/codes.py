"""Aeron-style result codes shared by the client and the service-side offers.

Same values as ``aeronpy.NOT_CONNECTED`` / ``BACK_PRESSURED`` / ``CLOSED`` (a test checks it);
kept here so the cluster layer never imports the top-level package while it initialises.
"""
NOT_CONNECTED = -1
BACK_PRESSURED = -2
CLOSED = -4

# The cluster id in every frame of a member's client ingress stream, which clients speak: no
# MAC either there; clients are vetted by the cluster's Authenticator, not by frame ids.
INGRESS_CLUSTER_ID = 0
