"""A gateway fleet for tests: a private Redis, N gateway nodes and HAProxy, as subprocesses.

* :class:`RedisServer` - ``redis-server`` on a free port of its own (append-only file in a
  temporary folder, so that a restart is a restart and not a wipe); stop / start / restart on
  the same port. The shared Redis on 6379 is never touched.
* :class:`GatewayNode` - ``python -m realtime_app`` on a fixed port with NODE_ID; waits for
  ``LISTENING <port>``; ``kill()`` (SIGKILL), ``terminate()`` (SIGTERM, waits for the exit),
  ``start()`` again on the same port, ``wait_ready()`` (``GET /readyz`` 200), ``http()``.
* :class:`HAProxy` - ``haproxy -db -f`` on the checked-in ``deploy/haproxy.cfg``, rendered
  the way ``scripts/cluster`` renders it (one ``server`` line per node; bind address and stats
  socket from the environment); ``states()`` reads the servers' UP/DOWN from the stats socket.
* :class:`Fleet` - all of it as one context manager: always torn down (SIGKILL after a
  grace period), logs printed when the block fails.

Every wait is bounded and says what it waited for.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.realtime_app_e2e.conftest import INTEROP_DIR, Puppet, require_node

REPO_ROOT = Path(__file__).resolve().parents[2]
HAPROXY_CONFIG = REPO_ROOT / "deploy" / "haproxy.cfg"
WEB_DIR = REPO_ROOT / "web"

JWT_SECRET = "fleet-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
API_KEY = "fleet-api-key-0123456789abcdef"
STARTUP_TIMEOUT = 20.0
_SERVER_LINE = re.compile(r"^[ \t]*server[ \t]+node[0-9]+[ \t]")

_counter = itertools.count(1)


def unique(prefix: str) -> str:
    """A name nobody else in this session uses (users, prefixes, streams)."""
    return f"{prefix}-{os.getpid()}-{next(_counter)}"


def mint_token(user_id: str, username: str | None = None, ttl: int = 900) -> str:
    claims = {"sub": user_id, "username": username or user_id, "exp": int(time.time()) + ttl}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_fleet_tools() -> str:
    """Skips the test unless haproxy, redis-server and Node (with socket.io-client) exist."""
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed (apt-get install -y haproxy; scripts/test does)")
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install -y redis-server)")
    return require_node()


def wait_until(predicate: Callable[[], Any], timeout: float, what: str,
               interval: float = 0.1) -> Any:
    """The first truthy value of ``predicate()``; AssertionError naming ``what`` after timeout."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
        except (OSError, AssertionError, ValueError) as exc:
            value, last_error = None, exc
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{detail}")
        time.sleep(interval)


def http(url: str, method: str = "GET", body: Any = None, *, api_key: str | None = API_KEY,
         timeout: float = 5.0) -> tuple[int, Any]:
    """(status, JSON body or text) of one request; never raises for an HTTP status."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if api_key is not None:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def sockets_per_node(stats: dict[str, Any]) -> dict[str, int]:
    """{node id: its sockets} from a fleet ``/stats`` body ("nodes": [{node, sockets}...];
    the count is also accepted under "connectedClients")."""
    assert isinstance(stats.get("nodes"), list), f"/stats has no nodes list: {stats}"
    return {entry["node"]: entry.get("sockets", entry.get("connectedClients"))
            for entry in stats["nodes"]}


def _stop(proc: subprocess.Popen[Any] | None, sig: int = signal.SIGTERM,
          grace: float = 5.0) -> int | None:
    """Signal ``proc`` and wait; SIGKILL after ``grace`` seconds. Its exit code."""
    if proc is None:
        return None
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    return proc.returncode


# ---------------------------------------------------------------------- Redis


class RedisServer:
    """A redis-server of the test's own on 127.0.0.1:<free port>, restartable on that port."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.dir = workdir / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"*1\r\n$4\r\nPING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                 "--dir", str(self.dir), "--save", "", "--appendonly", "yes",
                 "--appendfsync", "always", "--protected-mode", "no"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        wait_until(self.ping, 10, f"redis-server on port {self.port} to answer PING")

    def stop(self) -> None:
        """SIGTERM (Redis writes its append-only file and exits), wait until it is gone."""
        _stop(self.proc, signal.SIGTERM, grace=10)
        wait_until(lambda: not self.ping(), 5, f"redis-server on {self.port} to be gone")

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()


# ---------------------------------------------------------------------- gateway node


class GatewayNode:
    """One ``python -m realtime_app`` of the fleet, on a port that stays its own."""

    def __init__(self, index: int, env: dict[str, str], workdir: Path) -> None:
        self.index = index
        self.name = f"node{index}"
        self.port = free_port()
        self.env = env
        self.log_path = workdir / f"{self.name}.log"
        self.proc: subprocess.Popen[str] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> GatewayNode:
        assert not self.alive, f"{self.name} is running already"
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("JWT_", "API_KEY", "RATE_LIMIT_", "REDIS_", "MAX_",
                                    "FRONTEND_URL", "WEB_DIR", "BANNED_WORDS", "DEV_MODE",
                                    "METRICS_TOKEN", "SOCKET_ADAPTER", "NODE_ID",
                                    "CONNECTION_RECOVERY", "SHUTDOWN_TIMEOUT", "PING_"))}
        env.update({"HOST": "127.0.0.1", "PORT": str(self.port), "NODE_ID": self.name,
                    "LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1", **self.env})
        self.starts += 1
        with open(self.log_path, "a") as log:
            log.write(f"\n===== {self.name} start #{self.starts} on port {self.port} =====\n")
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "realtime_app"], cwd=REPO_ROOT, env=env,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, text=True,
            )
        lines: queue.Queue[str | None] = queue.Queue()
        proc = self.proc

        def read() -> None:  # drains stdout for the whole life of the process
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            if line.startswith("LISTENING "):
                listening = int(line.split()[1])
                assert listening == self.port, f"{self.name} listens on {listening}"
                return self
        code = _stop(self.proc, signal.SIGKILL)
        raise RuntimeError(f"{self.name} did not print LISTENING within {STARTUP_TIMEOUT:g} s "
                           f"(exit code {code}); log:\n{self.log()}")

    def kill(self) -> None:
        """kill -9: no goodbye to anyone."""
        assert self.alive, f"{self.name} is not running"
        _stop(self.proc, signal.SIGKILL)

    def terminate(self, timeout: float = 20.0) -> tuple[int | None, float]:
        """SIGTERM and wait for the exit: (exit code, seconds it took)."""
        assert self.alive, f"{self.name} is not running"
        started = time.monotonic()
        code = _stop(self.proc, signal.SIGTERM, grace=timeout)
        return code, time.monotonic() - started

    def ready(self) -> bool:
        status, _ = http(f"{self.url}/readyz", api_key=None, timeout=2)
        return status == 200

    def readyz(self) -> int:
        """The status of ``GET /readyz`` (0 when the node does not answer)."""
        try:
            return http(f"{self.url}/readyz", api_key=None, timeout=2)[0]
        except OSError:
            return 0

    def wait_ready(self, timeout: float = 20.0) -> None:
        wait_until(self.ready, timeout, f"{self.name} GET /readyz 200")

    def http(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        return http(self.url + path, method, body, **kw)

    def log(self, tail: int = 12000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-tail:]
        return ""


# ---------------------------------------------------------------------- HAProxy


def render_haproxy_config(template: str, servers: list[tuple[str, str]]) -> str:
    """``deploy/haproxy.cfg`` with its example server lines replaced, as scripts/cluster does."""
    out: list[str] = []
    done = False
    for line in template.splitlines(keepends=True):
        if _SERVER_LINE.match(line):
            if not done:
                out.extend(f"    server {name} {address} cookie {name}\n"
                           for name, address in servers)
                done = True
            continue
        out.append(line)
    assert done, "deploy/haproxy.cfg has no 'server nodeN' line to replace"
    return "".join(out)


class HAProxy:
    def __init__(self, nodes: list[GatewayNode], workdir: Path) -> None:
        self.port = free_port()
        self.nodes = nodes
        self.config_path = workdir / "haproxy.cfg"
        self.socket_path = workdir / "haproxy.sock"
        self.log_path = workdir / "haproxy.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        servers = [(n.name, f"127.0.0.1:{n.port}") for n in self.nodes]
        self.config_path.write_text(render_haproxy_config(HAPROXY_CONFIG.read_text(), servers))
        env = {**os.environ, "GATEWAY_BIND": f"127.0.0.1:{self.port}",
               "HAPROXY_STATS_SOCKET": str(self.socket_path)}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                ["haproxy", "-db", "-f", str(self.config_path)], env=env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )

        def started() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"haproxy exited ({self.proc.returncode}):\n{self.log()}")
            return self.socket_path.exists()

        wait_until(started, 10, "haproxy's stats socket")

    def command(self, line: str) -> str:
        """One runtime API command on the stats socket."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(3)
            s.connect(str(self.socket_path))
            s.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def states(self) -> dict[str, str]:
        """{node name: "UP" | "DOWN" | "UP 1/2" | ...} as HAProxy's health checks see it."""
        text = self.command("show stat")
        header, *rows = [line for line in text.splitlines() if line.strip()]
        columns = header.lstrip("# ").split(",")
        name_i, server_i, status_i = (columns.index(c) for c in ("pxname", "svname", "status"))
        states = {}
        for row in rows:
            fields = row.split(",")
            if fields[name_i] == "gateway_nodes" and fields[server_i].startswith("node"):
                states[fields[server_i]] = fields[status_i]
        return states

    def wait_states(self, expected: dict[str, str], timeout: float = 20.0) -> None:
        def matches() -> bool:
            states = self.states()
            return all(states.get(name) == state for name, state in expected.items())

        try:
            wait_until(matches, timeout, f"HAProxy to see {expected}", interval=0.2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; HAProxy sees {self.states()}") from None

    def stop(self) -> None:
        _stop(self.proc, signal.SIGTERM)

    def log(self, tail: int = 6000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-tail:]
        return ""


# ---------------------------------------------------------------------- the fleet


class FleetPuppet(Puppet):
    """The e2e line-protocol puppet (real socket.io-client) with per-socket URLs."""

    def connect_to(self, url: str, name: str, user: str, **extra: Any) -> dict[str, Any]:
        """Connect ``name`` as ``user`` to ``url``; asserts it connected and got ``connected``."""
        reply = self.call("connect", name=name, url=url, auth={"token": mint_token(user)},
                          timeout_ms=extra.pop("timeout_ms", 8000), **extra)
        assert reply["connected"], f"{name} ({user}) could not connect to {url}: {reply}"
        self.wait(name, "connected", timeout_ms=8000)
        return reply

    def wait_payloads(self, name: str, event: str, count: int = 1,
                      timeout_ms: int = 5000) -> list[Any]:
        """First argument of every ``event`` received by ``name`` (at least ``count``). With
        connection state recovery the server adds the event's offset as a last argument."""
        return [args[0] if args else None
                for args in self.wait(name, event, count, timeout_ms=timeout_ms)]

    def start_stream(self, name: str, stream: str, target: str, count: int, **kw: Any) -> None:
        self.call("stream", name=name, stream=stream, target=target, count=count,
                  prefix=stream, **kw)

    def stream_result(self, stream: str, timeout_ms: int) -> list[dict[str, Any]]:
        return self.call("streamResult", stream=stream, timeout_ms=timeout_ms)["results"]


class Fleet:
    """Private Redis + ``nodes`` gateways + HAProxy; a context manager that always cleans up.

    ``env`` is added to every node's environment (over the defaults below). Unknown
    variables are ignored by the gateway's configuration.
    """

    def __init__(self, nodes: int = 2, env: dict[str, str] | None = None,
                 haproxy: bool = True) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="gateway-fleet-"))
        self.redis = RedisServer(self.workdir)
        self.prefix = unique("fleet") + ":"
        self.node_env = {
            "JWT_SECRET": JWT_SECRET,
            "API_KEY": API_KEY,
            "REDIS_URL": self.redis.url,
            "REDIS_PREFIX": self.prefix,
            "SOCKET_ADAPTER": "redis-streams",
            "CONNECTION_RECOVERY_MS": "120000",
            "SHUTDOWN_TIMEOUT_MS": "8000",
            "RATE_LIMIT_PRIVATE_MESSAGE": "100000",
            "RATE_LIMIT_DEFAULT": "100000",
            "RATE_LIMIT_MUSIC_SYNC": "100000",
            "RATE_LIMIT_JOIN_ROOM": "100000",
            **(env or {}),
        }
        self.nodes = [GatewayNode(i, self.node_env, self.workdir) for i in range(1, nodes + 1)]
        self.haproxy = HAProxy(self.nodes, self.workdir) if haproxy else None
        self.puppets: list[FleetPuppet] = []

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Fleet:
        try:
            self.redis.start()
            for node in self.nodes:
                node.start()
            for node in self.nodes:
                node.wait_ready()
            if self.haproxy is not None:
                self.haproxy.start()
                self.haproxy.wait_states({n.name: "UP" for n in self.nodes})
        except BaseException:
            self.dump_logs("fleet start failed")
            self.close()
            raise
        return self

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        if kind is not None:
            self.dump_logs(f"test failed: {kind.__name__}")
        self.close()

    def close(self) -> None:
        """Everything down: puppets, HAProxy, nodes, Redis; the temporary folder removed."""
        for puppet in self.puppets:
            with contextlib.suppress(Exception):
                puppet.close()
        with contextlib.suppress(Exception):
            if self.haproxy is not None:
                self.haproxy.stop()
        for node in self.nodes:
            with contextlib.suppress(Exception):
                _stop(node.proc, signal.SIGTERM, grace=5)
        with contextlib.suppress(Exception):
            _stop(self.redis.proc, signal.SIGTERM, grace=5)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def dump_logs(self, why: str) -> None:
        parts = [f"===== {why}; fleet logs ({self.workdir}) ====="]
        for node in self.nodes:
            parts.append(f"----- {node.name} (port {node.port}) -----\n{node.log()}")
        if self.haproxy is not None:
            parts.append(f"----- haproxy (port {self.haproxy.port}) -----\n{self.haproxy.log()}")
        print("\n".join(parts), file=sys.stderr)

    # ------------------------------------------------------------------ helpers

    def node(self, index: int) -> GatewayNode:
        """1-based, like NODE_ID node1, node2..."""
        return self.nodes[index - 1]

    @property
    def url(self) -> str:
        assert self.haproxy is not None
        return self.haproxy.url

    def http_through_balancer(self, method: str, path: str, body: Any = None,
                              **kw: Any) -> tuple[int, Any]:
        return http(self.url + path, method, body, **kw)

    def puppet(self, lifetime_ms: int = 90000) -> FleetPuppet:
        node = require_node()
        driver = FleetPuppet(node, self.url if self.haproxy else self.nodes[0].url, lifetime_ms)
        self.puppets.append(driver)
        return driver

    def restart_node(self, index: int, timeout: float = 20.0) -> tuple[int | None, float]:
        """SIGTERM node ``index``, start it again on its port, wait until HAProxy has it back."""
        node = self.node(index)
        result = node.terminate(timeout)
        node.start()
        node.wait_ready()
        if self.haproxy is not None:
            self.haproxy.wait_states({node.name: "UP"})
        return result


@contextlib.contextmanager
def running_fleet(nodes: int = 2, env: dict[str, str] | None = None,
                  haproxy: bool = True) -> Iterator[Fleet]:
    require_fleet_tools()
    with Fleet(nodes, env, haproxy) as fleet:
        yield fleet


__all__ = [
    "API_KEY", "INTEROP_DIR", "JWT_SECRET", "WEB_DIR", "Fleet", "FleetPuppet", "GatewayNode",
    "HAProxy", "RedisServer", "free_port", "http", "mint_token", "render_haproxy_config",
    "require_fleet_tools", "running_fleet", "sockets_per_node", "unique", "wait_until",
]
