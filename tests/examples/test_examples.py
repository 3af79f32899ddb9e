"""Every example in examples/ runs: started as its README says, a real client connects and
sees one event, then it is stopped. Waits are bounded; Redis examples use their own key."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

socketio = pytest.importorskip("socketio")
aiohttp = pytest.importorskip("aiohttp")

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples"
REDIS_URL = "redis://127.0.0.1:6379/0"
STARTUP_TIMEOUT = 20.0
WAIT = 10.0  # seconds for one event to arrive


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def redis_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def running(argv: list[str], port: int, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    """Start an example, wait (bounded) until ``port`` accepts, always stop it."""
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
    full_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **env}
    proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=full_env, stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT)

    def output() -> str:
        log.seek(0)
        return log.read().decode(errors="replace")[-4000:]

    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"{argv} exited with {proc.returncode}:\n{output()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"{argv} did not listen on {port}:\n{output()}")
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        log.close()


def http(url: str, body: Any = None) -> tuple[int, dict[str, str], bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data,
                                     headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, dict(response.headers), response.read()


class Client:
    """A python-socketio client whose events land in a queue."""

    def __init__(self, *events: str, **options: Any) -> None:
        self.sio = socketio.AsyncClient(reconnection=False, **options)
        self.events: asyncio.Queue[tuple[str, tuple[Any, ...]]] = asyncio.Queue()
        for event in events:
            self.sio.on(event, self._recorder(event))

    def _recorder(self, event: str) -> Any:
        async def record(*args: Any) -> None:
            await self.events.put((event, args))
        return record

    async def connect(self, url: str) -> Client:
        await asyncio.wait_for(self.sio.connect(url, wait_timeout=WAIT), WAIT + 2)
        return self

    async def next(self, event: str) -> tuple[Any, ...]:
        while True:
            name, args = await asyncio.wait_for(self.events.get(), WAIT)
            if name == event:
                return args

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.sio.disconnect(), 5)


async def test_chat() -> None:
    port = free_port()
    with running([sys.executable, str(EXAMPLES / "chat" / "server.py"), str(port)], port):
        url = f"http://127.0.0.1:{port}"
        status, _, page = await asyncio.to_thread(http, url + "/")
        assert status == 200 and b'src="/socket.io/socket.io.js"' in page
        status, headers, _ = await asyncio.to_thread(http, url + "/socket.io/socket.io.js")
        assert status == 200 and headers["Content-Type"].startswith("application/javascript")
        ann, bob = Client("chat"), Client("chat")
        try:
            await ann.connect(url)
            await bob.connect(url)
            await ann.sio.emit("chat", ("ann", "hello"))
            assert await bob.next("chat") == ("ann", "hello")
            assert await ann.next("chat") == ("ann", "hello")  # the sender sees it too
        finally:
            await ann.close()
            await bob.close()
        await asyncio.to_thread(chat_page_in_chromium, url)


def chat_page_in_chromium(url: str) -> None:
    """The page as a browser runs it: the client from /socket.io/socket.io.js, a line sent."""
    node = shutil.which("node")
    interop = REPO_ROOT / "tests" / "interop"
    if not Path("/usr/bin/chromium").exists() or node is None \
            or not (interop / "node_modules" / "playwright-core").is_dir():
        return  # checked with Python clients only
    proc = subprocess.run([node, str(interop / "chat_example_browser.mjs"), url, "30000"],
                          cwd=interop, capture_output=True, text=True, timeout=45)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    result = json.loads(lines[-1])
    assert result["ok"], json.dumps(result, indent=1)
    assert "ann: hello from the browser" in result["bobLines"]
    assert result["pageErrors"] == [] and result["consoleErrors"] == []
    assert result["requests"] == []


async def test_starlette_beside_socketio_under_uvicorn() -> None:
    pytest.importorskip("starlette")
    pytest.importorskip("uvicorn")
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "--app-dir", str(EXAMPLES / "asgi_starlette"),
            "app:app", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    with running(argv, port):
        url = f"http://127.0.0.1:{port}"
        assert (await asyncio.to_thread(http, url + "/health"))[2] == b'{"ok":true,"clients":0}'
        status, headers, _ = await asyncio.to_thread(http, url + "/socket.io/socket.io.min.js")
        assert status == 200 and headers["ETag"].startswith('"4.')  # serve_client over ASGI
        client = Client("news")
        try:
            await client.connect(url)
            assert await client.sio.call("hello", "bob", timeout=WAIT) == "hello bob"
            status, _, body = await asyncio.to_thread(http, url + "/publish", {"id": 7})
            assert status == 200 and json.loads(body) == {"sent": True}
            assert await client.next("news") == ({"id": 7},)
            health = json.loads((await asyncio.to_thread(http, url + "/health"))[2])
            assert health == {"ok": True, "clients": 1}
        finally:
            await client.close()


async def test_emitter_from_a_worker() -> None:
    if not redis_reachable():
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    port = free_port()
    env = {"REDIS_URL": REDIS_URL, "SOCKETIO_KEY": f"examples-{uuid.uuid4().hex[:12]}"}
    with running([sys.executable, str(EXAMPLES / "emitter" / "server.py"), str(port)], port,
                 **env):
        client = Client("progress")
        try:
            await client.connect(f"http://127.0.0.1:{port}")
            worker = await asyncio.to_thread(
                subprocess.run, [sys.executable, str(EXAMPLES / "emitter" / "worker.py"), "job-1"],
                cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **env},
                capture_output=True, text=True, timeout=30)
            assert worker.returncode == 0, worker.stderr
            assert "job-1: 0% sent to 1 server(s)" in worker.stdout, worker.stdout
            for percent in (0, 50, 100):
                assert await client.next("progress") == ("job-1", percent)
        finally:
            await client.close()


async def test_two_nodes_behind_haproxy() -> None:
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy)")
    if not redis_reachable():
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    front, one, two = free_port(), free_port(), free_port()
    env = {"REDIS_URL": REDIS_URL, "SOCKETIO_KEY": f"examples-{uuid.uuid4().hex[:12]}",
           "FRONT_PORT": str(front), "NODE1_PORT": str(one), "NODE2_PORT": str(two)}
    node = str(EXAMPLES / "haproxy" / "node.py")
    with running([sys.executable, node, str(one)], one, **env), \
            running([sys.executable, node, str(two)], two, **env), \
            running([haproxy, "-db", "-f", str(EXAMPLES / "haproxy" / "haproxy.cfg")], front,
                    **env):
        clients = []
        try:
            for _ in range(2):
                # HAProxy's stickiness cookie must come back: aiohttp keeps cookies of an IP
                # host only with an "unsafe" jar (a browser keeps them anyway).
                session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
                client = Client("welcome", "chat", http_session=session)
                clients.append((client, session))
                await client.connect(f"http://127.0.0.1:{front}")
            welcomes = {(await client.next("welcome"))[0] for client, _ in clients}
            assert welcomes == {f"node {one}", f"node {two}"}  # round robin, then sticky
            (first, _), (second, _) = clients
            await first.sio.emit("chat", "across the fleet")
            assert await second.next("chat") == ("across the fleet",)  # through Redis
            deadline = time.monotonic() + WAIT
            while second.sio.transport() != "websocket" and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert second.sio.transport() == "websocket"  # upgraded through HAProxy
        finally:
            for client, session in clients:
                await client.close()
                await session.close()
