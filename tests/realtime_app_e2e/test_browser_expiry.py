"""The page in Chromium says why the gateway ended the session when the token expired.

The gateway runs with JWT_SECRET and JWT_LEEWAY=0 (no development mode: the page asks for
a token); ``tests/interop/gateway_browser_expiry.mjs`` signs in with a token that expires
a few seconds later and waits for the page to show the reason.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .conftest import (
    API_KEY,
    INTEROP_DIR,
    JWT_SECRET,
    WEB_DIR,
    mint_token,
    require_node,
    running_gateway,
)

CHROMIUM = Path("/usr/bin/chromium")
SCRIPT = INTEROP_DIR / "gateway_browser_expiry.mjs"


def test_page_shows_token_expiry() -> None:
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is missing (apt-get install -y chromium)")
    node = require_node()
    if not (INTEROP_DIR / "node_modules" / "playwright-core").is_dir():
        pytest.skip("playwright-core is not installed in tests/interop/node_modules")
    if not (WEB_DIR / "node_modules" / "vue").is_dir():
        pytest.skip("the page's libraries are not installed (cd web && npm ci)")
    env = {"JWT_SECRET": JWT_SECRET, "API_KEY": API_KEY, "WEB_DIR": str(WEB_DIR),
           "JWT_LEEWAY": "0"}
    with running_gateway(env) as gateway:
        status, _ = gateway.http("POST", "/api/dev/token", {"userId": "probe"}, api_key=None)
        assert status == 404  # not development mode
        # Long enough for Chromium to start and sign in on a busy machine, short enough
        # to wait for (the script waits for the disconnect up to its own time limit).
        token = mint_token("alice", "alice", ttl=20)
        proc = subprocess.run(
            [node, str(SCRIPT), gateway.url, token, "60000"],
            cwd=INTEROP_DIR, capture_output=True, text=True, timeout=80,
        )
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        assert lines, f"no result (exit {proc.returncode}); stderr:\n{proc.stderr[-4000:]}"
        result = json.loads(lines[-1])
        assert result["ok"], json.dumps(result, indent=1)
    assert result["connected"].startswith("Connected as alice")
    assert "Session expired" in result["reason"]
    assert result["status"].startswith("Disconnected")
    assert result["loginShown"] is True
    assert result["pageErrors"] == [] and result["consoleErrors"] == []
    assert result["requests"] == []
