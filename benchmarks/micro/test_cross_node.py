"""The receiving side of a cross-node broadcast: decode what another node published, then
fan it out to a room of 1,000 local sockets.

* ours: ``RedisAdapter._on_broadcast`` with the msgpack bytes a Node server with
  ``@socket.io/redis-adapter`` (or ours) publishes, to 1,000 real ``WebSocketTransport``
  objects over a counting fake transport (as ``broadcast-route-1000``); no Redis is
  involved: the subscriber's read is not timed, only what a node does per message.
* python-socketio: ``AsyncRedisManager``'s per-message work, ``pickle.loads`` of the
  published message then ``_handle_emit``, to 1,000 sockets whose delivery ends in their
  send queues (their framing is not counted, as in ``broadcast-route-1000``).
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
from typing import Any

import pytest

from socketio_core import Server
from socketio_core.redis_adapter import create_adapter

from .payloads import PAYLOAD, ROOM_SIZE
from .test_broadcast import ROUNDS, OurRoom, TheirRoom


class _IdlePubSub:
    """A subscriber connection that never delivers anything (messages are handed to the
    adapter directly by the benchmark)."""

    async def subscribe(self, *channels: Any) -> None:
        pass

    psubscribe = unsubscribe = punsubscribe = subscribe

    async def get_message(self, timeout: float = 0.0) -> None:
        await asyncio.sleep(timeout)

    async def aclose(self) -> None:
        pass


class _NoRedis:
    """Enough of a ``redis.asyncio`` client for the adapter to start without a server."""

    def pubsub(self, **kwargs: Any) -> _IdlePubSub:
        return _IdlePubSub()

    async def publish(self, channel: Any, message: Any) -> int:
        return 0


class OurReceivingRoom(OurRoom):
    def __init__(self, size: int) -> None:
        self.factory = create_adapter(_NoRedis())
        self._server_kwargs = {"adapter": self.factory}
        super().__init__(size)
        adapter = self.io.sockets.adapter
        # What another node publishes for io.to("room").emit("msg", PAYLOAD): notepack of
        # [its uid, packet, opts] on the namespace's channel.
        self.channel = f"{self.factory.key}#/#".encode()
        self.message = self.factory.encode([
            "othernode", {"type": 2, "data": ["msg", PAYLOAD], "nsp": "/"},
            {"rooms": ["room"], "except": [], "flags": {}},
        ])
        self.on_broadcast = adapter._on_broadcast

    def make_server(self) -> Server:
        return Server(**self._server_kwargs)

    def receive(self) -> None:
        self.on_broadcast(self.channel, self.message)
        if self.batcher is not None:
            self.batcher.flush()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.loop.run_until_complete(self.factory.aclose())
        super().close()


class TheirReceivingRoom(TheirRoom):
    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.message = pickle.dumps({
            "method": "emit", "event": "msg", "data": PAYLOAD, "namespace": "/",
            "room": "room", "skip_sid": None, "callback": None, "host_id": "othernode",
        })
        # What its listener does per message, after reading it from Redis.
        self.handle_emit = self.sio.manager._handle_emit

    def make_sio(self) -> Any:
        import socketio

        # write_only: no listener task, no connection to Redis (the client is made, not
        # used): the benchmark hands the message over as the listener would.
        manager = socketio.AsyncRedisManager("redis://127.0.0.1:1/0", write_only=True)
        return socketio.AsyncServer(async_mode="asgi", client_manager=manager)

    def receive(self) -> None:
        self.loop.run_until_complete(self.handle_emit(pickle.loads(self.message)))


@pytest.mark.per_op(ROOM_SIZE, "delivery")
@pytest.mark.benchmark(group="cross-node-receive-1000")
def test_cross_node_receive_1000(benchmark, impl):
    if impl == "ours":
        room: Any = OurReceivingRoom(ROOM_SIZE)
        try:
            before = room.writer.frames
            room.receive()
            assert room.writer.frames - before == ROOM_SIZE
            benchmark.pedantic(room.receive, rounds=ROUNDS, iterations=1, warmup_rounds=2)
        finally:
            room.close()
    else:
        room = TheirReceivingRoom(ROOM_SIZE)
        try:
            room.receive()
            assert room.drain() == ROOM_SIZE
            benchmark.pedantic(room.receive, setup=room.reset, rounds=ROUNDS, iterations=1,
                               warmup_rounds=2)
        finally:
            room.close()
    benchmark.extra_info["deliveries_per_round"] = ROOM_SIZE
