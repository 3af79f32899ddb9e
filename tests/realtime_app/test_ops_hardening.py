"""Issue 8, the gateway's operations side: development mode only when asked, the dev token
endpoint's Host check, a cap on sockets per user, refused handshakes logged in aggregate,
token expiry, METRICS_TOKEN, security headers and HEAD.

Each attack of the issue is the shape of its test, scaled down; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
import re
from typing import Any

import aiohttp
import orjson
import pytest

from engineio_core import Request
from realtime_app import Config, ConfigError, load_config
from realtime_app.__main__ import main
from realtime_app.auth import Authenticator
from realtime_app.http_api import PAGE_CSP

from .conftest import API_KEY, SECRET, WAIT, GatewayFactory, Harness, eventually
from .test_config import ALL_VARS

pytestmark = pytest.mark.timeout(60)

TOO_MANY = {"message": "Too many connections", "data": {"code": "TOO_MANY_CONNECTIONS"}}
METRICS_TOKEN = "metrics-token-0123456789"


# ---------------------------------------------------------------------- development mode


def test_no_key_and_no_dev_mode_refuses_to_start() -> None:
    # It used to fall back silently to development mode.
    with pytest.raises(ConfigError) as info:
        load_config([], {})
    message = str(info.value)
    for name in ("JWT_SECRET", "JWT_PUBLIC_KEY_FILE", "DEV_MODE"):
        assert name in message


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "example.com"])
def test_dev_mode_on_a_non_loopback_host_refuses_to_start(host: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config([], {"DEV_MODE": "1", "HOST": host})
    assert "DEV_MODE" in str(info.value) and "HOST" in str(info.value)
    assert host in str(info.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost", "LOCALHOST"])
def test_dev_mode_on_loopback(host: str) -> None:
    config = load_config([], {"DEV_MODE": "1", "HOST": host})
    assert config.dev_mode and config.jwt_secret is None


def test_dev_mode_flag() -> None:
    assert load_config(["--dev-mode"], {}).dev_mode
    assert not load_config([], {"JWT_SECRET": SECRET}).dev_mode
    assert not load_config([], {"JWT_SECRET": SECRET, "DEV_MODE": "0"}).dev_mode


def test_dev_mode_with_a_public_key_is_refused(tmp_path: pathlib.Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key_file = tmp_path / "key.pem"
    key_file.write_bytes(rsa.generate_private_key(65537, 2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(ConfigError, match=r"DEV_MODE.*JWT_PUBLIC_KEY_FILE"):
        load_config([], {"DEV_MODE": "1", "JWT_PUBLIC_KEY_FILE": str(key_file),
                         "JWT_ALGORITHMS": "RS256"})


def test_dev_mode_with_a_shared_secret() -> None:
    # A development fleet (scripts/cluster): every node signs dev tokens with one secret.
    config = load_config([], {"DEV_MODE": "1", "JWT_SECRET": SECRET})
    auth = Authenticator(config)
    token = auth.mint_dev_token("alice", "Alice")
    assert Authenticator(config).verify(token).user_id == "alice"  # another node's view


def test_authenticator_without_a_key_outside_dev_mode() -> None:
    # Config() has no key: an empty HMAC key would accept tokens anyone can sign.
    with pytest.raises(ValueError, match="no JWT key"):
        Authenticator(Config())


def test_main_without_a_key_exits_2_naming_the_variables(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ALL_VARS:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "JWT_SECRET" in err and "DEV_MODE" in err
    with pytest.raises(SystemExit) as info:
        main(["--dev-mode", "--host", "0.0.0.0"])
    assert info.value.code == 2
    assert "HOST" in capsys.readouterr().err


async def dev_gateway(gateway_factory: GatewayFactory) -> Harness:
    return await gateway_factory("memory", {"DEV_MODE": "1"}, drop=("JWT_SECRET",))


async def test_dev_mode_logs_how_to_get_a_token_not_the_secret(
    gateway_factory: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    gw = await dev_gateway(gateway_factory)
    secret = gw.app.auth._key
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert secret not in text
    assert f"curl -s -X POST http://127.0.0.1:{gw.app.port}/api/dev/token" in text


def dev_token_request(
    host: str | None, address: str = "127.0.0.1", extra: dict[str, str] | None = None
) -> Request:
    headers = {"content-type": "application/json", **(extra or {})}
    if host is not None:
        headers["host"] = host
    return Request(method="POST", url="/api/dev/token", path="/api/dev/token", query={},
                   headers=headers, body=orjson.dumps({"userId": "mallory"}),
                   remote_address=(address, 40000))


@pytest.mark.parametrize("host", [
    "127.0.0.1", "127.0.0.1:3000", "localhost", "localhost:8080", "LOCALHOST:1",
    "[::1]", "[::1]:3000", "127.1.2.3:80",
])
async def test_dev_token_accepts_loopback_host(host: str, gateway_factory: GatewayFactory) -> None:
    gw = await dev_gateway(gateway_factory)
    response = await gw.app.api.handle(dev_token_request(host))
    assert response.status == 200, (host, response.body)


@pytest.mark.parametrize("host", [
    None, "", "evil.example", "evil.example:3000", "127.0.0.1.nip.io", "localhost.evil.example",
    "localhost:", "localhost:abc", "[::1", "[::1]x", "[::1]:", "192.0.2.1:3000",
    "127.0.0.1@evil.example",
])
async def test_dev_token_refuses_other_hosts(
    host: str | None, gateway_factory: GatewayFactory
) -> None:
    # DNS rebinding: a page of evil.example resolved to 127.0.0.1 reaches the loopback
    # port from the user's browser, with its own name in Host.
    gw = await dev_gateway(gateway_factory)
    response = await gw.app.api.handle(dev_token_request(host))
    assert response.status == 403, host
    assert b"token" not in response.body.replace(b"token endpoint", b"")


@pytest.mark.parametrize("header", ["forwarded", "x-forwarded-for", "x-forwarded-host",
                                    "x-real-ip"])
async def test_dev_token_refuses_proxied_requests(
    header: str, gateway_factory: GatewayFactory
) -> None:
    # Behind a reverse proxy on the same machine every client is "loopback".
    gw = await dev_gateway(gateway_factory)
    response = await gw.app.api.handle(
        dev_token_request("127.0.0.1:3000", extra={header: "127.0.0.1"}))
    assert response.status == 403


async def test_dev_token_over_http_with_a_foreign_host(gateway_factory: GatewayFactory) -> None:
    gw = await dev_gateway(gateway_factory)
    status, _, body = await gw.http("POST", "/api/dev/token", key=None, json={"userId": "m"},
                                    headers={"Host": "rebind.evil.example"})
    assert status == 403, body
    status, _, body = await gw.http("POST", "/api/dev/token", key=None, json={"userId": "m"})
    assert status == 200 and body["token"]


# ---------------------------------------------------------------------- sockets per user


async def test_sockets_per_user_cap(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory("memory", {"MAX_SOCKETS_PER_USER": "3"})
    alices = [await gw.connect("alice", settle=False) for _ in range(3)]
    token = gw.token("alice")
    for _ in range(3):  # the attacker keeps trying: each is refused, nothing is kept
        assert await gw.refused(auth={"token": token}) == TOO_MANY
    assert gw.metric("realtime_rejections_total", reason="too_many_connections") == 3
    assert len(gw.app.io.sockets.adapter.rooms["user:alice"]) == 3
    # another user is not affected, and the existing sockets keep working
    bob = await gw.connect("bob")
    assert (await bob.call("join-room", {"room": "r"}))["success"] is True
    assert (await alices[0].call("join-room", {"room": "r"}))["success"] is True
    # a socket that leaves frees its place
    await alices[0].close()

    async def freed() -> bool:
        return len(gw.app.io.sockets.adapter.rooms.get("user:alice", ())) == 2

    await eventually(freed)
    again = await gw.connect("alice", settle=False)
    assert again.connected


async def test_sockets_per_user_default_is_10(memory_gw: Harness) -> None:
    assert memory_gw.config.max_sockets_per_user == 10
    for _ in range(10):
        await memory_gw.connect("carol", settle=False)
    assert await memory_gw.refused(auth={"token": memory_gw.token("carol")}) == TOO_MANY


async def test_sockets_per_user_zero_is_unlimited(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory("memory", {"MAX_SOCKETS_PER_USER": "0"})
    for _ in range(12):
        await gw.connect("dave", settle=False)
    assert len(gw.app.io.sockets.adapter.rooms["user:dave"]) == 12


# ---------------------------------------------------------------------- refused handshakes


async def polling_connect_flood(url: str, packets: list[str]) -> None:
    """One Engine.IO polling session, then one POST carrying every CONNECT packet."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT)) as http:
        async with http.get(f"{url}/socket.io/?EIO=4&transport=polling") as response:
            text = await response.text()
        sid = orjson.loads(text[1:])["sid"]
        async with http.post(f"{url}/socket.io/?EIO=4&transport=polling&sid={sid}",
                             data="\x1e".join(packets).encode(),
                             headers={"Content-Type": "text/plain;charset=UTF-8"}) as response:
            await response.read()


def refusal_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records
            if r.name.startswith("realtime_app") and "refused" in r.getMessage()]


async def test_refused_handshakes_are_logged_in_aggregate(
    memory_gw: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    # One POST with many CONNECTs with bad tokens: counted, one line, not a line each.
    caplog.set_level(logging.DEBUG)
    refusals = memory_gw.app.metrics.refusals
    refusals.interval = 60.0  # the test flushes by hand, nothing lands in between
    packets = [f'40{{"token":"not-a-jwt-{i}"}}' for i in range(200)]
    packets += ["40{}"] * 5
    await polling_connect_flood(memory_gw.url, packets)

    def counted() -> float:
        return (memory_gw.metric("realtime_rejections_total", reason="invalid_token")
                + memory_gw.metric("realtime_rejections_total", reason="missing_token"))

    async def some_counted() -> bool:
        await asyncio.sleep(0.05)
        before = counted()
        await asyncio.sleep(0.1)
        return before > 0 and counted() == before

    await eventually(some_counted)
    info = [r for r in refusal_lines(caplog) if r.levelno >= logging.INFO]
    assert info == [], [r.getMessage() for r in info]
    refusals.flush()
    lines = [r for r in refusal_lines(caplog) if r.levelno >= logging.INFO]
    assert len(lines) == 1
    invalid = int(memory_gw.metric("realtime_rejections_total", reason="invalid_token"))
    missing = int(memory_gw.metric("realtime_rejections_total", reason="missing_token"))
    text = lines[0].getMessage()
    assert text.startswith(f"refused {invalid + missing} handshake"), text
    assert f"invalid_token: {invalid}" in text
    if missing:
        assert f"missing_token: {missing}" in text
    assert text.endswith("from 1 address"), text
    refusals.flush()  # nothing new: no second line
    assert len([r for r in refusal_lines(caplog) if r.levelno >= logging.INFO]) == 1


async def test_refusal_line_comes_by_itself_after_the_interval(
    memory_gw: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    memory_gw.app.metrics.refusals.interval = 0.1
    await memory_gw.refused(auth={"token": "garbage"})
    await memory_gw.refused(auth=None)

    async def logged() -> list[logging.LogRecord]:
        return refusal_lines(caplog)

    lines = await eventually(logged)
    await asyncio.sleep(0.3)
    lines = refusal_lines(caplog)
    assert [r.getMessage() for r in lines] == [
        "refused 2 handshakes (invalid_token: 1, missing_token: 1) from 1 address"]


def test_refusal_log_remembers_a_bounded_number_of_addresses(
    caplog: pytest.LogCaptureFixture
) -> None:
    from realtime_app.metrics import RefusalLog

    caplog.set_level(logging.INFO)

    async def run() -> None:
        log = RefusalLog(interval=60.0, max_addresses=5)
        for i in range(50):
            log.add("invalid_token", f"192.0.2.{i}")
        assert len(log._addresses) == 5
        log.flush()

    asyncio.run(run())
    assert [r.getMessage() for r in caplog.records if r.name == "realtime_app.metrics"] == [
        "refused 50 handshakes (invalid_token: 50) from 5+ addresses"]


# ---------------------------------------------------------------------- token expiry


async def test_socket_is_disconnected_when_its_token_expires(
    gateway_factory: GatewayFactory
) -> None:
    gw = await gateway_factory("memory", jwt_leeway=0.0)
    alice = await gw.connect("alice", token=gw.token("alice", exp_in=2))
    bob = await gw.connect("bob")
    event = await alice.next("token-expired", timeout=WAIT + 2)
    assert event == {"code": "TOKEN_EXPIRED", "message": "Session expired: sign in again"}

    async def gone() -> bool:
        return not alice.connected and not any(
            s.data["userId"] == "alice" for s in gw.app.io.sockets.sockets.values())

    await eventually(gone)
    assert alice.disconnect_reasons  # python-socketio: "io server disconnect"
    assert gw.metric("realtime_token_expirations_total") == 1
    assert bob.connected and not bob.all("token-expired")


async def test_expiry_waits_for_the_leeway(memory_gw: Harness) -> None:
    # exp plus JWT_LEEWAY (30 s): the moment the handshake itself would refuse the token.
    alice = await memory_gw.connect("alice", token=memory_gw.token("alice", exp_in=1))
    socket = memory_gw.app.io.sockets.sockets[alice.sid]
    timer = memory_gw.app.gateway.expiry_timer(socket)
    assert timer.when() - asyncio.get_running_loop().time() > 20


async def test_refreshed_token_keeps_the_socket(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory("memory", jwt_leeway=0.0)
    alice = await gw.connect("alice", token=gw.token("alice", exp_in=2))
    answer = await alice.call("refresh-token", {"token": gw.token("alice", exp_in=600)})
    assert answer["success"] is True and isinstance(answer["exp"], int)
    await alice.quiet("token-expired", wait=3.0)
    assert alice.connected


async def test_refresh_token_refusals(memory_gw: Harness) -> None:
    alice = await memory_gw.connect("alice")
    socket = memory_gw.app.io.sockets.sockets[alice.sid]
    timer = memory_gw.app.gateway.expiry_timer(socket)
    cases: list[tuple[Any, str]] = [
        ({"token": memory_gw.token("bob")}, "The token is for another user"),
        ({"token": "garbage"}, "Invalid token"),
        ({"token": memory_gw.token("alice", exp_in=-300)}, "Invalid token"),
        ({}, "token must be a string"),
        ("token", "Invalid message format"),
    ]
    for payload, error in cases:
        assert await alice.call("refresh-token", payload) == {"success": False, "error": error}
    # the timer of the first token is still the one armed
    assert memory_gw.app.gateway.expiry_timer(socket) is timer and not timer.cancelled()
    assert socket.data["userId"] == "alice"


async def test_disconnect_cancels_the_expiry_timer(memory_gw: Harness) -> None:
    alice = await memory_gw.connect("alice")
    socket = memory_gw.app.io.sockets.sockets[alice.sid]
    timer = memory_gw.app.gateway.expiry_timer(socket)
    assert timer is not None
    await alice.close()

    async def cancelled() -> bool:
        return timer.cancelled()

    await eventually(cancelled)


# ---------------------------------------------------------------------- /metrics


async def test_metrics_token(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory("memory", {"METRICS_TOKEN": METRICS_TOKEN})
    for headers in ({}, {"Authorization": "Bearer wrong"},
                    {"Authorization": f"Bearer {API_KEY}"},
                    {"Authorization": f"Basic {METRICS_TOKEN}"},
                    {"Authorization": f"Bearer {METRICS_TOKEN}x"}):
        status, answer_headers, body = await gw.http("GET", "/metrics", key=None,
                                                     headers=headers)
        assert status == 401, headers
        assert answer_headers.get("WWW-Authenticate") == "Bearer"
        assert "realtime_" not in str(body)
    status, _, body = await gw.http("GET", "/metrics", key=None,
                                    headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert status == 200 and "realtime_connections_total" in body


async def test_metrics_open_without_token(memory_gw: Harness) -> None:
    status, _, body = await memory_gw.http("GET", "/metrics", key=None)
    assert status == 200 and "realtime_connections_total" in body


# ---------------------------------------------------------------------- headers and HEAD

SECURITY = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY"}


async def test_page_has_a_strict_csp_and_no_inline_script(memory_gw: Harness) -> None:
    status, headers, body = await memory_gw.http("GET", "/", key=None)
    assert status == 200
    assert headers["Content-Security-Policy"] == PAGE_CSP
    for name, value in SECURITY.items():
        assert headers[name] == value
    # The policy allows scripts of this origin only: no inline <script> in the page.
    scripts = re.findall(r"<script\b([^>]*)>", body)
    assert scripts and all("src=" in attributes for attributes in scripts), scripts
    assert "default-src 'none'" in PAGE_CSP and "frame-ancestors 'none'" in PAGE_CSP


@pytest.mark.parametrize(("method", "path", "expected"), [
    ("GET", "/healthz", 200), ("GET", "/metrics", 200), ("GET", "/app.js", 200),
    ("GET", "/nope", 404), ("POST", "/healthz", 405), ("GET", "/stats", 200),
    ("POST", "/api/notifications", 400), ("OPTIONS", "/api/follows", 204),
])
async def test_every_gateway_answer_has_the_headers(
    method: str, path: str, expected: int, memory_gw: Harness
) -> None:
    status, headers, _ = await memory_gw.http(method, path, data=b"{}" if method == "POST"
                                              else None)
    assert status == expected
    for name, value in SECURITY.items():
        assert headers[name] == value, (name, headers)
    if method != "OPTIONS":
        assert "default-src 'none'" in headers["Content-Security-Policy"]


@pytest.mark.parametrize("path", ["/healthz", "/", "/app.js", "/metrics", "/nope"])
async def test_head_is_answered_like_get_without_a_body(path: str, memory_gw: Harness) -> None:
    get_status, get_headers, get_body = await memory_gw.http("GET", path, key=None)
    status, headers, body = await memory_gw.http("HEAD", path, key=None)
    assert status == get_status
    assert body in ("", None)  # None: aiohttp's reading of an empty JSON body
    assert headers["Content-Type"] == get_headers["Content-Type"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    if path != "/metrics":  # the metrics text changes between the two requests
        assert int(headers["Content-Length"]) == len(
            get_body.encode() if isinstance(get_body, str) else orjson.dumps(get_body))
    # the connection is still usable: the gateway answered, it did not abort
    assert (await memory_gw.http("GET", "/healthz", key=None))[0] == 200
