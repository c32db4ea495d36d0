"""``aeronpy node`` closes in order on SIGTERM/SIGINT, and close() waits for the duty cycle, so
a service callback that never returns held the process for ever: only kill -9 ended it. A
second signal now ends it at once (status 128 + signal), as kill -9 would; the first alone
still waits (the control)."""
from __future__ import annotations

import os
import signal
import textwrap
import time

from aeronpy import ClusterClient

from .helpers import wait_until

SERVICE = textwrap.dedent("""
    import time

    import aeronpy

    class Stuck(aeronpy.ClusteredService):
        def on_session_message(self, session, timestamp_ns, message):
            if bytes(message) == b"hang":
                open("hanging", "w").close()    # in the node's working directory
                time.sleep(120)             # a callback that does not come back (bounded)
            elif session is not None:
                session.offer(b"ok")
""")


def test_a_second_signal_ends_a_node_whose_callback_hangs(make_cluster, tmp_path):
    (tmp_path / "stuck_service.py").write_text(SERVICE)
    pc = make_cluster(members=1, services=("stuck_service:Stuck",),
                      env={"PYTHONPATH": str(tmp_path)})
    pc.start()
    assert pc.leader(timeout_s=20) == 0, pc.tail_log(0)
    client = ClusterClient.connect(pc.ingress_endpoints, timeout_s=10)
    try:
        assert bytes(client.request(b"hi", timeout_s=10)) == b"ok"
        client.offer(b"hang")
        marker = os.path.join(pc.base_dir, "hanging")
        assert wait_until(lambda: client.poll_egress(lambda *a: None) >= 0
                          and os.path.exists(marker), 10), "the callback never ran"
    finally:
        client.close()
    proc = pc.procs[0]
    proc.send_signal(signal.SIGTERM)
    time.sleep(2.0)
    assert proc.poll() is None, "the first signal alone should wait for the callback"
    assert "send it again to exit at once" in pc.tail_log(0)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert wait_until(lambda: proc.poll() is not None, 10), "a second SIGTERM did not end it"
    assert proc.returncode == 128 + signal.SIGTERM
    assert time.monotonic() - started < 10
    assert "received SIGTERM again while closing: exiting at once" in pc.tail_log(0)
