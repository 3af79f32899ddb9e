"""Counters of this node, rendered in the Prometheus text format.

Every series carries a ``node`` label (NODE_ID): they count this process. The few
fleet-wide values (from the shared store) are named ``realtime_fleet_*`` and are the same
on every node: sum the per-node ones, take any one of the fleet ones.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from collections.abc import Callable

__all__ = ["Metrics", "RefusalLog"]

logger = logging.getLogger(__name__)

_HELP = {
    "realtime_connections_total": ("counter", "Socket.IO connections accepted"),
    "realtime_inbox_resyncs_total": (
        "counter", "Times this node resent its sockets' inboxes after messages between nodes "
        "were lost (a Redis outage)"),
    "realtime_recovered_connections_total": (
        "counter", "Connections that recovered their session (connection state recovery)"),
    "realtime_disconnections_total": ("counter", "Socket.IO disconnections, by reason"),
    "realtime_events_total": ("counter", "Events received from clients, by event"),
    "realtime_rejections_total": ("counter", "Refused handshakes and events, by reason"),
    "realtime_rate_limit_hits_total": ("counter", "Events dropped by the rate limit"),
    "realtime_stored_messages_total": ("counter", "Private messages stored for delivery"),
    "realtime_stored_messages_refused_total": (
        "counter", "Private messages refused because the target's inbox (or the sender's "
        "share of it) was full, by reason"),
    "realtime_duplicate_messages_total": (
        "counter", "Private messages retried with a known clientMessageId, not stored again"),
    "realtime_broadcast_deliveries_total": ("counter", "Packets delivered by broadcasts"),
    "realtime_store_errors_total": ("counter", "Operations that failed on the store"),
    "realtime_token_expirations_total": (
        "counter", "Sockets disconnected because their token expired"),
    "realtime_stats_errors_total": (
        "counter", "Per-minute statistics not recorded (best effort, never an answer)"),
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class RefusalLog:
    """Refused handshakes, logged in aggregate: at most one line per ``interval`` seconds.

    One polling POST can carry thousands of CONNECT packets with bad tokens; a line for
    each would let anyone flood the logs. Memory stays bounded: at most
    ``max_addresses`` distinct addresses are remembered per interval.
    """

    def __init__(self, interval: float = 10.0, max_addresses: int = 10_000) -> None:
        self.interval = interval
        self.max_addresses = max_addresses
        self._reasons: Counter[str] = Counter()
        self._addresses: set[str] = set()
        self._more_addresses = False
        self._timer: asyncio.TimerHandle | None = None

    def add(self, reason: str, address: str) -> None:
        self._reasons[reason] += 1
        if len(self._addresses) < self.max_addresses:
            self._addresses.add(address)
        elif address not in self._addresses:
            self._more_addresses = True
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.interval, self.flush)

    def flush(self) -> None:
        """Log what was counted since the last line (and stop the timer)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        total = sum(self._reasons.values())
        if total:
            reasons = ", ".join(f"{r}: {n}" for r, n in sorted(self._reasons.items()))
            more = "+" if self._more_addresses else ""
            logger.info("refused %d handshake%s (%s) from %d%s address%s", total,
                        "" if total == 1 else "s", reasons, len(self._addresses), more,
                        "" if len(self._addresses) == 1 and not more else "es")
        self._reasons.clear()
        self._addresses.clear()
        self._more_addresses = False


class Metrics:
    def __init__(self) -> None:
        self._counters: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
        self._gauges: dict[str, tuple[str, Callable[[], float]]] = {}
        self.refusals = RefusalLog()
        #: NODE_ID, added as the ``node`` label of every series once known.
        self.node = ""

    def refused_handshake(self, reason: str, address: str) -> None:
        """Count a refused CONNECT (by reason) for /metrics and the aggregate log line."""
        self.inc("realtime_rejections_total", reason=reason)
        self.refusals.add(reason, address)

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        series = self._counters[name]
        series[key] = series.get(key, 0) + amount

    def value(self, name: str, **labels: str) -> float:
        return self._counters.get(name, {}).get(tuple(sorted(labels.items())), 0)

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self._gauges[name] = (help_text, read)

    def render(self, fleet: dict[str, tuple[str, float]] | None = None) -> str:
        """The exposition text; ``fleet``: name -> (help, value) of fleet-wide gauges."""
        node = (("node", self.node),) if self.node else ()

        def series_line(name: str, labels: tuple[tuple[str, str], ...], value: float) -> str:
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            suffix = f"{{{label_text}}}" if label_text else ""
            return f"{name}{suffix} {value:g}"

        lines: list[str] = []
        for name, (kind, help_text) in _HELP.items():
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            series = self._counters.get(name) or {(): 0}
            for labels, value in sorted(series.items()):
                lines.append(series_line(name, (*node, *labels), value))
        for name, (help_text, read) in self._gauges.items():
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} gauge")
            lines.append(series_line(name, node, read()))
        for name, (help_text, value) in (fleet or {}).items():
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} gauge")
            lines.append(series_line(name, (), value))
        return "\n".join(lines) + "\n"
