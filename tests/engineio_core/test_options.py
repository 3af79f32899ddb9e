"""EngineServer options the differential suites do not reach: permessage-deflate, the io
cookie, allow_request, header hooks, CORS rules, the fallback HTTP handler, shutdown."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from websockets.asyncio.client import connect

from engineio_core import CookieOptions, CorsOptions, EngineServer, Forbidden, HttpResponse

from .raw_support import http_request

HANDSHAKE = "/engine.io/?EIO=4&transport=polling"


@pytest.fixture
async def make_server() -> AsyncIterator[Callable[..., Any]]:
    servers: list[EngineServer] = []

    async def make(**options: Any) -> EngineServer:
        server = EngineServer(**options)

        @server.on("message")
        def echo(session: Any, data: Any) -> None:
            session.send(data)

        await server.start("127.0.0.1", 0)
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.stop()


def ws_url(server: EngineServer, query: str = "") -> str:
    return f"ws://127.0.0.1:{server.port}/engine.io/?EIO=4&transport=websocket{query}"


async def test_permessage_deflate_negotiated_and_used(make_server: Any) -> None:
    server = await make_server(per_message_deflate=True)
    async with connect(ws_url(server), compression="deflate") as ws:
        assert "permessage-deflate" in ws.response.headers.get("Sec-WebSocket-Extensions", "")
        assert str(await ws.recv()).startswith("0{")
        await ws.send("4" + "x" * 5000)
        assert await ws.recv() == "4" + "x" * 5000
        await ws.send(b"\x00\x01" * 100)
        assert await ws.recv() == b"\x00\x01" * 100


async def test_permessage_deflate_off_by_default(make_server: Any) -> None:
    server = await make_server()
    async with connect(ws_url(server), compression="deflate") as ws:
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        assert str(await ws.recv()).startswith("0{")


async def test_io_cookie_on_handshake_only(make_server: Any) -> None:
    server = await make_server(cookie=CookieOptions(same_site="Strict"))
    res = await http_request(server.port, "GET", HANDSHAKE)
    sid = re.search(r'"sid":"([^"]+)"', res.body.decode()).group(1)  # type: ignore[union-attr]
    cookie = dict(res.headers).get("Set-Cookie")
    assert cookie == f"io={sid}; Path=/; HttpOnly; SameSite=Strict"
    res = await http_request(server.port, "POST", f"{HANDSHAKE}&sid={sid}", body="4hi")
    assert res.status == 200 and "Set-Cookie" not in dict(res.headers)


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_allow_request_refuses_with_message(make_server: Any, asynchronous: bool) -> None:
    def decide(request: Any) -> bool:
        if request.headers.get("x-token") == "no":
            raise Forbidden("go away")
        return request.headers.get("x-token") == "yes"

    async def decide_later(request: Any) -> bool:
        await asyncio.sleep(0)
        return decide(request)

    server = await make_server(allow_request=decide_later if asynchronous else decide)
    ok = await http_request(server.port, "GET", HANDSHAKE, headers=[("X-Token", "yes")])
    assert ok.status == 200
    refused = await http_request(server.port, "GET", HANDSHAKE, headers=[("X-Token", "maybe")])
    assert (refused.status, refused.body) == (403, b'{"code":4,"message":"Forbidden"}')
    custom = await http_request(server.port, "GET", HANDSHAKE, headers=[("X-Token", "no")])
    assert (custom.status, custom.body) == (403, b'{"code":4,"message":"go away"}')
    with pytest.raises(Exception):  # noqa: B017 - the upgrade is answered 400
        async with connect(ws_url(server), additional_headers={"X-Token": "no"}):
            pass


async def test_header_hooks(make_server: Any) -> None:
    server = await make_server()
    seen: list[str] = []

    @server.on("initial_headers")
    def initial(headers: list[tuple[str, str]], request: Any) -> None:
        headers.append(("X-Initial", "1"))

    @server.on("headers")
    def every(headers: list[tuple[str, str]], request: Any) -> None:
        seen.append(request.method)
        headers.append(("X-Every", "1"))

    first = await http_request(server.port, "GET", HANDSHAKE)
    assert dict(first.headers).get("X-Initial") == "1"
    assert dict(first.headers).get("X-Every") == "1"
    sid = re.search(r'"sid":"([^"]+)"', first.body.decode()).group(1)  # type: ignore[union-attr]
    post = await http_request(server.port, "POST", f"{HANDSHAKE}&sid={sid}", body="4hi")
    assert "X-Initial" not in dict(post.headers)
    assert dict(post.headers).get("X-Every") == "1"
    async with connect(ws_url(server)) as ws:
        assert ws.response.headers.get("X-Initial") == "1"
    assert seen[:2] == ["GET", "POST"]


@pytest.mark.parametrize(
    ("rule", "origin", "expected"),
    [
        ("*", "https://a.example", "*"),
        (True, "https://a.example", "https://a.example"),
        ("https://fixed.example", "https://a.example", "https://fixed.example"),
        (["https://a.example", re.compile(r"\.b\.example$")], "https://x.b.example",
         "https://x.b.example"),
        (["https://a.example"], "https://evil.example", None),
        (lambda origin: origin.endswith(".ok"), "https://site.ok", "https://site.ok"),
        (lambda origin: origin.endswith(".ok"), "https://site.no", None),
    ],
)
async def test_cors_origin_rules(make_server: Any, rule: Any, origin: str,
                                 expected: str | None) -> None:
    server = await make_server(cors=CorsOptions(origin=rule, credentials=rule != "*",
                                                exposed_headers=("X-Id",), max_age=60))
    res = await http_request(server.port, "GET", HANDSHAKE, headers=[("Origin", origin)])
    headers = dict(res.headers)
    assert headers.get("Access-Control-Allow-Origin") == expected
    if expected is not None and rule != "*":
        assert headers.get("Access-Control-Allow-Credentials") == "true"
        assert headers.get("Access-Control-Expose-Headers") == "X-Id"
    pre = await http_request(server.port, "OPTIONS", HANDSHAKE, headers=[
        ("Origin", origin), ("Access-Control-Request-Method", "POST"),
        ("Access-Control-Request-Headers", "content-type")])
    assert pre.status == 204
    assert dict(pre.headers).get("Access-Control-Allow-Origin") == expected
    assert dict(pre.headers).get("Access-Control-Max-Age") == "60"


async def test_fallback_http_handler_and_404(make_server: Any) -> None:
    async def app(request: Any) -> HttpResponse:
        if request.path == "/boom":
            raise RuntimeError("internal detail")
        return HttpResponse(200, [("Content-Type", "text/plain")], f"hi {request.path}".encode())

    plain = await make_server()
    assert (await http_request(plain.port, "GET", "/elsewhere")).status == 404
    server = await make_server(http_handler=app)
    res = await http_request(server.port, "GET", "/hello")
    assert (res.status, res.body) == (200, b"hi /hello")
    boom = await http_request(server.port, "GET", "/boom")
    assert boom.status == 500 and b"internal detail" not in boom.body


async def test_stop_closes_sessions_with_reason_and_refuses_new(make_server: Any) -> None:
    server = await make_server()
    reasons: list[str] = []
    server.on("close", lambda session, reason: reasons.append(reason))
    async with connect(ws_url(server)) as ws:
        assert str(await ws.recv()).startswith("0{")
        await server.stop()
        with pytest.raises(Exception):  # noqa: B017 - the server closed the connection
            await asyncio.wait_for(ws.recv(), 5)
    assert reasons == ["server shutting down"]


async def test_websocket_transport_query_without_upgrade_for_websocket_session(
    make_server: Any,
) -> None:
    server = await make_server()
    async with connect(ws_url(server)) as ws:
        sid = re.search(r'"sid":"([^"]+)"', str(await ws.recv())).group(1)  # type: ignore[union-attr]
        res = await http_request(
            server.port, "GET", f"/engine.io/?EIO=4&transport=websocket&sid={sid}"
        )
        assert (res.status, res.body) == (400, b'{"code":3,"message":"Bad request"}')
        await ws.send("4still here")
        assert await ws.recv() == "4still here"
