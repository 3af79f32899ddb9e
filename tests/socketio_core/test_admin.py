"""The Admin UI's server side (``socketio_core.admin``) against the protocol of
``@socket.io/admin-ui`` 0.5.1.

Differential: ``tests/interop/admin_client.mjs`` (npm socket.io-client, playing the UI)
runs the same session against Node's ``socket.io`` instrumented by the npm package
(``tests/interop/reference_admin_server.mjs``) and against ours
(``tests/socketio_core/admin_server.py``); both transcripts pass the same checks and their
messages have the same shapes. Then in-process tests for what the driver does not reach
(auth variants, the UI's files, dynamic namespaces, nothing hooked when not instrumented)
and a two-node fleet through Redis.

Run: ``.venv/bin/python -m pytest tests/socketio_core/test_admin.py``. Needs ``npm ci`` in
``tests/interop`` and ``bcrypt`` (extra ``[admin]``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engineio_core import HttpResponse, Request, Session
from socketio_core import Server
from socketio_core.admin import _json_safe, instrument

from ..interop_support import INTEROP_DIR, REPO_ROOT, require_node, run_node, start_process
from .conftest import Recorder, url

bcrypt = pytest.importorskip("bcrypt")

pytestmark = pytest.mark.timeout(90)

PASSWORD = "s3cret"
#: Cost 4: the lowest bcrypt allows, so that logins are quick in tests.
PASSWORD_HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
ADMIN_UI_PACKAGE = INTEROP_DIR / "node_modules" / "@socket.io" / "admin-ui"
ADMIN_SERVER = REPO_ROOT / "tests" / "socketio_core" / "admin_server.py"
ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ALL_FEATURES = ["EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT",
                "AGGREGATED_EVENTS", "ALL_EVENTS"]
SOCKET_KEYS = {"id", "clientId", "transport", "nsp", "data", "handshake", "rooms"}
HANDSHAKE_KEYS = {"address", "headers", "query", "issued", "secure", "time", "url", "xdomain"}
STATS_KEYS = {"serverId", "hostname", "pid", "uptime", "clientsCount", "pollingClientsCount",
              "aggregatedEvents", "namespaces"}


def require_admin_ui() -> None:
    require_node()
    if not (ADMIN_UI_PACKAGE / "package.json").is_file():
        pytest.skip(f"{ADMIN_UI_PACKAGE} is missing; run `cd tests/interop && npm ci`")


@contextlib.contextmanager
def admin_server(kind: str, *flags: str, env: dict[str, str] | None = None) -> Iterator[Any]:
    require_admin_ui()
    common = ["--port", "0", "--password-hash", PASSWORD_HASH, *flags]
    if kind == "node":
        argv = ["node", str(INTEROP_DIR / "reference_admin_server.mjs"), *common]
    else:
        argv = [sys.executable, str(ADMIN_SERVER), *common]
    environment = dict(os.environ, **(env or {}))
    environment["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), environment.get("PYTHONPATH", "")) if p)
    with start_process(kind, argv, path="/socket.io/",
                       cwd=INTEROP_DIR if kind == "node" else REPO_ROOT,
                       env=environment) as server:
        yield server


def run_driver(server_url: str, *, read_only: bool = False,
               clients_url: str | None = None) -> dict[str, Any]:
    args: list[Any] = [server_url, PASSWORD, "1" if read_only else "0", 30000]
    if clients_url:
        args.append(clients_url)
    result = run_node("admin_client.mjs", *args, timeout=45)
    shown = {k: v for k, v in result.items() if k != "_stderr"}
    assert result.get("ok") and result.get("_returncode") == 0, (
        json.dumps(shown, indent=1)[:8000], result.get("_stderr"))
    return result


def events(result: dict[str, Any], name: str) -> list[list[Any]]:
    return [e[1:] for e in result["events"] if e[0] == name]


def shape(value: Any) -> Any:
    """The structure of a message: dict keys and value types, not the values."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return ["list"]
    return type(value).__name__


def check_development_transcript(result: dict[str, Any]) -> None:
    """What the UI needs from a development-mode session, for either server."""
    ids = result["ids"]
    assert result["badLogin"] == "invalid credentials"
    assert events(result, "config") == [[{"supportedFeatures": ALL_FEATURES}]]
    [[everyone]] = events(result, "all_sockets")
    assert ids["admin"] in {s["id"] for s in everyone}
    assert all(set(s) == SOCKET_KEYS for s in everyone)

    connected = {args[0]["id"]: args for args in events(result, "socket_connected")}
    for name, transport in (("a", "polling"), ("b", "websocket")):
        serialized, timestamp = connected[ids[name]]
        assert set(serialized) == SOCKET_KEYS and set(serialized["handshake"]) == HANDSHAKE_KEYS
        assert serialized["nsp"] == "/" and serialized["transport"] == transport
        assert len(serialized["clientId"]) == 12  # never the whole engine sid
        assert serialized["rooms"] == [ids[name]]  # announced before the app's handler ran
        assert serialized["handshake"]["address"] == "127.0.0.1"
        assert ISO_TIME.match(timestamp)
    assert ["/", ids["a"], ["ping", 1, {"x": "y"}]] == events(result, "event_received")[0][:3]
    assert ["/", ids["a"], ["pong", 1, {"x": "y"}]] == events(result, "event_sent")[0][:3]
    joined = [args[:3] for args in events(result, "room_joined")]
    left = [args[:3] for args in events(result, "room_left")]
    assert ["/", "red", ids["a"]] in joined and ["/", "blue", ids["b"]] in joined
    assert ["/", "green", ids["a"]] in joined and ["/", "green", ids["a"]] in left
    assert ["/", "blue", ids["b"]] in left
    assert ["/", ids["b"], "server namespace disconnect"] in [
        args[:3] for args in events(result, "socket_disconnected")]
    assert result["bReason"] == "io server disconnect"
    assert {"id": ids["a"], "nsp": "/", "transport": "websocket"} in [
        args[0] for args in events(result, "socket_updated")]
    [stats] = result["stats"]
    assert set(stats) == STATS_KEYS and stats["clientsCount"] >= 3
    assert {"name": "/", "socketsCount": 2} in stats["namespaces"]
    assert {"/", "/chat", "/admin"} <= {n["name"] for n in stats["namespaces"]}
    kinds = {e["type"] for s in events(result, "server_stats") for e in s[0]["aggregatedEvents"]}
    assert {"rawConnection", "packetsIn", "packetsOut", "bytesIn", "bytesOut"} <= kinds
    assert result["sessionLogin"] == "connected"


def first_of_each(result: dict[str, Any]) -> dict[str, Any]:
    firsts: dict[str, Any] = {}
    for name, *args in result["events"]:
        firsts.setdefault(name, args)
    return firsts


# ---------------------------------------------------------------- differential


def test_development_mode_like_the_reference() -> None:
    transcripts = {}
    for kind in ("node", "python"):
        with admin_server(kind) as server:
            transcripts[kind] = run_driver(server.url)
        check_development_transcript(transcripts[kind])
    node, ours = (first_of_each(transcripts[k]) for k in ("node", "python"))
    assert set(node) == set(ours)
    for name in node:
        if name in ("server_stats", "all_sockets"):
            continue  # their lists' content depends on timing; their items are checked above
        assert shape(ours[name]) == shape(node[name]), name


def test_production_and_read_only_like_the_reference() -> None:
    for kind in ("node", "python"):
        with admin_server(kind, "--mode", "production", "--read-only") as server:
            result = run_driver(server.url, read_only=True)
        names = {e[0] for e in result["events"]}
        assert names == {"session", "config", "server_stats"}, (kind, names)
        assert events(result, "config") == [[{"supportedFeatures": ["AGGREGATED_EVENTS"]}]]
        assert result["bConnectedAfterDisconnectRequest"] is True, kind
        assert result["sessionLogin"] == "connected"


# ---------------------------------------------------------------- in process


async def test_nothing_is_hooked_without_instrument(server: Server, sio_client: Any) -> None:
    client = sio_client()
    await client.connect(url(server))
    [session] = server.engine.sessions.values()
    assert type(session) is Session
    [socket] = server.sockets.sockets.values()
    assert socket._any is None and socket._any_outgoing is None
    assert server.sockets.adapter._listeners == {}
    assert server.engine.http_handler is None


async def test_hooks_on_instrument_and_off_on_close(server: Server, sio_client: Any) -> None:
    admin = instrument(server, auth=None)
    client = sio_client()
    await client.connect(url(server))
    [session] = server.engine.sessions.values()
    assert type(session) is not Session and isinstance(session, Session)
    with pytest.raises(RuntimeError, match="already instrumented"):
        instrument(server, auth=None)
    admin.close()
    assert type(session) is Session
    instrument(server, auth=None).close()  # again, once closed


async def admin_client(sio_client: Any, server: Server, auth: Any, rec: Recorder) -> Any:
    client = sio_client()

    @client.on("*", namespace="/admin")
    def any_event(event: str, *args: Any) -> None:
        rec.put(event, args)

    await client.connect(url(server), namespaces=["/admin"], auth=auth, transports=["websocket"])
    return client


@pytest.mark.parametrize(
    "password", [PASSWORD, PASSWORD_HASH, PASSWORD_HASH.replace("$2b$", "$2y$")])
async def test_password_plain_or_bcrypt(
    server: Server, sio_client: Any, recorder: Recorder, password: str
) -> None:
    instrument(server, auth={"type": "basic", "username": "admin", "password": password})
    for auth in ({"username": "admin", "password": "nope"},
                 {"username": "root", "password": PASSWORD},
                 {"password": PASSWORD}, None, {"sessionId": "0123456789abcdef"}):
        with pytest.raises(Exception, match="failed to connect"):
            await admin_client(sio_client, server, auth, recorder)
    await admin_client(sio_client, server, {"username": "admin", "password": PASSWORD}, recorder)
    (session_id,) = await recorder.get("session")
    assert (await recorder.get("config"))[0]["supportedFeatures"] == ALL_FEATURES
    await admin_client(sio_client, server, {"sessionId": session_id}, recorder)
    assert (await recorder.get("config"))[0]["supportedFeatures"] == ALL_FEATURES


def test_bad_auth_options() -> None:
    io = Server()
    for auth in ({"type": "jwt"}, {"type": "basic", "username": "a"},
                 {"type": "basic", "username": "a", "password": ""}):
        with pytest.raises(ValueError):
            instrument(io, auth=auth)
    with pytest.raises(ValueError):
        instrument(io, mode="staging")


async def test_no_auth_and_stats(server: Server, sio_client: Any, recorder: Recorder) -> None:
    instrument(server, auth=None, mode="production", stats_interval=0.05, server_id="n1")
    await admin_client(sio_client, server, {}, recorder)
    (stats,) = await recorder.get("server_stats")
    assert stats["serverId"] == "n1" and stats["pid"] == os.getpid()
    assert stats["clientsCount"] == 1 and stats["pollingClientsCount"] == 0
    assert {"name": "/admin", "socketsCount": 1} in stats["namespaces"]
    assert recorder.empty("all_sockets")


async def test_dynamic_namespace_children_announced_once(
    server: Server, sio_client: Any, recorder: Recorder
) -> None:
    instrument(server, auth=None)
    server.of(re.compile(r"^/room-\d+$")).on("connection", lambda socket: socket.join("x"))
    await admin_client(sio_client, server, {}, recorder)
    await recorder.get("all_sockets")
    assert (await recorder.get("socket_connected"))[0]["nsp"] == "/admin"  # the admin itself
    for name in ("/room-1", "/room-2", "/room-1"):
        client = sio_client()
        await client.connect(url(server), namespaces=[name], transports=["websocket"])
        (serialized, _) = await recorder.get("socket_connected")
        assert serialized["nsp"] == name
    await asyncio.sleep(0.1)
    assert recorder.empty("socket_connected")  # one announcement per socket


async def test_socket_data_that_json_cannot_carry(
    server: Server, sio_client: Any, recorder: Recorder
) -> None:
    instrument(server, auth=None)

    class State:
        pass

    server.use(lambda socket: socket.data.update(user="alice", state=State(), raw=b"\x00"))
    await admin_client(sio_client, server, {}, recorder)
    await recorder.get("all_sockets")
    assert (await recorder.get("socket_connected"))[0]["nsp"] == "/admin"  # the admin itself
    client = sio_client()
    await client.connect(url(server), transports=["websocket"])
    (serialized, _) = await recorder.get("socket_connected")
    assert serialized["data"] == {"user": "alice", "state": "<State>", "raw": b"\x00"}
    assert _json_safe({1: {2, 3}}) in ({1: [2, 3]}, {"1": [2, 3]})


# ---------------------------------------------------------------- the UI's files


def _fake_ui(tmp_path: Path) -> Path:
    dist = tmp_path / "dist"
    (dist / "js").mkdir(parents=True)
    (dist / "index.html").write_text("<html>admin</html>")
    (dist / "js" / "app.js").write_text("console.log(1)")
    (tmp_path / "secret.txt").write_text("no")
    return dist


async def http_get(
    server: Server, path: str, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                 f"Content-Length: 0\r\n\r\n".encode())
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


async def test_serves_the_ui_files(server: Server, tmp_path: Path) -> None:
    async def app(request: Request) -> HttpResponse:
        return HttpResponse(200, [("Content-Type", "text/plain")], b"app:" + request.path.encode())

    server.engine.http_handler = app
    instrument(server, auth=None, serve_ui_at="/admin/", ui_dir=_fake_ui(tmp_path))
    status, headers, _ = await http_get(server, "/admin")
    assert status == 301 and headers["location"] == "/admin/"
    status, headers, body = await http_get(server, "/admin/")
    assert (status, body) == (200, b"<html>admin</html>")
    assert headers["content-type"].startswith("text/html")
    status, headers, body = await http_get(server, "/admin/js/app.js?v=1")
    assert (status, body) == (200, b"console.log(1)")
    assert headers["content-type"].startswith("text/javascript")
    for bad in ("/admin/../secret.txt", "/admin/%2e%2e/secret.txt", "/admin/js/../../secret.txt",
                "/admin//etc/passwd", "/admin/%2Fetc%2Fpasswd", "/admin/x%00.js",
                "/admin/nothing.js", "/admin/js"):
        assert (await http_get(server, bad))[0] == 404, bad
    assert (await http_get(server, "/admin/", "POST"))[0] == 405
    status, _, body = await http_get(server, "/other")
    assert (status, body) == (200, b"app:/other")  # the handler set before


async def test_ui_not_installed_and_bad_paths(server: Server, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("socketio_core.admin._PACKAGED_UI_DIR", tmp_path / "none")
    with pytest.raises(ValueError):
        instrument(Server(), serve_ui_at="/socket.io/admin/")
    with pytest.raises(FileNotFoundError):
        instrument(Server(), serve_ui_at="/admin/", ui_dir=tmp_path)
    instrument(server, auth=None, serve_ui_at="/ui")
    status, _, body = await http_get(server, "/ui/")
    assert status == 503 and b"npm install @socket.io/admin-ui@0.5.1" in body
    assert (await http_get(server, "/elsewhere"))[0] == 404


# ---------------------------------------------------------------- a fleet through Redis


def _redis_available() -> bool:
    try:
        import redis
    except ImportError:
        return False
    try:
        return bool(redis.Redis(socket_connect_timeout=1).ping())
    except Exception:
        return False


def test_two_node_fleet_through_redis() -> None:
    """The admin logs in to node 1; the clients are on node 2: it sees them (all_sockets,
    the event stream, node 2's stats) and disconnects one, all through the Redis adapter."""
    if not _redis_available():
        pytest.skip("no Redis on 127.0.0.1:6379")
    prefix = f"test-admin-{uuid.uuid4().hex}"
    flags = ["--redis-url", "redis://127.0.0.1:6379/0", "--redis-prefix", prefix]
    with admin_server("python", *flags, "--server-id", "node-1") as one, \
            admin_server("python", *flags, "--server-id", "node-2") as two:
        result = run_driver(one.url, clients_url=two.url)
    ids = result["ids"]
    server_ids = {args[0]["serverId"] for args in events(result, "server_stats")}
    assert server_ids == {"node-1", "node-2"}
    connected = {args[0]["id"]: args[0] for args in events(result, "socket_connected")}
    assert connected[ids["a"]]["rooms"] == [ids["a"]]
    assert ["/", ids["a"], ["ping", 1, {"x": "y"}]] == events(result, "event_received")[0][:3]
    assert ["/", "green", ids["a"]] in [args[:3] for args in events(result, "room_joined")]
    assert result["bReason"] == "io server disconnect"
    assert ["/", ids["b"], "server namespace disconnect"] in [
        args[:3] for args in events(result, "socket_disconnected")]
    assert result["sessionLogin"] == "connected"


def test_fleet_all_sockets_through_redis() -> None:
    """A second admin that logs in after the clients gets node 2's sockets in all_sockets
    (fetch_sockets through the adapter), with their client ids and transports."""
    if not _redis_available():
        pytest.skip("no Redis on 127.0.0.1:6379")
    prefix = f"test-admin-{uuid.uuid4().hex}"
    flags = ["--redis-url", "redis://127.0.0.1:6379/0", "--redis-prefix", prefix]
    with admin_server("python", *flags, "--server-id", "node-1") as one, \
            admin_server("python", *flags, "--server-id", "node-2") as two:
        result = run_node("admin_fleet_sockets.mjs", one.url, two.url, PASSWORD, 20000,
                          timeout=40)
    assert result.get("ok"), {k: v for k, v in result.items() if k != "_stderr"}
    remote = [s for s in result["allSockets"] if s["id"] == result["clientId"]]
    assert len(remote) == 1
    assert remote[0]["nsp"] == "/" and remote[0]["transport"] == "websocket"
    assert len(remote[0]["clientId"]) == 12 and sorted(remote[0]["rooms"]) == sorted(
        [result["clientId"], "red"])

