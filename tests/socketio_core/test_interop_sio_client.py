"""Differential interop tests: the real npm ``socket.io-client`` (4.8.4) against the
Node.js reference server (npm ``socket.io`` 4.8.4, kind ``node``) and our scenario
server (``tests/socketio_core/scenario_server.py``, kind ``python``).

Every scenario runs against both kinds; the ``node`` runs prove that the expectation is
the reference's behaviour. The client side is ``tests/interop/sio_client.mjs``, the
reference server ``tests/interop/reference_sio_server.mjs``, the plumbing
``tests/sio_support.py``.

Run: ``.venv/bin/python -m pytest tests/socketio_core/test_interop_sio_client.py``
(``-k node`` for the reference only). Needs ``npm ci`` in ``tests/interop``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ..sio_support import (
    SIO_SERVER_KINDS,
    TRANSPORTS,
    SioServer,
    bin_,
    check_sio_result,
    require_sio_node,
    run_sio_scenario,
    spawn_sio_scenario,
    start_sio_server,
)

pytestmark = pytest.mark.timeout(90)

# Every transport mode where the transport changes what goes over the wire; the default
# (polling then upgrade) elsewhere, to keep the module around a minute.
transports = pytest.mark.parametrize("transport", TRANSPORTS)
ws_and_polling = pytest.mark.parametrize("transport", ["websocket", "polling"])
polling_and_upgrade = pytest.mark.parametrize("transport", ["polling", "upgrade"])

#: Heartbeat of the shared servers: generous, nothing here waits for it.
SHARED_FLAGS: dict[str, Any] = {"ping_interval": 2000, "ping_timeout": 5000}
#: For the ping-timeout (SIGSTOP) tests, detected within ~0.5 s, and the connect timeout.
FAST_FLAGS: dict[str, Any] = {"ping_interval": 300, "ping_timeout": 200, "connect_timeout": 500}


# ------------------------------------------------------------------ servers


@pytest.fixture(scope="module", params=SIO_SERVER_KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    require_sio_node()
    return request.param


@pytest.fixture(scope="module")
def server(kind: str) -> Iterator[SioServer]:
    """One server per kind for the scenarios that do not disturb each other."""
    with start_sio_server(kind, **SHARED_FLAGS) as srv:
        yield srv


@pytest.fixture(scope="module")
def reasons_server(kind: str) -> Iterator[SioServer]:
    """Disconnect reasons are global to a server: keep other scenarios away from them."""
    with start_sio_server(kind, **SHARED_FLAGS) as srv:
        yield srv


@pytest.fixture(scope="module")
def fast_server(kind: str) -> Iterator[SioServer]:
    """Short heartbeat and connect timeout; SIGSTOP tests thaw it when done."""
    with start_sio_server(kind, **FAST_FLAGS) as srv:
        yield srv


@pytest.fixture(scope="module")
def recovery_server(kind: str) -> Iterator[SioServer]:
    with start_sio_server(kind, recovery=2000, **SHARED_FLAGS) as srv:
        yield srv


@pytest.fixture(scope="module")
def msgpack_server(kind: str) -> Iterator[SioServer]:
    with start_sio_server(kind, parser="msgpack", **SHARED_FLAGS) as srv:
        yield srv


# ------------------------------------------------------------------ 1. connect


@transports
def test_connect_hello_and_echo(server: SioServer, transport: str) -> None:
    res = run_sio_scenario("connect", server, transport=transport)
    assert res["transport"] == ("polling" if transport == "polling" else "websocket")
    assert res["helloIdIsSocketId"] is True
    assert res["hello"] == {
        "id": res["id"],
        "nsp": "/",
        "auth": {"token": "abc", "n": 1, "nested": {"list": [1, "two"]}},
        "recovered": False,
    }
    assert res["echo"] == [1, "two", {"three": [3, True, None]}, [1.5, "x"], None, False, ""]
    assert res["echoEqual"] is True


# ------------------------------------------------------------------ 2. multiplexing


@polling_and_upgrade
def test_namespaces_share_one_connection(server: SioServer, transport: str) -> None:
    res = run_sio_scenario("multiplex", server, transport=transport)
    assert res["sameManager"] is True
    main_engine, custom_engine = res["engineIds"]
    assert main_engine and main_engine == custom_engine
    main_id, custom_id = res["ids"]
    assert main_id != custom_id
    assert res["helloMain"] == {"id": main_id, "nsp": "/", "auth": {}, "recovered": False}
    assert res["helloCustom"] == {
        "id": custom_id, "nsp": "/custom", "auth": {}, "recovered": False,
    }
    assert res["echoMain"] == ["on main", 1]
    assert res["echoCustom"] == ["on custom", 2]
    assert res["ackCustom"] == "custom-ack"


# ------------------------------------------------------------------ 3. acks


def test_acks_both_ways(server: SioServer) -> None:
    res = run_sio_scenario("acks", server)
    assert res["multi"] == [1, "two", {"three": 3}, [4]]
    assert res["none"] == []
    assert res["single"] == "solo"
    assert res["needAckArgs"] == [["x", 2]]
    assert res["result"] == {"ok": {"got": ["x", 2]}}
    assert res["quietNeedAckArgs"] == [["y"]]
    assert res["timeoutResult"] == {"error": "timeout"}


# ------------------------------------------------------------------ 4. binary


@transports
def test_nested_binary_both_ways(server: SioServer, transport: str) -> None:
    res = run_sio_scenario("binary", server, transport=transport)
    assert res["echo"] == [
        {
            "a": bin_(bytes([0, 1, 2, 255])),
            "nested": {"list": [bin_(b"hello"), 1, {"deep": bin_(b"\x07\x07\x07")}]},
            "text": "t",
        },
        [bin_(b"\x09"), "x", bin_(b"")],
        bin_(b"top-level"),
    ]
    assert res["ack"] == [
        {"bin": bin_(b"\x01\x02\x03"), "list": [bin_(b"zz"), {"b": bin_(b"\x00")}]},
        bin_(b"*"),
    ]
    assert res["needAck"] == [{"blob": bin_(b"\x05\x06")}, bin_(b"second")]
    assert res["serverAck"] == {
        "ok": {"back": [{"blob": bin_(b"\x05\x06")}, bin_(b"second")], "extra": bin_(b"\x07\x07")}
    }
    assert (res["echoEqual"], res["ackEqual"], res["needAckEqual"], res["serverAckEqual"]) == (
        True, True, True, True,
    )
    assert res["echoIsBuffer"] is True


# ------------------------------------------------------------------ 5. rooms


def test_rooms_and_except(server: SioServer) -> None:
    res = run_sio_scenario("rooms", server)
    ids = res["ids"]
    assert res["joinA"] == sorted([ids["A"], "r1"])
    assert res["joinB"] == sorted([ids["B"], "r1"])
    assert res["leaveB"] == [ids["B"]]
    # m1: A to-room r1 -> B only. m2: A to-all-except r1 -> C only. m3: C (not in r1)
    # to-all-except r1 -> C itself. After B left: m4 A to-room r1 -> nobody,
    # m5 C to-room r1 -> A only.
    assert res["logs"] == {
        "A": [["room-message", "m5"]],
        "B": [["room-message", "m1", {"n": 1}]],
        "C": [["except-message", "m2"], ["except-message", "m3"]],
    }


# ------------------------------------------------------------------ 6. volatile


def test_volatile_delivered_when_connected(server: SioServer) -> None:
    res = run_sio_scenario("volatile", server)
    assert res["got"] == ["v1", {"n": 2}]


# ------------------------------------------------------------------ 7. middleware refusal


def test_middleware_refusal_with_data(server: SioServer) -> None:
    res = run_sio_scenario("private", server)
    assert res["refused"] == {"message": "not authorized", "data": {"code": 42}}
    assert res["refusedWrong"] == {"message": "not authorized", "data": {"code": 42}}
    assert res["badActive"] is False
    assert res["hello"]["nsp"] == "/private"
    assert res["hello"]["auth"] == {"token": "secret"}
    assert res["echo"] == "inside"


# ------------------------------------------------------------------ 8. dynamic namespaces


def test_dynamic_namespaces(server: SioServer) -> None:
    res = run_sio_scenario("dynamic", server)
    assert res["hello"]["nsp"] == "/dynamic-1"
    assert res["hello2"]["nsp"] == "/dynamic-22"
    assert res["echo"] == "dyn"
    assert res["refused"] == {"message": "Invalid namespace", "data": None}


# ------------------------------------------------------------------ 9. broadcast acks


@pytest.mark.parametrize("silent", [False, True], ids=["all-ack", "one-silent"])
def test_broadcast_ack(server: SioServer, silent: bool) -> None:
    res = run_sio_scenario("broadcast-ack", server, silent=silent)
    ids = res["ids"]
    assert res["count"] == 3
    assert res["needAckCalls"] == [1, 1, 1]
    if silent:
        assert res["result"] == {
            "error": "timeout",
            "responses": sorted([ids["A"], ids["B"]]),
        }
    else:
        assert res["result"] == {"responses": sorted(ids.values())}


# ------------------------------------------------------------------ 10. disconnect reasons


@ws_and_polling
def test_disconnect_reasons(reasons_server: SioServer, transport: str) -> None:
    res = run_sio_scenario("reasons", reasons_server, transport=transport)
    assert res["disconnectMe"]["client"]["reason"] == "io server disconnect"
    assert res["disconnectMe"]["server"] == ["server namespace disconnect"]
    assert res["disconnectMe"]["active"] is False
    # disconnect(true): DISCONNECT for the namespace first, then the connection closes.
    assert res["closeMe"]["client"]["reason"] == "io server disconnect"
    assert res["closeMe"]["server"] == ["server namespace disconnect"]
    assert res["clientDisconnect"]["client"]["reason"] == "io client disconnect"
    assert res["clientDisconnect"]["server"] == ["client namespace disconnect"]
    assert res["engineClose"]["client"]["reason"] == "forced close"
    assert res["engineClose"]["server"] == ["transport close"]
    assert res["leaveOneNamespace"]["client"]["reason"] == "io client disconnect"
    assert res["leaveOneNamespace"]["server"] == ["client namespace disconnect"]
    assert res["leaveOneNamespace"]["otherStillConnected"] is True
    assert res["leaveOneNamespace"]["stillThere"] == "still"


@ws_and_polling
def test_frozen_server_gives_ping_timeout(fast_server: SioServer, transport: str) -> None:
    srv = fast_server
    with spawn_sio_scenario("wait-disconnect", srv, transport=transport) as proc:
        proc.wait_for_line("READY", timeout=15)
        srv.freeze()
        try:
            res = check_sio_result(proc.result(timeout=20), srv, "wait-disconnect (SIGSTOP)")
        finally:
            srv.thaw()
    assert res["reason"] == "ping timeout"
    assert res["engine"] == "ping timeout"


@ws_and_polling
def test_stopped_server_gives_transport_close(kind: str, transport: str) -> None:
    with start_sio_server(kind, **SHARED_FLAGS) as srv, spawn_sio_scenario(
        "wait-disconnect", srv, transport=transport
    ) as proc:
        proc.wait_for_line("READY", timeout=15)
        rc = srv.terminate()
        res = check_sio_result(proc.result(timeout=20), srv, "wait-disconnect (SIGTERM)")
    if transport == "websocket":
        assert res["reason"] == "transport close"
    else:
        # The reference answers a pending long-poll with a CLOSE packet ("transport close")
        # but exits before the next poll arrives if none is pending ("transport error"):
        # a race, both happen with the node server.
        assert res["reason"] in ("transport close", "transport error")
    assert res["engine"] == res["reason"]
    assert rc == 0, srv.diagnostics()


# ------------------------------------------------------------------ 11. recovery


@pytest.mark.parametrize(
    "drop,transport",
    [
        ("engine-close", "websocket"),
        ("transport-close", "websocket"),
        ("engine-close", "polling"),
    ],
)
def test_connection_state_recovery(recovery_server: SioServer, drop: str, transport: str) -> None:
    res = run_sio_scenario("recovery", recovery_server, drop=drop, transport=transport)
    expected_reason = "forced close" if drop == "engine-close" else "transport close"
    assert res["dropped"]["reason"] == expected_reason
    assert res["attempts"] == 1
    sid = res["idBefore"]
    assert res["hello1"] == {"id": sid, "nsp": "/", "auth": {}, "recovered": False}
    assert res["recovered"] is True
    assert res["idAfter"] == sid
    assert res["hello2"]["id"] == sid
    assert res["hello2"]["recovered"] is True
    # the CONNECT of a recovering client carries its pid and the last offset
    assert set(res["hello2"]["auth"]) == {"pid", "offset"}
    # the missed room message is replayed (with its offset as the last argument),
    # before the connection handler runs again
    assert res["missed"][:2] == ["missed", {"x": 1}]
    assert len(res["missed"]) == 3 and isinstance(res["missed"][2], str)
    assert res["eventsAfterDrop"] == ["room-message", "hello"]
    assert res["dataBefore"] == res["dataAfter"] == {"k": "v", "n": [1, 2]}
    assert res["joined"] == sorted([sid, "r1"])
    assert res["rooms"] == sorted([sid, "r1"])
    assert res["count"] == 2


def test_recovery_after_the_session_expired(kind: str) -> None:
    # Away for longer than maxDisconnectionDuration: a new socket, nothing restored.
    with start_sio_server(kind, recovery=300, **SHARED_FLAGS) as srv:
        res = run_sio_scenario("recovery", srv, awayMs=900)
    assert res["recovered"] is False
    assert res["idAfter"] != res["idBefore"]
    assert res["hello2"]["recovered"] is False
    assert res["hello2"]["id"] == res["idAfter"]
    assert res["eventsAfterDrop"] == ["hello"]
    assert res["dataAfter"] == {}
    assert res["rooms"] == [res["idAfter"]]


# ------------------------------------------------------------------ 12. no CONNECT


def test_client_without_connect_is_closed(fast_server: SioServer) -> None:
    res = run_sio_scenario("no-connect", fast_server)
    assert res["sid"]
    assert res["messages"] == []
    assert res["reason"] == "transport close"


# ------------------------------------------------------------------ 13. msgpack


@ws_and_polling
def test_msgpack_parser(msgpack_server: SioServer, transport: str) -> None:
    res = run_sio_scenario("msgpack", msgpack_server, transport=transport)
    assert res["helloIdIsSocketId"] is True
    assert res["hello"]["auth"] == {"via": "msgpack"}
    assert res["echo"] == [
        1,
        "two",
        {"three": [3, True, None]},
        1.5,
        bin_(b"\x00\x01\xff"),
        {"nested": {"bin": bin_(b"deep")}},
    ]
    assert res["ack"] == ["a", bin_(b"\x09\x08")]
    assert res["serverAck"] == {"ok": {"got": ["x", bin_(b"\x03")]}}
