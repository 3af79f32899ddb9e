"""Differential interop tests: the real npm ``engine.io-client`` (6.6.8) against
the Node.js reference server (npm ``engine.io`` 6.6.12, kind ``node``) and our
server (``python -m engineio_core``, kind ``python``).

Every scenario runs against both kinds and must pass against both; the
``node`` runs validate the scenarios themselves. The client side lives in
``tests/interop/eio_client.mjs``, the reference server in
``tests/interop/reference_eio_server.mjs``, the plumbing in
``tests/interop_support.py``.

Run: ``.venv/bin/python -m pytest tests/engineio_core/test_interop_eio_client.py``
(``-k node`` for the reference only). Needs ``npm ci`` in ``tests/interop``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parents[1]))  # tests/, for interop_support

from interop_support import (
    SERVER_KINDS,
    check_result,
    require_node,
    run_eio_scenario,
    scenario_options,
    spawn_node,
    start_server,
)

TRANSPORTS = ("polling", "websocket")
KIND_AND_TRANSPORT = [(k, t) for k in SERVER_KINDS for t in TRANSPORTS]

kinds = pytest.mark.parametrize("server_kind", SERVER_KINDS)
kinds_and_transports = pytest.mark.parametrize("server_kind,transport", KIND_AND_TRANSPORT)


@pytest.fixture(autouse=True)
def _needs_node() -> None:
    require_node()


# ------------------------------------------------------------------ echo


@kinds
def test_polling_echo(server_kind: str) -> None:
    with start_server(server_kind) as srv:
        res = run_eio_scenario("polling-echo", srv)
    assert res["transport"] == "polling"
    assert res["echoed"] == "hello"
    assert isinstance(res["id"], str) and res["id"]


@kinds
def test_websocket_echo(server_kind: str) -> None:
    with start_server(server_kind) as srv:
        res = run_eio_scenario("websocket-echo", srv)
    assert res["transport"] == "websocket"
    assert res["echoed"] == "hello"
    assert isinstance(res["id"], str) and res["id"]


@kinds
def test_upgrade(server_kind: str) -> None:
    with start_server(server_kind) as srv:
        res = run_eio_scenario("upgrade", srv)
    assert res["openTransport"] == "polling"
    assert res["upgradedTo"] == "websocket"
    assert res["transport"] == "websocket"
    # pre-upgrade + during-upgrade + post-upgrade + final, all echoed in order
    assert res["sentDuringUpgrade"] == 5
    assert res["received"] == res["sent"] == 16
    assert res["inOrder"] is True


@kinds_and_transports
def test_binary(server_kind: str, transport: str) -> None:
    with start_server(server_kind) as srv:
        res = run_eio_scenario("binary", srv, transport=transport)
    assert res["transport"] == transport
    kinds_seen = [m["kind"] for m in res["messages"]]
    assert kinds_seen == ["binary", "text", "binary"]
    assert res["messages"][0]["length"] == 256
    assert res["messages"][2]["hex"] == "deadbeef"
    assert res["binaryIdentical"] is True and res["textIdentical"] is True


@pytest.mark.parametrize(
    "server_kind,max_payload",
    [(k, mp) for k in SERVER_KINDS for mp in (1_000_000, 1000)],
    ids=[f"{k}-{name}" for k in SERVER_KINDS for name in ("default", "max-payload-1000")],
)
def test_ordered_polling(server_kind: str, max_payload: int) -> None:
    # With max-payload 1000 the client has to split its write buffer into many
    # POST requests (it honours the handshake's maxPayload).
    with start_server(server_kind, max_payload=max_payload) as srv:
        res = run_eio_scenario("ordered-polling", srv, count=1000)
    assert res["transport"] == "polling"
    assert res["sent"] == res["received"] == 1000
    assert res["inOrder"] is True


# ------------------------------------------------------------- heartbeat


@kinds_and_transports
def test_heartbeat_alive(server_kind: str, transport: str) -> None:
    # Several ping/pong rounds go by and the session stays open.
    with start_server(server_kind, ping_interval=300, ping_timeout=2000) as srv:
        res = run_eio_scenario("heartbeat-alive", srv, transport=transport, pings=3)
    assert res["pings"] >= 3
    assert res["readyState"] == "open"


@kinds_and_transports
def test_heartbeat_timeout(server_kind: str, transport: str) -> None:
    # Freeze the server right after the handshake: it stops pinging, so the
    # client must give up with "ping timeout" (pingInterval + pingTimeout).
    with start_server(server_kind, ping_interval=300, ping_timeout=200) as srv:
        opts = scenario_options(srv, transport=transport, timeoutMs=15000)
        with spawn_node("eio_client.mjs", "heartbeat-timeout", srv.url, opts) as client:
            client.wait_for_line("OPEN", timeout=20)
            srv.freeze()
            try:
                res = client.result(timeout=30)
            finally:
                srv.thaw()
        check_result(res, srv, f"heartbeat-timeout over {transport}")
    assert res["transport"] == transport
    assert res["reason"] == "ping timeout"


# ------------------------------------------------------------ max payload


@kinds_and_transports
def test_max_payload(server_kind: str, transport: str) -> None:
    # Behaviour of the reference (engine.io 6.6.12) that we require too:
    # - polling: the oversized POST gets HTTP 413, the client closes with
    #   "transport error" (TransportError "xhr post error", description 413);
    # - websocket: the server closes the WebSocket with 1009 (message too big),
    #   the client closes with "transport close".
    with start_server(server_kind, max_payload=1000) as srv:
        res = run_eio_scenario("max-payload", srv, transport=transport, size=5000)
    assert res["handshakeMaxPayload"] == 1000
    assert res["echoed"] is False, "the oversized message must not be echoed"
    assert res["closed"] is True
    details = res["details"] or {}
    if transport == "polling":
        assert res["reason"] == "transport error"
        assert details.get("message") == "xhr post error"
        assert details.get("description") == 413
    else:
        assert res["reason"] == "transport close"
        assert (details.get("context") or {}).get("code") == 1009


@kinds_and_transports
def test_under_max_payload_is_echoed(server_kind: str, transport: str) -> None:
    # Control for test_max_payload: a message that fits is echoed normally.
    with start_server(server_kind, max_payload=1000) as srv:
        res = run_eio_scenario("max-payload", srv, transport=transport, size=500)
    assert res["echoed"] is True
    assert res["closed"] is False


# -------------------------------------------------------------- handshake


def _expected_upgrades(transport: str, server_transports: tuple[str, ...]) -> list[str]:
    if transport == "polling" and "websocket" in server_transports:
        return ["websocket"]
    return []


@kinds_and_transports
def test_handshake(server_kind: str, transport: str) -> None:
    with start_server(server_kind, ping_interval=300, ping_timeout=2000, max_payload=123456) as srv:
        res = run_eio_scenario("handshake", srv, transport=transport)
    hs = res["handshake"]
    assert set(hs) == {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}
    assert isinstance(hs["sid"], str) and hs["sid"]
    assert hs["sid"] == res["id"]
    assert hs["upgrades"] == _expected_upgrades(transport, TRANSPORTS)
    assert hs["pingInterval"] == 300
    assert hs["pingTimeout"] == 2000
    assert hs["maxPayload"] == 123456
    assert res["transport"] == transport


@kinds
def test_handshake_polling_only_server(server_kind: str) -> None:
    # --transports polling: nothing to upgrade to.
    with start_server(server_kind, transports="polling") as srv:
        res = run_eio_scenario("handshake", srv, transport="polling")
    assert res["handshake"]["upgrades"] == []
    assert res["transport"] == "polling"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_handshake_same_shape_as_reference(transport: str) -> None:
    """Direct differential check: same keys, value types and values (except sid)."""
    results = {}
    for kind in SERVER_KINDS:
        with start_server(kind, ping_interval=300, ping_timeout=2000, max_payload=4321) as srv:
            results[kind] = run_eio_scenario("handshake", srv, transport=transport)["handshake"]
    ref, ours = results["node"], results["python"]
    assert sorted(ours) == sorted(ref)
    assert {k: type(v).__name__ for k, v in ours.items()} == {
        k: type(v).__name__ for k, v in ref.items()
    }
    assert {k: v for k, v in ours.items() if k != "sid"} == {
        k: v for k, v in ref.items() if k != "sid"
    }
    # engine.io uses 20-character base64id session ids; require a non-empty URL-safe id.
    assert ours["sid"] and all(c.isalnum() or c in "-_" for c in ours["sid"])


# ------------------------------------------------------------ process CLI


@kinds
def test_server_exits_cleanly_on_sigterm(server_kind: str) -> None:
    with start_server(server_kind) as srv:
        run_eio_scenario("websocket-echo", srv)
        rc = srv.stop()
    assert rc == 0, srv.diagnostics()
