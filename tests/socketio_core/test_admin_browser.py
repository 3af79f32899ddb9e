"""The official Admin UI page in Chromium against our server (playwright-core, system
/usr/bin/chromium): ``tests/interop/admin_ui_browser.mjs`` logs in through the page's
connection form, sees two test clients and their rooms, disconnects one from the page and
sees it go. The page is @socket.io/admin-ui 0.5.1's built files, served by our server at
``serve_ui_at="/admin/"``. A screenshot is left at /tmp/admin-ui.png.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ..interop_support import INTEROP_DIR
from .test_admin import ADMIN_UI_PACKAGE, PASSWORD, admin_server

pytestmark = pytest.mark.timeout(120)

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = Path("/tmp/admin-ui.png")


def test_admin_ui_in_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is missing (apt-get install -y chromium)")
    if not (INTEROP_DIR / "node_modules" / "playwright-core").is_dir():
        pytest.skip("playwright-core is not installed in tests/interop/node_modules")
    SCREENSHOT.unlink(missing_ok=True)
    ui_dir = ADMIN_UI_PACKAGE / "ui" / "dist"
    with admin_server("python", "--serve-ui-at", "/admin/", "--ui-dir", str(ui_dir)) as server:
        proc = subprocess.run(
            ["node", str(INTEROP_DIR / "admin_ui_browser.mjs"), server.url, PASSWORD,
             str(SCREENSHOT), "80000"],
            cwd=INTEROP_DIR, capture_output=True, text=True, timeout=100,
        )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result (exit {proc.returncode}); stderr:\n{proc.stderr[-4000:]}"
    result = json.loads(lines[-1])
    assert result["ok"], json.dumps(result, indent=1)
    assert proc.returncode == 0

    a, b = result["ids"]["a"], result["ids"]["b"]
    assert result["title"] == "Socket.IO Admin UI"
    assert result["refusedText"] == "Invalid credentials"
    assert sorted(result["socketRows"]) == sorted(
        [f"{a} 127.0.0.1 WebSocket", f"{b} 127.0.0.1 WebSocket"])
    assert sorted(result["roomRows"]) == ["blue PUBLIC 1", "red PUBLIC 1"]
    assert result["bReason"] == "io server disconnect"
    assert result["socketRowsAfter"] == [f"{a} 127.0.0.1 WebSocket"]
    assert result["aConnected"] is True
    assert result["serverRows"][0].startswith("python ") and "HEALTHY" in result["serverRows"][0]
    assert result["pageErrors"] == []
    # The page asks two CDNs for its fonts and icons; the browser may reach nothing but
    # the server under test, so those two (and only those) are blocked.
    assert all(r.startswith(("blocked: https://fonts.googleapis.com/",
                             "blocked: https://cdn.jsdelivr.net/")) for r in result["requests"])
    assert all("net::ERR_FAILED" in e for e in result["consoleErrors"])
    assert SCREENSHOT.stat().st_size > 1000
