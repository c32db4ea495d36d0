"""Found by bench/bigmsg_trial (the flood phase: one client offering 1 MiB messages as fast as
offer() accepts): ClusterClient.offer() ignored what its transport's send() said (fixed: the
client's window is bounded in bytes too, below the stream's send buffer, and offer() returns
BACK_PRESSURED past it). The client's window admitted up to window_messages (256) messages,
but the stream to the leader holds only send_buffer_bytes (8 MiB, ~7 messages of 1 MiB); every
message past that was refused by the stream (counted in the transport's back_pressured) and
silently not sent, while offer() returned its correlation id. It went out only when the client's resend timeout (500 ms)
fires, which sent the whole window again (again only ~7 fit) to the *next member*, a follower
that redirects. On a real cluster a 1 MiB flood fell from the first second's rate to ~8
messages/s with 7 redirects and 2 window resends a second (python bench/bigmsg_trial
--scenarios flood)."""
import time

from aeronpy.testing.inproc import inproc_cluster

MIB = 1 << 20
MESSAGES = 24                          # 24 MiB: three times the stream's 8 MiB send buffer


def _client_udp(client):
    return client._transport._udp      # the client's UdpTransport (its stream counters)


def test_offer_never_accepts_a_message_the_transport_refused():
    with inproc_cluster() as (nodes, pump, client):
        accepted = 0
        for i in range(MESSAGES):      # nodes not pumped: no STATUS frees the send buffer
            if client.offer(bytes([i % 251]) * MIB) > 0:
                accepted += 1
        refused_by_stream = _client_udp(client).counters.back_pressured
        assert accepted > 0
        assert refused_by_stream == 0, (
            f"offer() accepted {accepted} messages of 1 MiB; the stream refused "
            f"{refused_by_stream} of them and they were not sent")


def test_a_burst_past_the_send_buffer_is_delivered_without_a_stall_resend():
    with inproc_cluster() as (nodes, pump, client):
        sent, replies = [], {}
        before = dict(client.counters)     # a redirect at connect (a follower answered) is fine

        def on_reply(correlation_id, payload):
            replies.setdefault(correlation_id, bytes(payload[:1]))

        deadline = time.monotonic() + 30.0
        for i in range(MESSAGES):
            payload = bytes([i % 251]) * MIB
            for _ in range(100_000):   # back pressure is fine: retry once the cluster moved
                cid = client.offer(payload)
                if cid > 0 or time.monotonic() > deadline:
                    break
                pump()
                client.poll_egress(on_reply)
            assert cid > 0, f"message {i} still back-pressured after 30 s"
            sent.append(cid)
        for _ in range(200_000):       # bounded by count and by time
            if len(replies) == len(sent) or time.monotonic() > deadline:
                break
            pump()
            client.poll_egress(on_reply)
        assert len(replies) == len(sent), f"{len(replies)} of {len(sent)} answered"
        counters = {k: v - before.get(k, 0) for k, v in client.counters.items()}
        assert counters.get("window_resends", 0) == 0 and counters.get("redirects", 0) == 0, (
            f"the burst needed {counters.get('window_resends', 0)} window resends and "
            f"{counters.get('redirects', 0)} redirects to be delivered")
        assert counters.get("back_pressured", 0) > 0     # offer() said to wait, and it did
