"""The gateway's metrics, exposed with ``prometheus_client``.

Every series of the gateway carries a ``node`` label (NODE_ID): it counts this process.
The few fleet-wide values (from the shared store) are named ``realtime_fleet_*`` and are
the same on every node: sum the per-node ones, take any one of the fleet ones.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

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
    """The gateway's metrics on a ``prometheus_client`` registry of its own.

    Counters are plain dict increments on the hot path (no lock, no label lookup), handed
    to the registry by a collector at scrape time; the histograms (event handling time,
    broadcast fan-out) are ``prometheus_client`` histograms; the process collector adds
    RSS, CPU and open file descriptors (``process_*``).
    """

    def __init__(self) -> None:
        self._counters: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
        self._gauges: dict[str, tuple[str, Callable[[], float]]] = {}
        self._labelled: dict[str, tuple[str, tuple[str, ...], LabelledRead]] = {}
        self._fleet: dict[str, tuple[str, float]] = {}
        self.refusals = RefusalLog()
        #: NODE_ID, added as the ``node`` label of every series once known.
        self.node = ""
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        ProcessCollector(registry=self.registry)
        self._event_seconds = Histogram(
            "realtime_event_handling_seconds",
            "Time from an event's arrival at its handler to its answer, by event",
            ["node", "event"], registry=self.registry, buckets=EVENT_BUCKETS)
        self._fanout = Histogram(
            "realtime_broadcast_fanout_sockets",
            "Sockets of this node one broadcast or private message was delivered to",
            ["node"], registry=self.registry, buckets=FANOUT_BUCKETS)

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

    def observe_event(self, event: str, seconds: float) -> None:
        self._event_seconds.labels(self.node, event).observe(seconds)

    def observe_fanout(self, sockets: int) -> None:
        self._fanout.labels(self.node).observe(sockets)

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self._gauges[name] = (help_text, read)

    def labelled_gauge(self, name: str, help_text: str, labels: tuple[str, ...],
                       read: LabelledRead) -> None:
        """A gauge with one series per label values: ``read()`` gives (values, value)."""
        self._labelled[name] = (help_text, labels, read)

    def render(self, fleet: dict[str, tuple[str, float]] | None = None) -> str:
        """The exposition text; ``fleet``: name -> (help, value) of fleet-wide gauges."""
        self._fleet = fleet or {}
        try:
            return generate_latest(self.registry).decode()
        finally:
            self._fleet = {}


LabelledRead = Callable[[], Iterable[tuple[tuple[str, ...], float]]]
#: Event handling: from a cached token bucket (microseconds) to a Redis stall (seconds).
EVENT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                 5.0)
FANOUT_BUCKETS = (0, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000)


class _Collector(Collector):
    """Hands the counters and gauges of ``Metrics`` to the registry at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        metrics = self.metrics
        node = (("node", metrics.node),) if metrics.node else ()
        for name, (_kind, help_text) in _HELP.items():
            series = metrics._counters.get(name) or {(): 0}
            label_names = [k for k, _ in node] + sorted({k for key in series for k, _ in key})
            family = CounterMetricFamily(name, help_text, labels=label_names)
            for labels, value in sorted(series.items()):
                given = dict((*node, *labels))
                family.add_metric([given.get(k, "") for k in label_names], value)
            yield family
        for name, (help_text, read) in metrics._gauges.items():
            gauge = GaugeMetricFamily(name, help_text, labels=[k for k, _ in node])
            gauge.add_metric([v for _, v in node], read())
            yield gauge
        for name, (help_text, keys, read_labelled) in metrics._labelled.items():
            gauge = GaugeMetricFamily(name, help_text, labels=[*(k for k, _ in node), *keys])
            for values, value in read_labelled():
                gauge.add_metric([*(v for _, v in node), *values], value)
            yield gauge
        for name, (help_text, value) in metrics._fleet.items():
            yield GaugeMetricFamily(name, help_text, value=value)
