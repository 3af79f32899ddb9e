"""The gateway's page in Chromium through HAProxy, two pages pinned to different nodes.

The fleet has a shared JWT_SECRET (no development mode): the page asks for a token, the
test gives each user one. Each browser context starts with HAProxy's cookie SERVERID=node1
(alice) or node2 (bob), so alice's private message and the service API's notification
cross nodes to reach bob's page. Then alice's node is killed (SIGKILL) and bob sends her a
message: her page reconnects through the balancer, says it recovered its session, and shows
the message once.
``tests/interop/gateway_browser_fleet.mjs`` drives it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .fleet import (
    API_KEY,
    INTEROP_DIR,
    WEB_DIR,
    mint_token,
    require_node,
    running_fleet,
    sockets_per_node,
    unique,
)

CHROMIUM = Path("/usr/bin/chromium")
SCRIPT = INTEROP_DIR / "gateway_browser_fleet.mjs"


def test_page_through_the_balancer_message_between_nodes() -> None:
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is missing (apt-get install -y chromium)")
    node = require_node()
    if not (INTEROP_DIR / "node_modules" / "playwright-core").is_dir():
        pytest.skip("playwright-core is not installed in tests/interop/node_modules")
    if not (WEB_DIR / "node_modules" / "vue").is_dir():
        pytest.skip("the page's libraries are not installed (cd web && npm ci)")
    alice, bob = unique("alice"), unique("bob")
    tokens = {"alice": {"id": alice, "token": mint_token(alice, "Alice"), "node": "node1"},
              "bob": {"id": bob, "token": mint_token(bob, "Bob"), "node": "node2"}}
    with running_fleet(env={"WEB_DIR": str(WEB_DIR)}) as fleet:
        assert fleet.node(1).proc is not None
        proc = subprocess.run(
            [node, str(SCRIPT), fleet.url, API_KEY, json.dumps(tokens), "50000",
             str(fleet.node(1).proc.pid)],
            cwd=INTEROP_DIR, capture_output=True, text=True, timeout=65,
        )
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        assert lines, f"no result (exit {proc.returncode}); stderr:\n{proc.stderr[-4000:]}"
        result = json.loads(lines[-1])
        assert result["ok"], json.dumps(result, indent=1)
        assert proc.returncode == 0

    assert result["alice"]["status"].startswith("Connected as") and result["alice"]["me"] == alice
    assert result["bob"]["me"] == bob
    assert "SERVERID=node1" in result["alice"]["cookies"], result["alice"]
    assert "SERVERID=node2" in result["bob"]["cookies"], result["bob"]
    stats = result["stats"]["body"]
    per_node = sockets_per_node(stats)
    assert per_node == {"node1": 1, "node2": 1}, stats
    assert stats["connectedClients"] == 2, stats
    assert result["text"] in result["bobMessage"] and result["bobMessage"].startswith("Alice")
    assert result["notify"]["status"] == 200, result["notify"]
    assert "hello through the balancer" in result["bobNotification"]
    assert result["pageErrors"] == [] and result["requests"] == []
    # The page logs the refused development token request (404) as a console error; nothing else.
    others = [e for e in result["consoleErrors"] if "404" not in e]
    assert others == [], result["consoleErrors"]

    # Alice's node was killed: her page reconnected through the balancer, to node 2, and
    # shows bob's message sent meanwhile, once.
    assert result["aliceMovedMessages"] == 1, result
    assert result["aliceRecovery"] == "· reconnected: recovered", result["aliceRecovery"]
    assert result["aliceStatusAfter"].startswith("Connected as"), result["aliceStatusAfter"]
    assert sockets_per_node(result["statsAfter"]["body"]) == {"node2": 2}, result["statsAfter"]
