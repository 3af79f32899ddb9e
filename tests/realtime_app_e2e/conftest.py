"""Fixtures of the gateway's end-to-end tests: the gateway as a subprocess, Node puppets.

* :class:`GatewayProcess` - ``python -m realtime_app --port 0`` with an environment, read
  ``LISTENING <port>``, stopped with SIGTERM (then SIGKILL).
* :class:`Puppet` - ``node tests/interop/gateway_client.mjs``, a line-protocol driver of
  the real npm ``socket.io-client``: ``puppet.connect("a", token)``, ``puppet.emit(...)``,
  ``puppet.wait(...)``; every call is bounded.
* :func:`mint_token` - HS256 tokens with PyJWT (sub, username, exp).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
INTEROP_DIR = REPO_ROOT / "tests" / "interop"
WEB_DIR = REPO_ROOT / "web"
PUPPET_SCRIPT = INTEROP_DIR / "gateway_client.mjs"

JWT_SECRET = "e2e-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
API_KEY = "e2e-api-key-0123456789abcdef"
STARTUP_TIMEOUT = 15.0
CALL_GRACE = 5.0  # seconds the Python side waits beyond a puppet command's own bound

_user_counter = itertools.count(1)


def unique_user(prefix: str) -> str:
    """A user id nobody else in this session uses (rate limits are per user)."""
    return f"{prefix}-{os.getpid()}-{next(_user_counter)}"


def mint_token(user_id: str, username: str | None = None, *, secret: str = JWT_SECRET,
               ttl: int = 600) -> str:
    claims = {"sub": user_id, "username": username or user_id.upper(),
              "exp": int(time.time()) + ttl}
    return jwt.encode(claims, secret, algorithm="HS256")


def require_node() -> str:
    node = shutil.which("node")
    if node is None or not (INTEROP_DIR / "node_modules" / "socket.io-client").is_dir():
        pytest.skip("needs Node.js and tests/interop/node_modules (cd tests/interop && npm ci)")
    return node


# ---------------------------------------------------------------------- gateway


class GatewayProcess:
    def __init__(self, env: dict[str, str], flags: list[str] | None = None) -> None:
        self.env = env
        self.flags = flags or []
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in stop()
            "w+", prefix="gateway-e2e-", suffix=".log", delete=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> GatewayProcess:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("JWT_", "API_KEY", "RATE_LIMIT_", "REDIS_", "MAX_",
                                    "FRONTEND_URL", "WEB_DIR", "BANNED_WORDS", "DEV_MODE",
                                    "METRICS_TOKEN"))}
        env.update({"HOST": "127.0.0.1", "LOG_LEVEL": "INFO", **self.env})
        if "JWT_SECRET" not in env and "JWT_PUBLIC_KEY_FILE" not in env:
            # No key given: the test wants development mode, which must be asked for.
            env.setdefault("DEV_MODE", "1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "realtime_app", "--port", "0", *self.flags],
            cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=self._log, text=True,
        )
        lines: queue.Queue[str | None] = queue.Queue()

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
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
                self.port = int(line.split()[1])
                return self
        self.stop()
        raise RuntimeError(f"gateway did not start; log:\n{self.log()}")

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return Path(self._log.name).read_text()[-8000:]
        return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()

    def remove_log(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self._log.name)

    # -------------------------------------------------------------- HTTP

    def http(self, method: str, path: str, body: Any = None, *, api_key: str | None = API_KEY,
             timeout: float = 5.0) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
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


@contextlib.contextmanager
def running_gateway(env: dict[str, str]) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(env).start()
    failed = True
    try:
        yield gateway
        failed = False
    finally:
        gateway.stop()
        if not failed:
            gateway.remove_log()
        else:
            print(f"gateway log kept at {gateway._log.name}:\n{gateway.log()}", file=sys.stderr)


# ---------------------------------------------------------------------- puppet


class PuppetError(AssertionError):
    pass


class Puppet:
    """Drives ``gateway_client.mjs`` over stdin/stdout, one JSON line each way."""

    def __init__(self, node: str, url: str, lifetime_ms: int = 60000) -> None:
        self.url = url
        self.proc = subprocess.Popen(
            [node, str(PUPPET_SCRIPT), str(lifetime_ms)], cwd=INTEROP_DIR,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self._replies: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._stderr: list[str] = []
        self._ids = itertools.count(1)
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self._replies.put(json.loads(line))
            except ValueError:
                self._stderr.append(f"[stdout] {line}")
        self._replies.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if len(self._stderr) < 200:
                self._stderr.append(line)

    def call(self, cmd: str, *, timeout_ms: int = 5000, check: bool = True,
             **fields: Any) -> dict[str, Any]:
        request_id = next(self._ids)
        message = {"id": request_id, "cmd": cmd, "timeoutMs": timeout_ms, **fields}
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            raise PuppetError(f"puppet is gone ({exc}); stderr: {''.join(self._stderr)}") from None
        deadline = time.monotonic() + timeout_ms / 1000 + CALL_GRACE
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PuppetError(f"no reply to {message} in time")
            try:
                reply = self._replies.get(timeout=remaining)
            except queue.Empty:
                continue
            if reply is None:
                raise PuppetError(f"puppet exited; stderr: {''.join(self._stderr)}")
            if reply.get("id") == request_id:
                break
            if reply.get("id") is None:
                raise PuppetError(f"puppet: {reply}")
        if check and not reply.get("ok"):
            raise PuppetError(f"{cmd} {fields}: {reply}")
        return reply

    # -------------------------------------------------------------- conveniences

    def connect(self, name: str, token: str | None = None, *, ack_private: bool = True,
                auth: Any = "default", **extra: Any) -> dict[str, Any]:
        if auth == "default":
            auth = {"token": token} if token is not None else None
        return self.call("connect", name=name, url=self.url, auth=auth,
                         ackPrivate=ack_private, **extra)

    def emit(self, name: str, event: str, *args: Any, ack: bool = False,
             timeout_ms: int = 5000) -> Any:
        reply = self.call("emit", name=name, event=event, args=list(args), ack=ack,
                          timeout_ms=timeout_ms)
        return reply.get("ack")

    def wait(self, name: str, event: str, count: int = 1, timeout_ms: int = 5000) -> list[Any]:
        """Arguments lists of every ``event`` received by ``name`` (at least ``count``)."""
        return self.call("wait", name=name, event=event, count=count,
                         timeout_ms=timeout_ms)["events"]

    def events(self, name: str, event: str | None = None) -> list[dict[str, Any]]:
        return self.call("events", name=name, event=event)["events"]

    def payloads(self, name: str, event: str) -> list[Any]:
        """First argument of every ``event`` received so far."""
        return [e["args"][0] if e["args"] else None for e in self.events(name, event)]

    def disconnect(self, name: str) -> None:
        self.call("disconnect", name=name)

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"id": 0, "cmd": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=3)


# ---------------------------------------------------------------------- fixtures

NODE_GATEWAY_ENV = {
    "JWT_SECRET": JWT_SECRET,
    "API_KEY": API_KEY,
    "RATE_LIMIT_PRIVATE_MESSAGE": "3",
    "MAX_ROOMS_PER_SOCKET": "2",
}


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayProcess]:
    """A gateway with a fixed JWT secret and API key (module wide; users are unique)."""
    with running_gateway(NODE_GATEWAY_ENV) as process:
        yield process


@pytest.fixture
def puppet(gateway: GatewayProcess) -> Iterator[Puppet]:
    node = require_node()
    driver = Puppet(node, gateway.url)
    try:
        yield driver
    finally:
        driver.close()
