"""The load scenarios: what the generator is asked to do, and which metrics are reported.

Each scenario expands into cases (``fanout`` -> ``fanout-1000``, ``fanout-5000``); each case
is run against each server, ``reps`` times. A metric is read from the generator's result
by a dotted path; ``better`` says which direction wins.
"""

from __future__ import annotations

import math
import resource
from dataclasses import dataclass, field
from typing import Any

SCENARIOS = ("fanout", "echo", "connect", "memory", "fanout2", "gateway-pm", "scale")
#: What ``run`` does without scenario names: fanout2 and gateway-pm need Redis, and scale
#: takes minutes and every file descriptor, so they are asked for by name.
DEFAULT_SCENARIOS = ("fanout", "echo", "connect", "memory")
#: File descriptors a server process needs besides its connections (listener, epoll,
#: stdio, imports, the warm-up connections' leftovers).
SCALE_FD_MARGIN = 100
#: Client ports per loopback source address (the generator picks them from 10,000-30,000).
SCALE_PORTS_PER_ADDRESS = 5000


def scale_limit() -> int:
    """Connections one process can hold here: the hard ``RLIMIT_NOFILE`` (the harness
    raises the soft one to it), less a margin. The generator is one process as well."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        hard = 1_000_000
    return max(10, min(hard, 1_000_000) - SCALE_FD_MARGIN)


@dataclass(frozen=True)
class Metric:
    key: str  # dotted path in the generator's result
    label: str
    unit: str
    better: str  # "higher" or "lower"
    scale: float = 1.0  # multiply the raw value by this for display
    primary: bool = False


@dataclass
class Case:
    scenario: str
    name: str
    title: str
    generator: dict[str, Any]
    metrics: list[Metric]
    #: Upper bound of one run's generator time (seconds), for its watchdog.
    deadline: float
    #: The generator needs the npm socket.io-client.
    needs_client_lib: bool = False
    #: Server processes per run: 2 for fanout2 (two nodes of one kind sharing one Redis).
    nodes: int = 1
    #: Extra arguments for the server apps (``--ping-interval`` for scale).
    server_args: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: "bench": the servers' benchmark apps (apps/); "gateway": ``python -m realtime_app``,
    #: our server only, with ``env`` on top of the harness's gateway settings.
    app: str = "bench"
    env: dict[str, str] = field(default_factory=dict)
    #: The case of the same scenario the report compares this one with (ratio this / it).
    baseline: str | None = None

    @property
    def servers(self) -> tuple[str, ...] | None:
        """The only servers this case runs against (None: every server of the run)."""
        return ("ours",) if self.app == "gateway" else None


def _cpu_metrics(per: str) -> list[Metric]:
    return [
        Metric("server_cpu_us_per_op", f"server CPU per {per}", "us", "lower"),
        Metric("server_cpu_pct", "server CPU", "% of a core", "lower"),
        Metric("server_cpu_system_pct", "of which kernel", "% of a core", "lower"),
        Metric("generator_cpu_pct", "generator CPU", "% of a core", "lower"),
    ]


#: gateway-pm cases: (suffix, nodes, environment of the gateway processes, what it shows).
GATEWAY_VARIANTS: dict[str, tuple[int, dict[str, str], str]] = {
    "1node": (1, {}, "one node (Redis store, SOCKET_ADAPTER=redis-streams, recovery on)"),
    "2nodes": (2, {}, "two nodes, sender on the first, receiver on the second "
               "(redis-streams, recovery on)"),
    "1node-norecovery": (1, {"CONNECTION_RECOVERY_MS": "0"},
                         "one node, CONNECTION_RECOVERY_MS=0"),
    "2nodes-norecovery": (2, {"CONNECTION_RECOVERY_MS": "0"},
                          "two nodes, CONNECTION_RECOVERY_MS=0"),
    "2nodes-pubsub": (2, {"SOCKET_ADAPTER": "redis"},
                      "two nodes, SOCKET_ADAPTER=redis (pub/sub; recovery on, which it "
                      "cannot carry across nodes)"),
}
GATEWAY_CASES = ("1node", "2nodes", "2nodes-norecovery", "2nodes-pubsub")


@dataclass(frozen=True)
class Profile:
    """Sizes and times of one kind of run."""

    fanout_sizes: tuple[int, ...] = (1000, 5000)
    fanout_window: int = 4
    fanout_warmup: float = 2.0
    fanout_duration: float = 5.0
    fanout_latency_duration: float = 2.0
    echo_clients: int = 100
    echo_warmup: float = 2.0
    echo_duration: float = 10.0
    connect_total: int = 2000
    connect_concurrency: int = 100
    memory_connections: int = 10_000
    memory_concurrency: int = 500
    memory_settle: float = 3.0
    gateway_pairs: int = 20
    gateway_window: int = 2
    gateway_warmup: float = 3.0
    gateway_duration: float = 10.0
    gateway_latency_duration: float = 2.0
    gateway_cases: tuple[str, ...] = GATEWAY_CASES
    #: None: as many as the file-descriptor limit allows (``scale_limit``).
    scale_connections: int | None = None
    scale_concurrency: int = 500
    scale_broadcasts: int = 3
    #: pingInterval of both servers in the scale case; the idle window is two of them.
    scale_ping_interval: float = 5.0
    scale_settle: float = 3.0
    reps: int = 3


PROFILES = {
    "full": Profile(),
    "quick": Profile(
        fanout_sizes=(1000,),
        fanout_warmup=1.0,
        fanout_duration=3.0,
        fanout_latency_duration=1.0,
        echo_warmup=1.0,
        echo_duration=3.0,
        connect_total=1000,
        memory_connections=2000,
        memory_settle=1.0,
        gateway_warmup=1.0,
        gateway_duration=3.0,
        gateway_latency_duration=1.0,
        scale_connections=2000,
        scale_broadcasts=2,
        scale_ping_interval=2.0,
        scale_settle=1.0,
        reps=1,
    ),
    "smoke": Profile(
        fanout_sizes=(10,),
        fanout_warmup=0.3,
        fanout_duration=1.0,
        fanout_latency_duration=0.5,
        echo_clients=5,
        echo_warmup=0.3,
        echo_duration=1.0,
        connect_total=50,
        connect_concurrency=10,
        memory_connections=100,
        memory_concurrency=50,
        memory_settle=0.3,
        gateway_pairs=2,
        gateway_window=2,
        gateway_warmup=0.3,
        gateway_duration=1.0,
        gateway_latency_duration=0.3,
        gateway_cases=("1node", "2nodes"),
        scale_connections=50,
        scale_concurrency=50,
        scale_broadcasts=1,
        scale_ping_interval=0.5,
        scale_settle=0.3,
        reps=1,
    ),
}


def build_cases(scenarios: list[str], profile: Profile) -> list[Case]:
    cases: list[Case] = []
    for scenario in scenarios:
        if scenario == "fanout":
            for size in profile.fanout_sizes:
                cases.append(
                    Case(
                        scenario="fanout",
                        name=f"fanout-{size}",
                        title=f"fan-out: {size:,} clients in one room, ~100-byte broadcasts",
                        generator={
                            "scenario": "fanout",
                            "clients": size,
                            "window": profile.fanout_window,
                            "warmup": profile.fanout_warmup,
                            "duration": profile.fanout_duration,
                            "latency_duration": profile.fanout_latency_duration,
                            "payload_bytes": 100,
                            "concurrency": 200,
                            "connect_timeout": 120,
                        },
                        metrics=[
                            Metric("deliveries_per_s", "deliveries/s", "1/s", "higher",
                                   primary=True),
                            Metric("latency_ms.p50", "latency p50", "ms", "lower"),
                            Metric("latency_ms.p99", "latency p99", "ms", "lower"),
                            Metric("loaded_latency_ms.p50", "latency p50 under load", "ms",
                                   "lower"),
                            *_cpu_metrics("delivery"),
                        ],
                        deadline=profile.fanout_warmup + profile.fanout_duration
                        + profile.fanout_latency_duration + 180,
                        notes=[
                            f"throughput with {profile.fanout_window} broadcasts in flight "
                            "(closed loop; the sender is in the room and receives too); "
                            "latency p50/p99 with one broadcast in flight "
                            f"({profile.fanout_latency_duration:g} s): emit-to-receipt over all "
                            "recipients; 'under load' is the throughput phase's"
                        ],
                    )
                )
        elif scenario == "fanout2":
            for size in profile.fanout_sizes:
                cases.append(
                    Case(
                        scenario="fanout2",
                        name=f"fanout2-{size}",
                        title=f"two-node fan-out: {size:,} clients split over 2 server processes "
                        "sharing one Redis, ~100-byte broadcasts",
                        generator={
                            "scenario": "fanout",
                            "clients": size,
                            "window": profile.fanout_window,
                            "warmup": profile.fanout_warmup,
                            "duration": profile.fanout_duration,
                            "latency_duration": profile.fanout_latency_duration,
                            "payload_bytes": 100,
                            "concurrency": 200,
                            "connect_timeout": 120,
                        },
                        metrics=[
                            Metric("deliveries_per_s", "deliveries/s (both nodes)", "1/s",
                                   "higher", primary=True),
                            Metric("latency_ms.p50", "latency p50", "ms", "lower"),
                            Metric("latency_ms.p99", "latency p99", "ms", "lower"),
                            Metric("remote_latency_ms.p50", "latency p50, other node", "ms",
                                   "lower"),
                            Metric("remote_latency_ms.p99", "latency p99, other node", "ms",
                                   "lower"),
                            Metric("loaded_latency_ms.p50", "latency p50 under load", "ms",
                                   "lower"),
                            Metric("server_cpu_us_per_op",
                                   "server CPU per delivery (both nodes)", "us", "lower"),
                            Metric("server_cpu_pct", "server CPU (both nodes)", "% of a core",
                                   "lower"),
                            Metric("server_cpu_system_pct", "of which kernel", "% of a core",
                                   "lower"),
                            Metric("generator_cpu_pct", "generator CPU", "% of a core",
                                   "lower"),
                        ],
                        deadline=profile.fanout_warmup + profile.fanout_duration
                        + profile.fanout_latency_duration + 180,
                        nodes=2,
                        notes=[
                            "two server processes of one kind, both pinned to the server core, "
                            "sharing one Redis through their Redis adapter (ours: "
                            "socketio_core.redis_adapter; Node: @socket.io/redis-adapter 8.3.0; "
                            "python-socketio: AsyncRedisManager) with a channel prefix unique "
                            "to the run; clients alternate between the nodes, the sender is on "
                            "the first, so every broadcast reaches half the room through Redis",
                            "as fanout otherwise; server CPU is the sum over both processes "
                            "(Redis's own CPU is not counted); 'other node' is the latency "
                            "of the clients on the second node (one broadcast in flight)",
                        ],
                    )
                )
        elif scenario == "gateway-pm":
            cases += gateway_cases(profile)
        elif scenario == "echo":
            cases.append(
                Case(
                    scenario="echo",
                    name="echo",
                    title=f"echo: {profile.echo_clients} clients, closed-loop emit with ack",
                    generator={
                        "scenario": "echo",
                        "clients": profile.echo_clients,
                        "warmup": profile.echo_warmup,
                        "duration": profile.echo_duration,
                        "payload_bytes": 100,
                    },
                    metrics=[
                        Metric("acks_per_s", "acks/s", "1/s", "higher", primary=True),
                        Metric("rtt_ms.p50", "round trip p50", "ms", "lower"),
                        Metric("rtt_ms.p99", "round trip p99", "ms", "lower"),
                        *_cpu_metrics("ack"),
                    ],
                    deadline=profile.echo_warmup + profile.echo_duration + 90,
                )
            )
        elif scenario == "connect":
            for mode, title, lib in (
                ("websocket", "WebSocket only (raw frames)", False),
                ("upgrade", "polling then upgrade (socket.io-client)", True),
            ):
                cases.append(
                    Case(
                        scenario="connect",
                        name=f"connect-{mode}",
                        title=f"connect: {profile.connect_total:,} connections, {title}, "
                        f"concurrency {profile.connect_concurrency}",
                        generator={
                            "scenario": f"connect-{mode}",
                            "connections": profile.connect_total,
                            "concurrency": profile.connect_concurrency,
                            "connect_timeout": 120,
                        },
                        metrics=[
                            Metric("connections_per_s", "connections/s", "1/s", "higher",
                                   primary=True),
                            Metric("connect_ms.p50", "connect time p50", "ms", "lower"),
                            Metric("connect_ms.p99", "connect time p99", "ms", "lower"),
                            *_cpu_metrics("connection"),
                        ],
                        deadline=200,
                        needs_client_lib=lib,
                    )
                )
        elif scenario == "memory":
            cases.append(
                Case(
                    scenario="memory",
                    name="memory",
                    title=f"memory: {profile.memory_connections:,} idle WebSocket connections",
                    generator={
                        "scenario": "memory",
                        "connections": profile.memory_connections,
                        "concurrency": profile.memory_concurrency,
                        "settle": profile.memory_settle,
                        "connect_timeout": 180,
                    },
                    metrics=[
                        Metric("rss_per_connection_bytes", "RSS per connection", "KiB", "lower",
                               scale=1 / 1024, primary=True),
                        Metric("rss_after_bytes", "RSS with all connected", "MiB", "lower",
                               scale=1 / 1024 / 1024),
                        Metric("connections_per_s", "connections/s", "1/s", "higher"),
                        Metric("server_cpu_us_per_op", "server CPU per connection", "us",
                               "lower"),
                        Metric("generator_cpu_pct", "generator CPU", "% of a core", "lower"),
                    ],
                    deadline=2 * profile.memory_settle + 240,
                    notes=["RSS growth from an idle, warmed-up server (VmRSS)"],
                )
            )
        elif scenario == "scale":
            n = profile.scale_connections or scale_limit()
            ping = profile.scale_ping_interval
            cases.append(
                Case(
                    scenario="scale",
                    name="scale",
                    title=f"scale: {n:,} idle WebSocket connections to one process, one room, "
                    f"{profile.scale_broadcasts} broadcast(s) to all, two ping cycles idle",
                    generator={
                        "scenario": "scale",
                        "connections": n,
                        "concurrency": profile.scale_concurrency,
                        "source_addresses": max(4, math.ceil(n / SCALE_PORTS_PER_ADDRESS)),
                        "broadcasts": profile.scale_broadcasts,
                        "payload_bytes": 100,
                        "settle": profile.scale_settle,
                        "idle": 2 * ping,
                        "connect_timeout": 240,
                    },
                    metrics=[
                        Metric("rss_per_connection_bytes", "RSS per connection", "KiB", "lower",
                               scale=1 / 1024, primary=True),
                        Metric("rss_after_bytes", "RSS with all connected", "MiB", "lower",
                               scale=1 / 1024 / 1024),
                        Metric("connections_per_s", "connections/s", "1/s", "higher"),
                        Metric("broadcast_ms.p50", "broadcast arrival p50", "ms", "lower"),
                        Metric("broadcast_ms.p99", "broadcast arrival p99", "ms", "lower"),
                        Metric("broadcast_ms.max", "broadcast arrival max", "ms", "lower"),
                        Metric("departures.server_first_write_ms",
                               "server: bcast handled -> first write", "ms", "lower"),
                        Metric("departures.server_last_write_ms",
                               "server: bcast handled -> last write", "ms", "lower"),
                        Metric("departures.arrival_after_last_write_ms",
                               "last arrival after the last write", "ms", "lower"),
                        Metric("broadcast_generator_cpu_pct", "generator CPU while delivering",
                               "% of a core", "lower"),
                        Metric("heartbeat_cpu_us_per_ping", "heartbeat CPU per ping", "us",
                               "lower"),
                        Metric("lost_while_idle", "connections lost while idle", "", "lower"),
                        Metric("connections", "connections", "", "higher"),
                    ],
                    deadline=4 * profile.scale_settle + 2 * ping
                    + 3 * profile.scale_broadcasts + 400,
                    server_args=["--ping-interval", f"{ping:g}"],
                    notes=[
                        f"as many connections as the hard RLIMIT_NOFILE allows (less "
                        f"{SCALE_FD_MARGIN}), from loopback addresses 127.0.0.2... with ports "
                        "chosen by the generator; RSS growth per connection after joining "
                        "the room (VmRSS, settled); broadcasts one at a time, arrival over "
                        "all recipients; server departure times from the app's write tap "
                        f"(medians over broadcasts); pingInterval {ping:g} s on both servers, "
                        "idle window of two intervals: server CPU / pings answered",
                    ],
                )
            )
        else:
            raise ValueError(f"unknown scenario {scenario!r}; expected some of {SCENARIOS}")
    return cases


def gateway_cases(profile: Profile) -> list[Case]:
    metrics = [
        Metric("messages_per_s", "messages/s (sender acks)", "1/s", "higher", primary=True),
        Metric("delivery_ms.p50", "send-to-receipt p50", "ms", "lower"),
        Metric("delivery_ms.p99", "send-to-receipt p99", "ms", "lower"),
        Metric("ack_ms.p50", "sender ack p50", "ms", "lower"),
        Metric("ack_ms.p99", "sender ack p99", "ms", "lower"),
        Metric("idle_delivery_ms.p50", "send-to-receipt p50, 1 in flight", "ms", "lower"),
        Metric("idle_delivery_ms.p99", "send-to-receipt p99, 1 in flight", "ms", "lower"),
        Metric("idle_ack_ms.p50", "sender ack p50, 1 in flight", "ms", "lower"),
        Metric("server_cpu_us_per_op", "server CPU per message (all nodes)", "us", "lower"),
        Metric("node1_cpu_us_per_op", "of which the sender's node", "us", "lower"),
        Metric("node2_cpu_us_per_op", "of which the receiver's node", "us", "lower"),
        Metric("server_cpu_pct", "server CPU (all nodes)", "% of a core", "lower"),
        Metric("server_runqueue_wait_pct", "nodes waiting for a CPU (summed)", "% of wall",
               "lower"),
        Metric("redis_cpu_us_per_op", "Redis CPU per message", "us", "lower"),
        Metric("redis_calls_per_op_total", "Redis commands per message", "1", "lower"),
        Metric("generator_cpu_pct", "generator CPU", "% of a core", "lower"),
    ]
    cases = []
    baseline = f"gateway-pm-{profile.gateway_cases[0]}"
    for variant in profile.gateway_cases:
        nodes, env, what = GATEWAY_VARIANTS[variant]
        name = f"gateway-pm-{variant}"
        cases.append(Case(
            scenario="gateway-pm",
            name=name,
            title=f"gateway private messages: {what}; {profile.gateway_pairs} sender/receiver "
            f"pairs, {profile.gateway_window} acked messages in flight per sender",
            generator={
                "scenario": "gateway-pm",
                "pairs": profile.gateway_pairs,
                "window": profile.gateway_window,
                "warmup": profile.gateway_warmup,
                "duration": profile.gateway_duration,
                "latency_duration": profile.gateway_latency_duration,
                "payload_bytes": 100,
                "connect_timeout": 30,
            },
            metrics=metrics,
            deadline=profile.gateway_warmup + profile.gateway_duration
            + profile.gateway_latency_duration + 60,
            nodes=nodes,
            app="gateway",
            env=env,
            baseline=None if name == baseline else baseline,
            notes=[
                "python -m realtime_app processes (Redis store and adapter, a REDIS_PREFIX "
                "unique to the run, rate limits raised out of the way), all pinned to the "
                "server core; senders connect to the first node, receivers to the last; "
                "each sender keeps its window of acked private-messages to its receiver "
                "full (a message is done when acked to the sender and received), the "
                "receiver acks each one (which deletes the stored copy)",
                "messages/s counts sender acks; latencies under load are the throughput "
                "phase's, '1 in flight' a phase with one message in the whole run; server "
                "CPU summed over the nodes; Redis CPU and commands from INFO at the window's "
                "edges (the Redis server is shared: upper bounds)",
            ],
        ))
    return cases


def read_metric(result: dict[str, Any], key: str) -> float | None:
    value: Any = result
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return float(value) if isinstance(value, int | float) else None
