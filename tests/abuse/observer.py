"""Well-behaved clients and a health probe, run in their own process during an attack.

``python -m tests.abuse.observer <port> <prefix> <clients>`` (JWT secret in env
``ABUSE_JWT_SECRET``) connects ``clients`` python-socketio clients (users ``<prefix>-0``...;
the last one on the polling transport, the others on WebSocket) that send each other
private messages with acks in a loop, and polls ``GET /healthz`` every 20 ms. It prints
``READY`` once everyone is connected, runs until a line ``stop`` arrives on stdin (or its
own time limit), then waits (bounded) for what is in flight and prints one JSON line of
measurements.

A separate process, so that the attack's own CPU use in the test process does not show up
as the server's latency; what it measures is the server's (and the machine's) stall.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from typing import Any

import jwt
import socketio

HOST = "127.0.0.1"
ORIGIN = "http://localhost:5188"  # the gateway's FRONTEND_URL in the abuse suite
SEND_INTERVAL = 0.05
HEALTH_INTERVAL = 0.02
ACK_TIMEOUT = 20.0
DELIVERY_GRACE = 15.0
LIFETIME = 600.0
BROADCAST_TYPE = "abuse-broadcast"


def token(user: str) -> str:
    secret = os.environ["ABUSE_JWT_SECRET"]
    return jwt.encode({"sub": user, "username": user.upper(), "exp": int(time.time()) + 1800},
                      secret, algorithm="HS256")


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)


class Normal:
    def __init__(self, user: str, transport: str) -> None:
        self.user = user
        self.transport = transport
        self.sio = socketio.AsyncClient(reconnection=False, request_timeout=30)
        self.received: dict[str, float] = {}  # message text -> monotonic arrival
        self.broadcasts = 0
        self.broadcast_latencies: list[float] = []
        self.disconnects: list[str] = []
        self.sio.on("private-message", self._private)
        self.sio.on("notification", self._notification)
        self.sio.on("disconnect", self._disconnected)

    async def _private(self, message: dict[str, Any]) -> bool:
        self.received[message.get("message", "")] = time.monotonic()
        return True

    async def _notification(self, payload: dict[str, Any], *offset: str) -> None:
        # With connection state recovery (the gateway's default) a broadcast carries its
        # offset as an extra argument, as with Node's server.
        if payload.get("type") == BROADCAST_TYPE:
            self.broadcasts += 1
            sent = (payload.get("data") or {}).get("t")
            if isinstance(sent, float):
                self.broadcast_latencies.append(max(0.0, time.time() - sent))

    async def _disconnected(self, reason: Any = None) -> None:
        self.disconnects.append(str(reason))

    async def connect(self, port: int) -> None:
        await self.sio.connect(f"http://{HOST}:{port}", auth={"token": token(self.user)},
                               headers={"Origin": ORIGIN},
                               transports=[self.transport], wait_timeout=20)


class Observer:
    def __init__(self, port: int, prefix: str, count: int) -> None:
        self.port = port
        self.clients = [Normal(f"{prefix}-{i}", "polling" if i == count - 1 and count > 1
                               else "websocket") for i in range(count)]
        self.stop = asyncio.Event()
        self.sent = 0
        self.acked: list[tuple[int, str, float]] = []  # (target index, text, sent at)
        self.ack_latencies: list[float] = []
        self.ack_errors: list[Any] = []
        self.ack_timeouts = 0
        self.health_latencies: list[float] = []
        self.health_failures: list[str] = []

    async def sender(self, index: int) -> None:
        client = self.clients[index]
        target_index = (index + 1) % len(self.clients)
        target = self.clients[target_index].user
        seq = 0
        while not self.stop.is_set():
            seq += 1
            text = f"hello {client.user} {seq}"
            started = time.monotonic()
            self.sent += 1
            try:
                answer = await client.sio.call(
                    "private-message", {"targetUserId": target, "message": text},
                    timeout=ACK_TIMEOUT)
            except socketio.exceptions.TimeoutError:
                self.ack_timeouts += 1
                continue
            except socketio.exceptions.SocketIOError as exc:
                self.ack_errors.append(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.5)
                continue
            self.ack_latencies.append(time.monotonic() - started)
            if isinstance(answer, dict) and answer.get("success") is True:
                self.acked.append((target_index, text, started))
            elif len(self.ack_errors) < 1000:
                self.ack_errors.append(answer)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), SEND_INTERVAL)

    async def health(self) -> None:
        request = f"GET /healthz HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
        while not self.stop.is_set():
            started = time.monotonic()
            writer = None
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(HOST, self.port), 30)
                writer.write(request)
                data = await asyncio.wait_for(reader.read(), 30)
                if not data.startswith(b"HTTP/1.1 200"):
                    self.health_failures.append(data[:80].decode(errors="replace"))
                else:
                    self.health_latencies.append(time.monotonic() - started)
            except (OSError, TimeoutError) as exc:
                self.health_failures.append(f"{type(exc).__name__}: {exc}")
            finally:
                if writer is not None:
                    writer.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), HEALTH_INTERVAL)

    async def wait_stop(self) -> int:
        """Until ``stop [broadcasts expected]`` on stdin; returns the broadcasts expected."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        expected = 0
        with contextlib.suppress(TimeoutError):
            while True:
                line = await asyncio.wait_for(reader.readline(), LIFETIME)
                words = line.split()
                if not line or (words and words[0] == b"stop"):
                    expected = int(words[1]) if len(words) > 1 else 0
                    break
        self.stop.set()
        return expected

    def missing(self) -> list[str]:
        return [text for target, text, _ in self.acked
                if text not in self.clients[target].received]

    async def run(self) -> dict[str, Any]:
        await asyncio.gather(*(c.connect(self.port) for c in self.clients))
        print("READY", flush=True)
        started = time.monotonic()
        tasks = [asyncio.ensure_future(self.sender(i)) for i in range(len(self.clients))]
        tasks.append(asyncio.ensure_future(self.health()))
        expected_broadcasts = await self.wait_stop()
        duration = time.monotonic() - started
        await asyncio.wait(tasks, timeout=ACK_TIMEOUT + 5)
        # Acked messages and broadcasts still travelling to their target: bounded wait.
        deadline = time.monotonic() + DELIVERY_GRACE
        while (self.missing() or any(c.broadcasts < expected_broadcasts for c in self.clients
                                     if c.transport == "websocket")
               ) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        delivery = [c.received[text] - sent for target, text, sent in self.acked
                    for c in (self.clients[target],) if text in c.received]
        missing = self.missing()
        disconnects = {c.user: c.disconnects for c in self.clients if c.disconnects}
        for client in self.clients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.sio.disconnect(), 5)
        latencies = self.ack_latencies + delivery
        broadcast_latencies = [x for c in self.clients for x in c.broadcast_latencies]
        # Broadcasts go to the WebSocket clients only (see the room broadcast test).
        short = {c.user: c.broadcasts for c in self.clients
                 if c.transport == "websocket" and c.broadcasts < expected_broadcasts}
        served = (not missing and not self.ack_errors and not self.ack_timeouts
                  and not disconnects and not self.health_failures and bool(self.acked)
                  and not short)
        return {
            "served": served,
            "duration_s": round(duration, 2),
            "sent": self.sent,
            "acked": len(self.acked),
            "ack_errors": [str(e)[:200] for e in self.ack_errors[:5]],
            "ack_error_count": len(self.ack_errors),
            "ack_timeouts": self.ack_timeouts,
            "missing": len(missing),
            "disconnects": disconnects,
            "ack_worst_ms": pct(self.ack_latencies, 1.0),
            "ack_p99_ms": pct(self.ack_latencies, 0.99),
            "delivery_worst_ms": pct(delivery, 1.0),
            "delivery_p99_ms": pct(delivery, 0.99),
            "clients_worst_ms": pct(latencies, 1.0),
            "clients_p99_ms": pct(latencies, 0.99),
            "broadcasts_expected": expected_broadcasts,
            "broadcasts_short": short,
            "broadcast_worst_ms": pct(broadcast_latencies, 1.0),
            "broadcast_p99_ms": pct(broadcast_latencies, 0.99),
            "healthz_count": len(self.health_latencies),
            "healthz_failures": self.health_failures[:5],
            "healthz_failure_count": len(self.health_failures),
            "healthz_worst_ms": pct(self.health_latencies, 1.0),
            "healthz_p99_ms": pct(self.health_latencies, 0.99),
        }


async def main() -> None:
    port, prefix, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    result = await Observer(port, prefix, count).run()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
