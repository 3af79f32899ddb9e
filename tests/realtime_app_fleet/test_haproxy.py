"""The checked-in HAProxy configuration in front of two gateway nodes, without clients.

What ``deploy/haproxy.cfg`` promises: health checks on ``GET /readyz`` take a dead node out
and put it back, requests keep being answered meanwhile (``retries`` + ``redispatch``), and
the first response sets the ``SERVERID`` cookie that makes long-polling sticky.
"""

from __future__ import annotations

import http.client
import time
from pathlib import Path

from .fleet import HAPROXY_CONFIG, Fleet, render_haproxy_config, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]


def raw_request(port: int, path: str, cookie: str | None = None, method: str = "GET",
                body: str | None = None) -> tuple[int, dict[str, str], str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        headers = {"Cookie": cookie} if cookie else {}
        if body is not None:
            headers["Content-Type"] = "text/plain;charset=UTF-8"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return (response.status, {k.lower(): v for k, v in response.getheaders()},
                response.read().decode(errors="replace"))
    finally:
        conn.close()


def raw_get(port: int, path: str, cookie: str | None = None) -> tuple[int, dict[str, str], str]:
    return raw_request(port, path, cookie)


def test_rendered_config_keeps_everything_but_the_server_lines() -> None:
    template = HAPROXY_CONFIG.read_text()
    rendered = render_haproxy_config(template, [("node1", "127.0.0.1:4001"),
                                                ("node2", "127.0.0.1:4002"),
                                                ("node3", "127.0.0.1:4003")])
    servers = [line.strip() for line in rendered.splitlines() if line.strip().startswith("server ")]
    assert servers == [f"server node{i} 127.0.0.1:400{i} cookie node{i}" for i in (1, 2, 3)]
    def others(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.strip().startswith("server ")]

    assert others(rendered) == others(template)
    for needed in ("timeout tunnel 1h", "cookie SERVERID insert indirect nocache",
                   "option redispatch", "http-check send meth GET uri /readyz",
                   "default-server check inter 1s fall 2 rise 2"):
        assert needed in template, needed


def test_polling_handshake_sets_sticky_cookie_and_the_cookie_pins(fleet: Fleet) -> None:
    assert fleet.haproxy is not None
    port = fleet.haproxy.port
    handshake = "/socket.io/?EIO=4&transport=polling"
    seen = set()
    for _ in range(4):
        status, headers, body = raw_get(port, handshake)
        assert status == 200 and body.startswith("0{"), (status, body)
        cookie = headers.get("set-cookie", "")
        assert cookie.startswith("SERVERID=node"), headers
        seen.add(cookie.split(";")[0])
    assert seen == {"SERVERID=node1", "SERVERID=node2"}, "both nodes get new sessions"
    # A client that sends the cookie back reaches the node that holds its session: its
    # CONNECT (without a token: refused) is posted and its answer read back by two more
    # requests of that session. Without the cookie, half of them would be "Session ID unknown".
    for node in ("node1", "node2"):
        cookie = f"SERVERID={node}"
        status, headers, body = raw_get(port, handshake, cookie)
        assert status == 200 and "set-cookie" not in headers, "a valid cookie is kept as it is"
        sid = body[1:].split('"sid":"')[1].split('"')[0]
        status, _, text = raw_request(port, f"{handshake}&sid={sid}", cookie, "POST", "40")
        assert status == 200, (node, status, text)
        status, _, text = raw_get(port, f"{handshake}&sid={sid}", cookie)
        assert status == 200 and text.startswith("44"), (node, status, text)


def test_health_checks_take_a_dead_node_out_and_put_it_back(fleet: Fleet) -> None:
    assert fleet.haproxy is not None
    node2 = fleet.node(2)
    node2.kill()
    try:
        # Meanwhile every request through the balancer is answered (a retry goes elsewhere),
        # even one whose cookie names the dead node.
        for _ in range(6):
            status, _, body = raw_get(fleet.haproxy.port, "/healthz", cookie="SERVERID=node2")
            assert status == 200, body
        fleet.haproxy.wait_states({"node1": "UP", "node2": "DOWN"}, timeout=10)
    finally:
        node2.start()
    node2.wait_ready()
    fleet.haproxy.wait_states({"node1": "UP", "node2": "UP"}, timeout=10)
    wait_until(lambda: raw_get(fleet.haproxy.port, "/healthz", "SERVERID=node2")[0] == 200,
               5, "node2 through the balancer")


def test_an_idle_fleet_stays_ready(fleet: Fleet) -> None:
    """No traffic for 15 s (three of the streams reader's 5 s blocking reads): every node
    keeps answering /readyz 200 and HAProxy keeps every node in."""
    assert fleet.haproxy is not None
    started = time.monotonic()
    not_ready: list[str] = []
    while (elapsed := time.monotonic() - started) < 15:
        for node in fleet.nodes:
            status = node.readyz()
            if status != 200:
                not_ready.append(f"{node.name} {status} at +{elapsed:.1f} s")
        time.sleep(0.1)
    states = fleet.haproxy.states()
    logs = "\n".join(node.log(1500) for node in fleet.nodes)
    assert not not_ready, f"/readyz failed on an idle fleet: {not_ready[:10]}\n{logs}"
    assert set(states.values()) == {"UP"}, states
