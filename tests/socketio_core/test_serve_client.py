"""``Server(serve_client=True)`` against Node's ``serveClient`` (socket.io 4.8.4).

The same requests go to ``node tests/interop/serve_client_node.mjs`` and to
``python -m socketio_core --serve-client``; statuses, the caching headers and the bodies
(decompressed) must agree. Known differences, asserted as such: Node answers ``br`` when
the client accepts it (no brotli in the standard library: we answer gzip), and we add
``Vary: Accept-Encoding``.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import json
import os
import sys
import zlib
from collections.abc import Iterator

import pytest

from socketio_core.client_bundle import CLIENT_FILES, _accepted_coding, find_client_dist
from tests.interop_support import INTEROP_DIR, REPO_ROOT, ServerHandle, start_process
from tests.sio_support import require_sio_node

VERSION = json.loads((INTEROP_DIR / "node_modules/socket.io/package.json").read_text())[
    "version"] if (INTEROP_DIR / "node_modules/socket.io/package.json").is_file() else "?"


@contextlib.contextmanager
def serving(kind: str, *flags: str) -> Iterator[ServerHandle]:
    if kind == "node":
        argv = ["node", str(INTEROP_DIR / "serve_client_node.mjs"), *flags]
        cwd = INTEROP_DIR
    else:
        argv = [sys.executable, "-m", "socketio_core", "--port", "0", "--serve-client", *flags]
        cwd = REPO_ROOT
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    with start_process(kind, argv, path="/socket.io/", cwd=cwd, env=env) as server:
        yield server


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, ServerHandle]]:
    require_sio_node()
    try:
        find_client_dist()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    with serving("node") as node, serving("python") as python:
        yield {"node": node, "python": python}


def fetch(server: ServerHandle, path: str, method: str = "GET",
          **headers: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        conn.request(method, path, headers={k.replace("_", "-"): v for k, v in headers.items()})
        response = conn.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        conn.close()


def decoded(headers: dict[str, str], body: bytes) -> bytes:
    coding = headers.get("content-encoding")
    if coding == "gzip":
        return gzip.decompress(body)
    if coding == "deflate":
        return zlib.decompress(body)
    assert coding is None, coding
    return body


@pytest.mark.parametrize("name", sorted(CLIENT_FILES))
def test_every_file_as_node_serves_it(servers: dict[str, ServerHandle], name: str) -> None:
    answers = {kind: fetch(server, f"/socket.io/{name}") for kind, server in servers.items()}
    node, ours = answers["node"], answers["python"]
    assert node[0] == ours[0] == 200
    for header in ("content-type", "cache-control", "etag"):
        assert ours[1][header] == node[1][header], header
    assert ours[1]["etag"] == f'"{VERSION}"'
    assert ours[1]["content-type"].startswith(
        "application/json" if name.endswith(".map") else "application/javascript")
    assert ours[2] == node[2]
    assert "content-encoding" not in ours[1] and "content-encoding" not in node[1]


@pytest.mark.parametrize("if_none_match, status", [
    (f'"{VERSION}"', 304), (f'W/"{VERSION}"', 304), ('"0.0.1"', 200), ("*", 200),
])
def test_etag_revalidation(servers: dict[str, ServerHandle], if_none_match: str,
                           status: int) -> None:
    for kind, server in servers.items():
        code, _headers, body = fetch(server, "/socket.io/socket.io.min.js",
                                    If_None_Match=if_none_match)
        assert code == status, kind
        if status == 304:
            assert body == b"", kind


@pytest.mark.parametrize("accept", [
    "gzip", "deflate", "gzip, deflate", "deflate, gzip", "deflate;q=1, gzip;q=0.5",
    "gzip, deflate, br, zstd",  # what Chromium sends
    "identity", "gzip;q=0", "compress",
])
def test_compression(servers: dict[str, ServerHandle], accept: str) -> None:
    answers = {kind: fetch(server, "/socket.io/socket.io.js", Accept_Encoding=accept)
               for kind, server in servers.items()}
    node, ours = answers["node"], answers["python"]
    assert ours[0] == node[0] == 200
    assert ours[1].get("content-encoding") == node[1].get("content-encoding")
    assert decoded(*ours[1:]) == decoded(*node[1:])
    assert ours[1]["vary"] == "Accept-Encoding"


def test_brotli_is_answered_with_gzip(servers: dict[str, ServerHandle]) -> None:
    accept = "br, gzip, deflate"  # a client that prefers brotli
    node = fetch(servers["node"], "/socket.io/socket.io.esm.min.js", Accept_Encoding=accept)
    ours = fetch(servers["python"], "/socket.io/socket.io.esm.min.js", Accept_Encoding=accept)
    assert node[1]["content-encoding"] == "br"
    assert ours[1]["content-encoding"] == "gzip"
    assert gzip.decompress(ours[2]) == fetch(servers["node"], "/socket.io/socket.io.esm.min.js")[2]


@pytest.mark.parametrize("path", [
    "/socket.io/socket.io.js?v=4",         # a cache-busting query: still the file
    "/socket.io/socket.io.js",             # HEAD below
])
def test_query_and_head(servers: dict[str, ServerHandle], path: str) -> None:
    for method in ("GET", "HEAD"):
        answers = {kind: fetch(server, path, method) for kind, server in servers.items()}
        assert answers["python"][0] == answers["node"][0] == 200, method
        assert answers["python"][1]["etag"] == answers["node"][1]["etag"]
        if method == "HEAD":
            assert answers["python"][2] == answers["node"][2] == b""


@pytest.mark.parametrize("path", [
    "/socket.io/socket.io.jsx", "/socket.io/socket.io.js/", "/socket.io/engine.io.js",
    "/socket.io/../socket.io.js", "/socket.io/%73ocket.io.js", "/socket.io/",
])
def test_other_names_go_to_the_engine(servers: dict[str, ServerHandle], path: str) -> None:
    statuses = {kind: fetch(server, path)[0] for kind, server in servers.items()}
    assert statuses["python"] == statuses["node"], statuses
    assert statuses["python"] != 200


def test_custom_path_and_cors() -> None:
    require_sio_node()
    origin = "http://app.example"
    with serving("node", "--path", "/rt", "--cors", origin) as node, \
            serving("python", "--path", "/rt/", "--cors", origin) as python:
        for server in (node, python):
            server.path = "/rt/"
        for path, status in (("/rt/socket.io.js", 200), ("/rt/socket.io.min.js.map", 200)):
            answers = [fetch(s, path, Origin=origin) for s in (node, python)]
            assert [a[0] for a in answers] == [status, status]
            assert answers[0][2] == answers[1][2]
            assert (answers[1][1]["access-control-allow-origin"]
                    == answers[0][1]["access-control-allow-origin"] == origin)
        # A script is not a session: another origin still gets the file, with the same
        # CORS answer as from Node (which does not name that origin).
        answers = [fetch(s, "/rt/socket.io.js", Origin="http://evil.example")
                   for s in (node, python)]
        assert [a[0] for a in answers] == [200, 200]
        assert (answers[1][1].get("access-control-allow-origin")
                == answers[0][1].get("access-control-allow-origin"))
        assert answers[1][1].get("access-control-allow-origin") != "http://evil.example"


def test_off_by_default() -> None:
    from socketio_core import Server

    assert Server().engine.path_file_handler is None
    assert Server(serve_client=True).engine.path_file_handler is not None


@pytest.mark.parametrize("header, coding", [
    ("", None), ("identity", None), ("br", None), ("gzip", "gzip"), ("GZIP;q=0.5", "gzip"),
    ("deflate, gzip", "deflate"), ("gzip, deflate", "gzip"), ("gzip;q=0, deflate", "deflate"),
    ("*", "gzip"), ("deflate, *", "deflate"), ("*;q=0.1, deflate;q=0.9", "deflate"),
    ("gzip;q=bad", None), (",,", None), ("gzip;q=0.5, gzip;q=1", "gzip"),
])
def test_accept_encoding_choice(header: str, coding: str | None) -> None:
    assert _accepted_coding(header) == coding
