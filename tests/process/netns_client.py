"""A line-driven cluster client for tests that must run it elsewhere (another network namespace).

    python netns_client.py ENDPOINTS BIND_HOST     (BIND_HOST "auto": the client's own choice)
Reads one command per line on stdin and answers one JSON line on stdout:
    add AMOUNT TIMEOUT_S  -> {"ok": true, "total": N}  or  {"ok": false, "error": "..."}
    quit                  -> exits
It first prints {"ok": true, "connected": true, "local": "host:port"} once it has a session
(or the error); "local" is where the members send its replies.
The service is the CounterService (aeronpy.testing.services): the reply is the running total.
"""
from __future__ import annotations

import json
import struct
import sys

from aeronpy.client import ClusterClient, UdpClientTransport
from aeronpy.cluster.client_core import parse_endpoints

ADD = struct.Struct("<q")


def main() -> int:
    endpoints, bind_host = sys.argv[1], sys.argv[2]
    try:
        if bind_host == "auto":          # what a user's plain connect() does
            client = ClusterClient.connect(endpoints, timeout_s=15)
        else:
            transport = UdpClientTransport(parse_endpoints(endpoints), bind_host=bind_host)
            client = ClusterClient.connect(endpoints, timeout_s=15, transport=transport)
    except Exception as exc:
        print(json.dumps({"ok": False, "error": f"connect: {type(exc).__name__}: {exc}"}), flush=True)
        return 1
    print(json.dumps({"ok": True, "connected": True, "local": client._transport.local_endpoint}),
          flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        try:
            amount, timeout_s = int(words[1]), float(words[2])
            reply = client.request(ADD.pack(amount), timeout_s=timeout_s)
            answer = {"ok": True, "total": ADD.unpack(reply)[0]}
        except Exception as exc:  # reported to the test, which decides
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), flush=True)
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
