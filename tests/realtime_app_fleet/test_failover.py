"""A node dies (kill -9): its client comes back through the balancer and misses nothing.

A is connected through HAProxy to node 1 (pinned by its SERVERID cookie, WebSocket), B to
node 2 directly. Node 1 is killed with SIGKILL; at once B sends A three private messages
and the service API sends A a notification. A's client reconnects by itself through the
balancer (node 1 refuses: HAProxy retries on node 2) and gets each of them exactly once (the
messages in the order B sent them), its session recovered; every message B got a success ack
for arrives.
"""

from __future__ import annotations

import time
from typing import Any

from .fleet import Fleet, FleetPuppet, running_fleet, sockets_per_node, unique, wait_until

SETTLE = 1.5


def socket_counts(fleet: Fleet, index: int) -> dict[str, int]:
    status, body = fleet.node(index).http("GET", "/stats")
    assert status == 200, body
    return sockets_per_node(body)


def send(puppet: FleetPuppet, name: str, target: str, text: str) -> dict[str, Any]:
    ack = puppet.emit(name, "private-message", {"targetUserId": target, "message": text},
                      ack=True, timeout_ms=8000)
    assert ack and ack.get("success") is True, f"{name} -> {target}: {ack}"
    return ack


def test_kill_9_node1_client_moves_to_node2_and_gets_everything_once_in_order() -> None:
    with running_fleet() as fleet:
        puppet = fleet.puppet()
        a, b = unique("alice"), unique("bob")
        puppet.connect_to(fleet.url, "a", a, transports=["websocket"], reconnection=True,
                          extraHeaders={"Cookie": "SERVERID=node1"})
        puppet.connect_to(fleet.node(2).url, "b", b, reconnection=True)
        assert wait_until(lambda: socket_counts(fleet, 2) == {"node1": 1, "node2": 1}, 10,
                          "A on node 1 and B on node 2")
        first = send(puppet, "b", a, "before the crash")
        puppet.wait("a", "private-message", timeout_ms=8000)
        time.sleep(0.5)  # A's session is in Redis (the streams adapter writes it after 50 ms)

        fleet.node(1).kill()
        acks = [send(puppet, "b", a, f"while A moves {i}") for i in (1, 2, 3)]
        status, body = fleet.node(2).http("POST", "/api/notifications", {
            "userIds": [a], "type": "info", "message": "while A moves: a notification"})
        assert status == 200, body

        connects = puppet.wait("a", "$connect", count=2, timeout_ms=15000)
        assert connects[-1][0]["recovered"] is True, f"A's session was not recovered: {connects}"
        puppet.wait("a", "private-message", count=4, timeout_ms=10000)
        puppet.wait("a", "notification", count=1, timeout_ms=10000)
        time.sleep(SETTLE)  # anything twice would be here by now

        events = [e for e in puppet.events("a")
                  if e["event"] in ("private-message", "notification")]
        messages = [e["args"][0]["id"] for e in events if e["event"] == "private-message"]
        notes = [e["args"][0]["message"] for e in events if e["event"] == "notification"]
        expected = [first["id"]] + [ack["id"] for ack in acks]
        assert messages == expected, (
            f"A must get each private message exactly once, in the order B sent them;\n"
            f"got      {messages}\nexpected {expected}")
        assert notes == ["while A moves: a notification"], notes
        # Across kinds there is no order: the notification is replayed by connection state
        # recovery during the handshake, the private messages come from the inbox after it.
        assert socket_counts(fleet, 2) == {"node2": 2}, "A is on node 2 now"
        # The stored copies were acked on node 2: a new device of A gets nothing again.
        puppet.connect_to(fleet.node(2).url, "a2", a)
        time.sleep(SETTLE)
        assert puppet.payloads("a2", "private-message") == []
