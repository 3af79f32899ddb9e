"""The gateway's Socket.IO Admin UI: off by default, never without a login in production."""

from __future__ import annotations

import bcrypt
import pytest
import socketio

from realtime_app import ConfigError, load_config

from .conftest import BASE_ENV, GatewayFactory

pytestmark = pytest.mark.timeout(40)

PASSWORD = "correct horse battery"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()  # cost 4: a fast test


async def admin_login(url: str, password: str) -> tuple[bool, object]:
    """Connect to /admin as the UI does; (connected, the config event or the error)."""
    client = socketio.AsyncClient(reconnection=False)
    got: dict[str, object] = {}
    client.on("config", lambda data: got.setdefault("config", data), namespace="/admin")
    try:
        await client.connect(url, namespaces=["/admin"], transports=["websocket"],
                             auth={"username": "ops", "password": password}, wait_timeout=5)
    except socketio.exceptions.ConnectionError as exc:
        return False, str(exc)
    try:
        await client.sleep(0.3)
        return True, got.get("config")
    finally:
        await client.disconnect()


async def test_off_by_default(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory("memory")
    assert gw.app.admin_ui is None
    assert (await gw.http("GET", "/admin/", key=None))[0] == 404


async def test_login_with_the_hash(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory("memory", {"ADMIN_UI_USERNAME": "ops",
                                          "ADMIN_UI_PASSWORD_HASH": HASH})
    ok, config = await admin_login(gw.url, PASSWORD)
    assert ok and isinstance(config, dict)
    assert (await admin_login(gw.url, "wrong"))[0] is False  # "invalid credentials"
    # the page itself (web/node_modules has the npm package's built files)
    status, headers, _ = await gw.http("GET", "/admin/", key=None)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    # the gateway's own routes still answer
    assert (await gw.http("GET", "/healthz", key=None))[0] == 200


@pytest.mark.parametrize(("env", "error"), [
    ({"ADMIN_UI_USERNAME": "ops"}, "set both ADMIN_UI_USERNAME and ADMIN_UI_PASSWORD_HASH"),
    ({"ADMIN_UI_USERNAME": "ops", "ADMIN_UI_PASSWORD_HASH": "hunter2"}, "must be a bcrypt hash"),
    ({"ADMIN_UI": "1"}, "needs DEV_MODE=1"),
    ({"ADMIN_UI_PATH": "admin"}, "ADMIN_UI_PATH must be a path"),
])
def test_refused_settings(env: dict[str, str], error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        load_config([], {**BASE_ENV, **env})


def test_open_admin_ui_only_in_development_mode() -> None:
    env = {k: v for k, v in BASE_ENV.items() if k != "JWT_SECRET"}
    config = load_config([], {**env, "DEV_MODE": "1", "ADMIN_UI": "1"})
    assert config.admin_ui_enabled and config.admin_ui_username is None
