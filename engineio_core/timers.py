"""Session timers grouped into time slots: one event-loop timer per slot, not per session.

Every Engine.IO session keeps a timer armed for its next ping and, after each ping, one
for the pong it waits for. With ``loop.call_at`` each of those is an event-loop timer
(uvloop: a libuv timer handle allocated, inserted in the loop's heap, stopped and closed
again): measured with py-spy at 3,000 idle connections pinged every second, arming and
cancelling them was about a fifth of the server's heartbeat CPU. ``SlottedClock`` is a
session ``Clock`` (``time()`` and ``call_at()``) that rounds each deadline up to the next
multiple of ``resolution`` and keeps one loop timer per slot; a slot runs its callbacks
in the order they were scheduled. Cancelling only marks the entry; once cancelled entries
outnumber the live ones (and are more than ``COMPACT_AFTER``), every slot is swept, so a
client that makes its session reschedule timers in a loop (pongs nobody asked for) cannot
pile them up until their slots come.

A timer fires at most ``resolution`` seconds late (never early): 10 ms against a ping
interval of seconds. The session's state machine is unchanged (it is tested against an
exact fake clock).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

__all__ = ["SlotTimer", "SlottedClock"]

#: Cancelled entries kept before a sweep is considered (a sweep walks every slot).
COMPACT_AFTER = 1024


class SlotTimer:
    """What ``SlottedClock.call_at`` returns: ``cancel()`` before it fires, and it will not."""

    __slots__ = ("_clock", "callback")

    def __init__(self, callback: Callable[[], object] | None, clock: SlottedClock) -> None:
        self.callback = callback
        self._clock = clock

    def cancel(self) -> None:
        if self.callback is not None:
            self.callback = None
            self._clock._cancelled()


class SlottedClock:
    """A ``Clock`` on an asyncio loop whose ``call_at`` shares one loop timer per time slot."""

    __slots__ = ("_dead", "_entries", "_inv", "_loop", "_slots", "resolution")

    def __init__(self, loop: Any, resolution: float = 0.01) -> None:
        self._loop = loop
        self.resolution = resolution
        self._inv = 1.0 / resolution
        self._slots: dict[int, list[SlotTimer]] = {}
        self._entries = 0  # in all slots, cancelled ones included
        self._dead = 0  # cancelled and still in a slot

    def time(self) -> float:
        return self._loop.time()  # type: ignore[no-any-return]

    def call_at(self, when: float, callback: Callable[[], object], /) -> SlotTimer:
        timer = SlotTimer(callback, self)
        key = math.ceil(when * self._inv)
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = []
            self._loop.call_at(key * self.resolution, self._run, key)
        slot.append(timer)
        self._entries += 1
        return timer

    def _cancelled(self) -> None:
        self._dead += 1
        if self._dead > COMPACT_AFTER and self._dead * 2 > self._entries:
            slots = self._slots
            for key, slot in slots.items():
                slots[key] = [timer for timer in slot if timer.callback is not None]
            # Recounted: a timer cancelled while its slot runs was counted, not kept.
            self._entries = sum(len(slot) for slot in slots.values())
            self._dead = 0

    def _run(self, key: int) -> None:
        # Popped first: a callback that schedules into this slot's time gets a new slot
        # (and a loop timer that runs in the next iteration).
        slot = self._slots.pop(key, ())
        self._entries -= len(slot)
        self._dead = max(0, self._dead - sum(1 for timer in slot if timer.callback is None))
        for timer in slot:
            callback = timer.callback
            if callback is None:
                continue
            timer.callback = None
            try:
                callback()
            except Exception as exc:  # like a loop callback: report it, run the others
                self._loop.call_exception_handler(
                    {"message": "error in a session timer", "exception": exc}
                )

    def pending(self) -> int:
        """Timers scheduled and not run (cancelled ones included until their slot)."""
        return sum(len(slot) for slot in self._slots.values())
