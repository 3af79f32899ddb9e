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
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from .interop_support import (
    INTEROP_DIR,
    NODE_MODULES,
    REPO_ROOT,
    NodeProcess,
    _LineReader,
    _tail,
    require_node,
    run_node,
    spawn_node,
)

SIO_SERVER_KINDS = ("node", "python")
TRANSPORTS = ("websocket", "polling", "upgrade")

REFERENCE_SIO_SERVER = INTEROP_DIR / "reference_sio_server.mjs"
PYTHON_SCENARIO_SERVER = REPO_ROOT / "tests" / "socketio_core" / "scenario_server.py"
SIO_CLIENT = "sio_client.mjs"
SIO_PACKAGES = ("socket.io", "socket.io-client", "socket.io-msgpack-parser", "engine.io-client")

STARTUP_TIMEOUT = 20.0  # seconds to wait for "LISTENING <port>"
STOP_TIMEOUT = 5.0  # seconds between SIGTERM and SIGKILL
NODE_TIMEOUT = 40.0  # hard cap for one driver run (the driver has its own watchdog)

_LISTENING_RE = re.compile(r"^LISTENING (\d+)\s*$")


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


@dataclass
class SioServer:
    kind: str
    proc: subprocess.Popen
    port: int
    argv: list[str]
    _stdout: _LineReader = field(repr=False)
    _stderr_file: Any = field(repr=False)
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def freeze(self) -> None:
        """SIGSTOP: the server stops answering and pinging."""
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM and wait (bounded). Returns the exit code, None if still running."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGCONT)
                self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGCONT (in case it is frozen), SIGTERM, then SIGKILL. Returns the exit code."""
        if self.terminate(timeout) is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            self.proc.wait(timeout=timeout)
        self._stdout.join(1.0)
        return self.proc.returncode

    def stderr_tail(self, limit: int = 4000) -> str:
        return _tail(self._stderr_file, limit)

    def diagnostics(self) -> str:
        rc = self.proc.poll()
        return (
            f"[{self.kind} server {' '.join(self.argv)} "
            f"(pid {self.proc.pid}, {'running' if rc is None else f'exited {rc}'})]\n"
            f"stdout: {self._stdout.lines[-20:]}\nstderr tail:\n{self.stderr_tail()}"
        )


@contextlib.contextmanager
def start_sio_server(
    kind: str, *, startup_timeout: float = STARTUP_TIMEOUT, **flags: Any
) -> Iterator[SioServer]:
    """Start a scenario server, wait (bounded) for ``LISTENING <port>``, always stop it."""
    require_sio_node()
    argv = sio_server_command(kind, **flags)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
    )
    stderr_file = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        argv,
        cwd=REPO_ROOT if kind == "python" else INTEROP_DIR,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr_file,
        text=True,
        encoding="utf-8",
        errors="replace",
        bufsize=1,
    )
    reader = _LineReader(proc.stdout, f"{kind}-sio-server")
    server: SioServer | None = None
    try:
        deadline = time.monotonic() + startup_timeout
        port = None
        while port is None:
            try:
                line = reader.readline(timeout=deadline - time.monotonic())
            except TimeoutError:
                raise RuntimeError(
                    f"{kind} server printed no 'LISTENING <port>' within {startup_timeout}s\n"
                    f"argv: {argv}\nstdout: {reader.lines}\nstderr:\n{_tail(stderr_file)}"
                ) from None
            if line is None:
                rc = proc.wait(timeout=STOP_TIMEOUT)
                raise RuntimeError(
                    f"{kind} server exited ({rc}) before listening\nargv: {argv}\n"
                    f"stdout: {reader.lines}\nstderr:\n{_tail(stderr_file)}"
                )
            m = _LISTENING_RE.match(line)
            if m:
                port = int(m.group(1))
        server = SioServer(kind, proc, port, argv, reader, stderr_file)
        yield server
    finally:
        if server is not None:
            server.stop()
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)
        if proc.stdout is not None:
            with contextlib.suppress(OSError):
                proc.stdout.close()
        stderr_file.close()


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
