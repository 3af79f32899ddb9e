"""Broadcast operators: ``to(room).except_(other).volatile.emit(...)``, immutable and chainable."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .adapter import BroadcastOptions
from .errors import AckTimeoutError
from .packet import RESERVED_EVENTS, Packet, PacketType

if TYPE_CHECKING:
    from .adapter import InMemoryAdapter
    from .socket import Socket

__all__ = ["BroadcastOperator", "room_set"]

Rooms = str | Iterable[str]


def room_set(rooms: tuple[Rooms, ...]) -> frozenset[str]:
    """``to("a")``, ``to("a", "b")`` and ``to(["a", "b"])`` all mean the same."""
    result: set[str] = set()
    for item in rooms:
        if isinstance(item, str):
            result.add(item)
        else:
            result.update(item)
    return frozenset(result)


def check_event_name(event: str) -> None:
    if not isinstance(event, str):
        raise TypeError("event name must be a string")
    if event in RESERVED_EVENTS:
        raise ValueError(f'"{event}" is a reserved event name')


class BroadcastOperator:
    """Targets a set of sockets of one namespace; each method returns a new operator."""

    __slots__ = ("_adapter", "_opts")

    def __init__(self, adapter: InMemoryAdapter, opts: BroadcastOptions | None = None) -> None:
        self._adapter = adapter
        self._opts = opts or BroadcastOptions()

    def _with(self, **changes: Any) -> BroadcastOperator:
        return BroadcastOperator(self._adapter, replace(self._opts, **changes))

    def _with_flags(self, **changes: Any) -> BroadcastOperator:
        return self._with(flags=replace(self._opts.flags, **changes))

    def to(self, *rooms: Rooms) -> BroadcastOperator:
        """Only sockets in these rooms (in any of them, each socket once)."""
        return self._with(rooms=self._opts.rooms | room_set(rooms))

    in_ = to

    def except_(self, *rooms: Rooms) -> BroadcastOperator:
        """Not the sockets in these rooms."""
        return self._with(except_rooms=self._opts.except_rooms | room_set(rooms))

    @property
    def volatile(self) -> BroadcastOperator:
        """Drop the packet for sockets that cannot take it right now."""
        return self._with_flags(volatile=True)

    @property
    def local(self) -> BroadcastOperator:
        """Only sockets of this node (meaningful with a cluster adapter)."""
        return self._with_flags(local=True)

    def compress(self, compress: bool) -> BroadcastOperator:
        """Accepted for API parity; per-message compression is not applied."""
        return self._with_flags(compress=compress)

    def timeout(self, seconds: float) -> BroadcastOperator:
        """Wait at most this long for the acks of ``emit_with_ack``."""
        return self._with_flags(timeout=seconds)

    def emit(self, event: str, *args: Any) -> None:
        """Send an event to every targeted socket. Encoded once whatever their number."""
        check_event_name(event)
        packet = Packet(PacketType.EVENT, [event, *args], self._adapter.nsp.name)
        self._adapter.broadcast(packet, self._opts)

    async def emit_with_ack(self, event: str, *args: Any) -> list[Any]:
        """Send an event and return the list of acks (the first argument of each).

        With ``timeout(...)``, raises AckTimeoutError whose ``responses`` holds the acks
        that arrived in time.
        """
        check_event_name(event)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[Any]] = loop.create_future()
        responses: list[Any] = []
        expected: list[int] = []
        servers = await self._adapter.server_count()
        reported = 0

        def check() -> None:
            if not done.done() and reported == servers and len(responses) >= sum(expected):
                done.set_result(responses)

        def on_count(count: int) -> None:
            nonlocal reported
            expected.append(count)
            reported += 1
            check()

        def on_ack(*ack_args: Any) -> None:
            responses.append(ack_args[0] if ack_args else None)
            check()

        packet = Packet(PacketType.EVENT, [event, *args], self._adapter.nsp.name)
        self._adapter.broadcast_with_ack(packet, self._opts, on_count, on_ack)
        timeout = self._opts.flags.timeout
        if timeout is None and servers > 1:
            # Other nodes may be gone without a word: a cluster adapter bounds the wait.
            timeout = getattr(self._adapter, "requests_timeout", None)
        if timeout is None:
            return await done
        try:
            return await asyncio.wait_for(asyncio.shield(done), timeout)
        except TimeoutError:
            raise AckTimeoutError(responses=list(responses)) from None

    # ------------------------------------------------------------------ utilities

    async def fetch_sockets(self) -> list[Socket]:
        return await self._adapter.fetch_sockets(self._opts)

    def sockets_join(self, *rooms: Rooms) -> None:
        self._adapter.add_sockets(self._opts, room_set(rooms))

    def sockets_leave(self, *rooms: Rooms) -> None:
        self._adapter.del_sockets(self._opts, room_set(rooms))

    def disconnect_sockets(self, close: bool = False) -> None:
        self._adapter.disconnect_sockets(self._opts, close)

    @property
    def adapter(self) -> InMemoryAdapter:
        """The namespace's adapter (room lifecycle events: ``adapter.on("join-room", fn)``)."""
        return self._adapter
