"""SlottedClock: the sessions' timers share one loop timer per slot, never fire early,
run in scheduling order within a slot, and a cancelled one never runs."""

from __future__ import annotations

import asyncio
import math

from engineio_core.timers import SlottedClock


def test_timers_fire_in_order_never_early_and_cancel() -> None:
    async def main() -> tuple[list[tuple[str, bool]], int]:
        loop = asyncio.get_running_loop()
        clock = SlottedClock(loop, resolution=0.01)
        fired: list[tuple[str, bool]] = []
        done = loop.create_future()
        # A slot boundary, so which timers share a slot does not depend on the loop's time
        # (from loop.time() itself, b and c fell in two slots about one run in five).
        t0 = math.ceil(clock.time() * 100) / 100

        def mark(name: str, when: float) -> None:
            fired.append((name, clock.time() >= when))
            if name == "last":
                done.set_result(None)

        for name, delay in (("b", 0.018), ("a", 0.005), ("c", 0.012), ("last", 0.04)):
            when = t0 + delay
            clock.call_at(when, lambda n=name, w=when: mark(n, w))
        cancelled = clock.call_at(t0 + 0.015, lambda: fired.append(("cancelled", True)))
        cancelled.cancel()
        await asyncio.wait_for(done, 5)
        return fired, clock.pending()

    fired, pending = asyncio.run(main())
    assert [name for name, _ in fired] == ["a", "b", "c", "last"]  # b, c share the t0+20 ms slot
    assert all(on_time for _, on_time in fired)
    assert pending == 0


def test_a_timer_scheduled_from_a_timer_and_an_error_does_not_stop_the_slot() -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        clock = SlottedClock(loop, resolution=0.01)
        fired: list[str] = []
        errors: list[object] = []
        loop.set_exception_handler(lambda _loop, context: errors.append(context["exception"]))
        done = loop.create_future()
        now = clock.time()

        def first() -> None:
            fired.append("first")
            # into the slot being run: must still run (in a new slot), not be lost
            clock.call_at(clock.time(), lambda: (fired.append("again"), done.set_result(None)))
            raise RuntimeError("boom")

        clock.call_at(now + 0.005, first)
        clock.call_at(now + 0.005, lambda: fired.append("second"))
        await asyncio.wait_for(done, 5)
        assert len(errors) == 1
        return fired

    assert asyncio.run(main()) == ["first", "second", "again"]


def test_cancelled_timers_do_not_pile_up() -> None:
    # A session rescheduling in a loop (pongs nobody asked for) cancels a timer each time;
    # the dead entries are swept once they outnumber the live ones.
    from engineio_core.timers import COMPACT_AFTER, SlottedClock

    loop = asyncio.new_event_loop()
    try:
        clock = SlottedClock(loop)
        fired: list[int] = []
        live = clock.call_at(loop.time() + 30, lambda: fired.append(0))
        for n in range(COMPACT_AFTER * 4):
            clock.call_at(loop.time() + 25 + n * 0.01, lambda: fired.append(1)).cancel()
        assert clock.pending() <= COMPACT_AFTER + 1
        live.cancel()
        live.cancel()  # a second cancel counts nothing
        assert fired == [] and clock._dead <= clock._entries
    finally:
        loop.close()
