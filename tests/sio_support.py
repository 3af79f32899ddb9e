"""Helpers for the differential Socket.IO interop tests (socket.io-client against servers).

Two scenario servers share one command line and one behaviour:

* ``node``:   ``node tests/interop/reference_sio_server.mjs ...`` (npm ``socket.io`` 4.8.4)
* ``python``: ``python tests/socketio_core/scenario_server.py ...`` (this project)

Both print ``LISTENING <port>`` once listening. The client side is
``tests/interop/sio_client.mjs`` (npm ``socket.io-client``), one scenario per run, one
JSON result line.

Public API:

* :func:`start_sio_server` - context manager yielding a :class:`SioServer`.
* :func:`run_sio_scenario` - run a ``sio_client.mjs`` scenario, assert it succeeded.
* :func:`spawn_sio_scenario` - the same, streaming (``wait-disconnect`` prints ``READY``).
* :func:`require_sio_node` - skip (or fail with ``INTEROP_REQUIRED=1``) without Node.js
  or the socket.io npm packages.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from .interop_support import (
    INTEROP_DIR,
    NODE_MODULES,
    REPO_ROOT,
    NodeProcess,
    ServerHandle,
    require_node,
    run_node,
    spawn_node,
    start_process,
)

SIO_SERVER_KINDS = ("node", "python")
TRANSPORTS = ("websocket", "polling", "upgrade")

REFERENCE_SIO_SERVER = INTEROP_DIR / "reference_sio_server.mjs"
PYTHON_SCENARIO_SERVER = REPO_ROOT / "tests" / "socketio_core" / "scenario_server.py"
SIO_CLIENT = "sio_client.mjs"
SIO_PACKAGES = ("socket.io", "socket.io-client", "socket.io-msgpack-parser", "engine.io-client")

STARTUP_TIMEOUT = 20.0  # seconds to wait for "LISTENING <port>"
NODE_TIMEOUT = 40.0  # hard cap for one driver run (the driver has its own watchdog)



def require_sio_node() -> None:
    """Skip the calling test when Node.js or the socket.io npm packages are missing."""
    require_node()
    for pkg in SIO_PACKAGES:
        if not (NODE_MODULES / pkg / "package.json").is_file():
            problem = f"{NODE_MODULES / pkg} is missing; run `cd tests/interop && npm ci`."
            if os.environ.get("INTEROP_REQUIRED", "") not in ("", "0"):
                pytest.fail(problem, pytrace=False)
            pytest.skip(problem)


# ------------------------------------------------------------------- servers


def sio_server_command(kind: str, **flags: Any) -> list[str]:
    """argv of a ``kind`` scenario server on ``--port 0``.

    Flags use underscores (``ping_interval=300`` -> ``--ping-interval 300``); None drops one.
    """
    argv = ["--port", "0"]
    for key, value in flags.items():
        if value is not None:
            argv += ["--" + key.replace("_", "-"), str(value)]
    if kind == "node":
        return ["node", str(REFERENCE_SIO_SERVER), *argv]
    if kind == "python":
        return [sys.executable, str(PYTHON_SCENARIO_SERVER), *argv]
    raise ValueError(f"unknown server kind {kind!r} (expected one of {SIO_SERVER_KINDS})")


#: A running scenario server (same handle as the Engine.IO servers').
SioServer = ServerHandle


@contextlib.contextmanager
def start_sio_server(
    kind: str, *, startup_timeout: float = STARTUP_TIMEOUT, **flags: Any
) -> Iterator[SioServer]:
    """Start a scenario server, wait (bounded) for ``LISTENING <port>``, always stop it."""
    require_sio_node()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
    )
    with start_process(
        kind,
        sio_server_command(kind, **flags),
        path="/socket.io/",
        cwd=REPO_ROOT if kind == "python" else INTEROP_DIR,
        env=env,
        startup_timeout=startup_timeout,
    ) as server:
        yield server


# ---------------------------------------------------------------- the driver


def check_sio_result(result: dict[str, Any], server: SioServer, what: str) -> dict[str, Any]:
    if not result.get("ok") or result.get("_returncode") != 0:
        shown = {k: v for k, v in result.items() if k != "_stderr"}
        raise AssertionError(
            f"{what} against the {server.kind} server failed:\n"
            f"{json.dumps(shown, indent=1)[:6000]}\n"
            f"client stderr: {result.get('_stderr', '')[-2000:]}\n{server.diagnostics()}"
        )
    return result


def run_sio_scenario(
    scenario: str, server: SioServer, *, timeout: float = NODE_TIMEOUT, **options: Any
) -> dict[str, Any]:
    """Run ``sio_client.mjs <scenario> <url> <options>``; assert success; return the result."""
    result = run_node(SIO_CLIENT, scenario, server.url, options, timeout=timeout)
    return check_sio_result(result, server, f"socket.io-client scenario {scenario!r} {options}")


@contextlib.contextmanager
def spawn_sio_scenario(
    scenario: str, server: SioServer, **options: Any
) -> Iterator[NodeProcess]:
    """Start a streaming driver run (e.g. ``wait-disconnect``); killed on exit if running."""
    with spawn_node(SIO_CLIENT, scenario, server.url, options) as proc:
        yield proc


def bin_(data: bytes) -> dict[str, str]:
    """How the driver writes a binary value in its JSON results."""
    return {"$bin": data.hex()}


__all__ = [
    "PYTHON_SCENARIO_SERVER",
    "REFERENCE_SIO_SERVER",
    "SIO_SERVER_KINDS",
    "TRANSPORTS",
    "SioServer",
    "bin_",
    "check_sio_result",
    "require_sio_node",
    "run_sio_scenario",
    "sio_server_command",
    "spawn_sio_scenario",
    "start_sio_server",
]
