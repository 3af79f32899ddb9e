"""SIGTERM rolling restart of both nodes under a steady stream of acked private messages.

Four clients go through HAProxy and reconnect by themselves: two senders pinned by cookie
(s1 on node 1, s2 on node 2, WebSocket) and two receivers (r1 polling-only with the sticky
cookie, r2 WebSocket). s1 streams to r2 and s2 to r1: one message at a time, each waiting
for its ack (3 s); a missing ack is retried with the same clientMessageId (the gateway
answers a retry with the first message's id). Meanwhile node 1 gets SIGTERM, is started
again and is back in HAProxy, then node 2. Counted by message id: every message acked, each
received exactly once, nothing else received.
"""

from __future__ import annotations

import time
from collections import Counter

from .fleet import running_fleet, unique, wait_until

COUNT = 150  # per stream: long enough to span both restarts
INTERVAL_MS = 60


def timeline(events: list[dict], ids: set[str]) -> str:
    """Connects, disconnects and the receptions of ``ids``, with times (for a failure)."""
    lines = []
    for e in events:
        first = e["args"][0] if e["args"] else None
        if e["event"] in ("$connect", "$disconnect", "$connect_error") or (
                e["event"] == "private-message" and isinstance(first, dict)
                and first.get("id") in ids):
            lines.append(f"  {e['at']} {e['event']} {first}")
    return "\n".join(lines)


def test_rolling_restart_loses_nothing_and_duplicates_nothing() -> None:
    with running_fleet() as fleet:
        puppet = fleet.puppet(lifetime_ms=120000)
        users = {name: unique(name) for name in ("s1", "s2", "r1", "r2")}
        for name, pin in (("s1", "node1"), ("s2", "node2")):
            puppet.connect_to(fleet.url, name, users[name], transports=["websocket"],
                              reconnection=True, extraHeaders={"Cookie": f"SERVERID={pin}"})
        puppet.connect_to(fleet.url, "r1", users["r1"], transports=["polling"],
                          withCredentials=True, reconnection=True)
        puppet.connect_to(fleet.url, "r2", users["r2"], transports=["websocket"],
                          reconnection=True)

        streams = {"s1": ("r2", unique("s1-to-r2")), "s2": ("r1", unique("s2-to-r1"))}
        for sender, (receiver, stream) in streams.items():
            puppet.start_stream(sender, stream, users[receiver], COUNT, intervalMs=INTERVAL_MS,
                                ackTimeoutMs=3000, retries=8)
        time.sleep(1.0)
        restart_began = time.time() * 1000
        exits = {}
        for index in (1, 2):
            exits[index] = fleet.restart_node(index, timeout=15)
            time.sleep(0.5)
        restart_ended = time.time() * 1000

        for index, (code, _) in exits.items():
            assert code == 0, f"node{index} did not exit cleanly on SIGTERM: {code}"

        results = {sender: puppet.stream_result(stream, timeout_ms=60000)
                   for sender, (_, stream) in streams.items()}
        for sender, rows in results.items():
            failed = [r for r in rows if not (r.get("ack") or {}).get("success")]
            assert not failed, f"{sender}: messages never acked with success: {failed[:5]}"
            assert len(rows) == COUNT
            # The stream really ran across both restarts (else COUNT is too small).
            assert rows[0]["at"] < restart_began and rows[-1]["at"] > restart_ended, \
                f"{sender}: the stream did not span the restarts"
            retried = [r["text"] for r in rows if r["attempts"] > 1]
            print(f"{sender}: {len(retried)} messages needed a retry: {retried}")

        for sender, (receiver, stream) in streams.items():
            acked_ids = [r["ack"]["id"] for r in results[sender]]
            assert len(set(acked_ids)) == COUNT, f"{sender}: a retry got a second message id"

            def received(receiver: str = receiver, stream: str = stream) -> list[dict]:
                return [m for m in puppet.payloads(receiver, "private-message")
                        if m["message"].startswith(stream + "-")]

            wait_until(lambda r=received: len({m["id"] for m in r()}) >= COUNT, 30,
                       f"{receiver} to receive {COUNT} distinct messages of {stream}")
            time.sleep(1.0)
            messages = received()
            by_id = Counter(m["id"] for m in messages)
            by_text = Counter(m["message"] for m in messages)
            lost = set(acked_ids) - set(by_id)
            duplicated = {i: n for i, n in by_id.items() if n > 1}
            assert not lost, f"{receiver}: {len(lost)} acked messages never arrived"
            assert not duplicated, (
                f"{receiver}: received twice (by id): {duplicated}; what {receiver} saw around "
                f"them:\n{timeline(puppet.events(receiver), set(duplicated))}")
            assert set(by_id) == set(acked_ids), f"{receiver}: unexpected ids"
            assert all(n == 1 for n in by_text.values()), f"{receiver}: a text twice: {by_text}"

        # Everyone was moved at least once and came back by itself.
        for name in users:
            connects = puppet.events(name, "$connect")
            assert len(connects) >= 2, f"{name} never reconnected: {connects}"
