"""The gateway's Vue page in Chromium (playwright-core, system /usr/bin/chromium).

The gateway runs in development mode (no JWT_SECRET: the page gets its token from
POST /api/dev/token) with API_KEY and WEB_DIR; ``tests/interop/gateway_browser.mjs`` signs
in alice and bob, sends a private message, and the test's API call becomes a notification
on bob's page. A screenshot of bob's page is left at /tmp/gateway-bob.png.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .conftest import API_KEY, INTEROP_DIR, WEB_DIR, require_node, running_gateway

CHROMIUM = Path("/usr/bin/chromium")
SCRIPT = INTEROP_DIR / "gateway_browser.mjs"
SCREENSHOT = Path("/tmp/gateway-bob.png")


def test_page_private_message_and_notification() -> None:
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is missing (apt-get install -y chromium)")
    node = require_node()
    if not (INTEROP_DIR / "node_modules" / "playwright-core").is_dir():
        pytest.skip("playwright-core is not installed in tests/interop/node_modules")
    if not (WEB_DIR / "node_modules" / "vue").is_dir():
        pytest.skip("the page's libraries are not installed (cd web && npm ci)")
    SCREENSHOT.unlink(missing_ok=True)
    with running_gateway({"API_KEY": API_KEY, "WEB_DIR": str(WEB_DIR)}) as gateway:
        status, body = gateway.http("POST", "/api/dev/token", {"userId": "probe"}, api_key=None)
        assert status == 200 and body["token"], body  # development mode
        proc = subprocess.run(
            [node, str(SCRIPT), gateway.url, API_KEY, str(SCREENSHOT), "45000"],
            cwd=INTEROP_DIR, capture_output=True, text=True, timeout=60,
        )
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        assert lines, f"no result (exit {proc.returncode}); stderr:\n{proc.stderr[-4000:]}"
        result = json.loads(lines[-1])
        assert result["ok"], json.dumps(result, indent=1)
        assert proc.returncode == 0

    assert result["alice"]["prefilled"] == "alice" and result["bob"]["prefilled"] == "bob"
    assert result["alice"]["status"].startswith("Connected as alice")
    assert result["bob"]["status"].startswith("Connected as bob")
    assert result["bob"]["me"] == "bob"
    assert result["text"] in result["bobMessage"] and result["bobMessage"].startswith("alice")
    assert result["aliceMessage"].startswith("to bob")
    assert result["notifyStatus"] == 200 and result["notifyBody"]["deliveredSockets"] == 1
    assert "hello from the API" in result["bobNotification"]
    assert result["bobNotification"].lower().startswith("info")
    assert result["aliceNotifications"] == 0
    assert result["pageErrors"] == [] and result["consoleErrors"] == []
    assert result["requests"] == []
    assert SCREENSHOT.stat().st_size > 1000
