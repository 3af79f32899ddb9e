"""Helpers for the differential interop tests against real npm peers.

Every interop scenario runs against two servers that share one command-line
contract:

* ``node``:   ``node tests/interop/reference_eio_server.mjs ...`` (npm ``engine.io``)
* ``python``: ``python -m engineio_core ...`` (this project)

Both print one line ``LISTENING <port>`` on stdout once listening (``--port 0``
picks a free port) and echo every message back unchanged.

Public API:

* :func:`start_server` - context manager yielding a :class:`ServerHandle`.
* :func:`run_node` - run a script from ``tests/interop`` and parse its JSON line.
* :func:`spawn_node` - same, but streaming (for scripts that print progress lines).
* :func:`run_eio_scenario` - run ``eio_client.mjs`` against a server, assert success.
* :func:`require_node` - skip (or fail, with ``INTEROP_REQUIRED=1``) when Node.js
  or ``tests/interop/node_modules`` is missing.
* fixtures :func:`node_required` and :func:`server_kind`.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
INTEROP_DIR = REPO_ROOT / "tests" / "interop"
NODE_MODULES = INTEROP_DIR / "node_modules"
REFERENCE_EIO_SERVER = INTEROP_DIR / "reference_eio_server.mjs"

#: ``asgi`` is this project under uvicorn through ``engineio_core.asgi``.
SERVER_KINDS = ("node", "python", "asgi")

#: Flags every server gets unless the caller overrides them. The ping timeout
#: is generous so that a loaded machine does not produce spurious heartbeat
#: failures; the heartbeat tests override it.
DEFAULT_SERVER_FLAGS: dict[str, Any] = {
    "host": "127.0.0.1",
    "ping_interval": 300,
    "ping_timeout": 2000,
    "max_payload": 1_000_000,
    "cors": "*",
}
DEFAULT_PATH = "/engine.io/"

STARTUP_TIMEOUT = 20.0  # seconds to wait for "LISTENING <port>"
STOP_TIMEOUT = 5.0  # seconds between SIGTERM and SIGKILL
NODE_TIMEOUT = 40.0  # hard cap for one node script run (it has its own watchdog)

_LISTENING_RE = re.compile(r"^LISTENING (\d+)\s*$")
_MAX_KEPT_LINES = 500

_NODE_HELP = (
    "The interop tests need Node.js (>= 18) on PATH and the npm peers installed in "
    "tests/interop/node_modules. Install them with the project's test command from "
    "README.md, or directly: `cd tests/interop && npm ci`."
)


# --------------------------------------------------------------------- checks


def node_problem() -> str | None:
    """Return why the Node-based interop tests cannot run, or None if they can."""
    if shutil.which("node") is None:
        return "`node` is not on PATH. " + _NODE_HELP
    for pkg in ("engine.io", "engine.io-client", "ws"):
        if not (NODE_MODULES / pkg / "package.json").is_file():
            return f"{NODE_MODULES / pkg} is missing. " + _NODE_HELP
    return None


def require_node() -> None:
    """Skip the calling test when Node.js / node_modules are unavailable.

    Set ``INTEROP_REQUIRED=1`` (e.g. in CI) to turn the skip into a failure.
    """
    problem = node_problem()
    if problem is None:
        return
    if os.environ.get("INTEROP_REQUIRED", "") not in ("", "0"):
        pytest.fail(problem, pytrace=False)
    pytest.skip(problem)


@pytest.fixture
def node_required() -> None:
    require_node()


@pytest.fixture(params=SERVER_KINDS)
def server_kind(request: pytest.FixtureRequest) -> str:
    """Parametrizes a test over the reference (node) and our (python) server."""
    require_node()
    return request.param


# ------------------------------------------------------------- line reading


class _LineReader:
    """Reads a text stream on a daemon thread and hands out lines with timeouts."""

    _EOF = object()

    def __init__(self, stream, name: str) -> None:
        self._queue: queue.Queue[object] = queue.Queue()
        self.lines: list[str] = []  # everything read so far (bounded)
        self.eof = False
        self._thread = threading.Thread(
            target=self._run, args=(stream,), name=f"reader-{name}", daemon=True
        )
        self._thread.start()

    def _run(self, stream) -> None:
        try:
            for line in stream:
                line = line.rstrip("\r\n")
                if len(self.lines) < _MAX_KEPT_LINES:
                    self.lines.append(line)
                self._queue.put(line)
        except (OSError, ValueError):
            pass
        finally:
            self._queue.put(self._EOF)

    def readline(self, timeout: float) -> str | None:
        """Next line, or None at EOF. Raises TimeoutError after ``timeout`` s."""
        if self.eof:
            return None
        try:
            item = self._queue.get(timeout=max(0.0, timeout))
        except queue.Empty:
            raise TimeoutError(f"no line within {timeout:.1f}s") from None
        if item is self._EOF:
            self.eof = True
            return None
        assert isinstance(item, str)
        return item

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


def _tail(path_or_file, limit: int = 4000) -> str:
    try:
        if hasattr(path_or_file, "seek"):
            path_or_file.flush()
            path_or_file.seek(0)
            data = path_or_file.read()
        else:
            data = Path(path_or_file).read_bytes()
    except (OSError, ValueError):
        return "<unreadable>"
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    return data[-limit:]


# ------------------------------------------------------------------- servers


def _flags_to_argv(flags: dict[str, Any]) -> list[str]:
    argv: list[str] = []
    for key, value in flags.items():
        if value is None or value is False:
            continue
        opt = "--" + key.replace("_", "-")
        if value is True:
            argv.append(opt)
        elif isinstance(value, (list, tuple)):
            argv += [opt, ",".join(str(v) for v in value)]
        else:
            argv += [opt, str(value)]
    return argv


def server_command(kind: str, **flags: Any) -> list[str]:
    """The argv that starts a ``kind`` server with ``--port 0`` and ``flags``.

    Flag names use underscores (``ping_interval=300`` -> ``--ping-interval 300``);
    a value of None drops a default flag; lists are comma-joined.
    """
    merged = {**DEFAULT_SERVER_FLAGS, **flags, "port": 0}
    argv = _flags_to_argv(merged)
    if kind == "node":
        return ["node", str(REFERENCE_EIO_SERVER), *argv]
    if kind == "python":
        return [sys.executable, "-m", "engineio_core", *argv]
    if kind == "asgi":
        return [sys.executable, "-m", "engineio_core", "--asgi", *argv]
    raise ValueError(f"unknown server kind {kind!r} (expected one of {SERVER_KINDS})")


@dataclass
class ServerHandle:
    kind: str
    proc: subprocess.Popen
    host: str
    port: int
    path: str
    argv: list[str]
    _stdout: _LineReader = field(repr=False)
    _stderr_file: Any = field(repr=False)
    frozen: bool = False

    @property
    def url(self) -> str:
        """Origin URL for clients (the Engine.IO path is separate: ``.path``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def engineio_url(self) -> str:
        return f"{self.url}{self.path}"

    def freeze(self) -> None:
        """SIGSTOP the server process: it stops answering (and pinging)."""
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
        self.frozen = False

    def stdout_lines(self) -> list[str]:
        return list(self._stdout.lines)

    def stderr_tail(self, limit: int = 4000) -> str:
        return _tail(self._stderr_file, limit)

    def diagnostics(self) -> str:
        rc = self.proc.poll()
        return (
            f"[{self.kind} server {' '.join(self.argv)} "
            f"(pid {self.proc.pid}, {'running' if rc is None else f'exited {rc}'})]\n"
            f"stdout: {self.stdout_lines()[-20:]}\n"
            f"stderr tail:\n{self.stderr_tail()}"
        )

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGCONT (in case it is frozen), SIGTERM and wait (bounded).

        Returns the exit code, None if the process is still running.
        """
        proc = self.proc
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
                proc.send_signal(signal.SIGTERM)
            self.frozen = False
        try:
            return proc.wait(timeout=timeout)
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


@contextlib.contextmanager
def start_server(
    kind: str, *, startup_timeout: float = STARTUP_TIMEOUT, **flags: Any
) -> Iterator[ServerHandle]:
    """Start a ``node``, ``python`` or ``asgi`` Engine.IO echo server on a free port."""
    if kind == "node":
        require_node()
    with start_process(
        kind,
        server_command(kind, **flags),
        host=flags.get("host") or DEFAULT_SERVER_FLAGS["host"],
        path=flags.get("path") or DEFAULT_PATH,
        startup_timeout=startup_timeout,
    ) as handle:
        yield handle


@contextlib.contextmanager
def start_process(
    kind: str,
    argv: list[str],
    *,
    host: str = "127.0.0.1",
    path: str = DEFAULT_PATH,
    cwd: Path = REPO_ROOT,
    env: dict[str, str] | None = None,
    startup_timeout: float = STARTUP_TIMEOUT,
) -> Iterator[ServerHandle]:
    """Run a server process that prints ``LISTENING <port>`` once listening.

    Waits (bounded) for that line, yields a :class:`ServerHandle` and always stops the
    process afterwards (SIGCONT, SIGTERM, SIGKILL).
    """
    stderr_file = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()/close()
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr_file,
        text=True,
        encoding="utf-8",
        errors="replace",
        bufsize=1,
    )
    reader = _LineReader(proc.stdout, f"{kind}-server")
    handle: ServerHandle | None = None
    try:
        port = None
        deadline = time.monotonic() + startup_timeout
        while port is None:
            remaining = deadline - time.monotonic()
            try:
                line = reader.readline(timeout=remaining)
            except TimeoutError:
                raise RuntimeError(
                    f"{kind} server did not print 'LISTENING <port>' within "
                    f"{startup_timeout}s (is stdout flushed?)\nargv: {argv}\n"
                    f"stdout so far: {reader.lines}\nstderr:\n{_tail(stderr_file)}"
                ) from None
            if line is None:
                rc = proc.wait(timeout=STOP_TIMEOUT)
                raise RuntimeError(
                    f"{kind} server exited (code {rc}) before listening\nargv: {argv}\n"
                    f"stdout: {reader.lines}\nstderr:\n{_tail(stderr_file)}"
                )
            m = _LISTENING_RE.match(line)
            if m:
                port = int(m.group(1))
        handle = ServerHandle(
            kind=kind,
            proc=proc,
            host=host,
            port=port,
            path=path,
            argv=argv,
            _stdout=reader,
            _stderr_file=stderr_file,
        )
        yield handle
    finally:
        if handle is not None:
            handle.stop()
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


# ---------------------------------------------------------------- node runs


def _node_argv(script: str, args: tuple[Any, ...]) -> list[str]:
    script_path = INTEROP_DIR / script
    out = ["node", str(script_path)]
    for a in args:
        out.append(json.dumps(a) if isinstance(a, (dict, list)) else str(a))
    return out


def _last_json_line(lines: list[str]) -> dict[str, Any] | None:
    for line in reversed(lines):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


class NodeScriptError(AssertionError):
    pass


def run_node(script: str, *args: Any, timeout: float = NODE_TIMEOUT) -> dict[str, Any]:
    """Run ``node tests/interop/<script> args...`` and return its last JSON line.

    dict/list arguments are passed as JSON. The returned dict also carries
    ``"_returncode"`` and ``"_stderr"`` (tail). Raises :class:`NodeScriptError`
    when the script prints no JSON line or does not exit within ``timeout``.
    """
    require_node()
    argv = _node_argv(script, args)
    try:
        done = subprocess.run(
            argv,
            cwd=INTEROP_DIR,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise NodeScriptError(
            f"{argv} did not exit within {timeout}s\nstdout: {exc.stdout!r}\nstderr: {exc.stderr!r}"
        ) from None
    result = _last_json_line(done.stdout.splitlines())
    if result is None:
        raise NodeScriptError(
            f"{argv} printed no JSON line (exit {done.returncode})\n"
            f"stdout: {done.stdout[-4000:]}\nstderr: {done.stderr[-4000:]}"
        )
    result["_returncode"] = done.returncode
    result["_stderr"] = done.stderr[-4000:]
    return result


class NodeProcess:
    """A running node script whose stdout lines can be awaited one by one."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self._stderr_file = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()/close()
        self.proc = subprocess.Popen(
            argv,
            cwd=INTEROP_DIR,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr_file,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
        )
        self._reader = _LineReader(self.proc.stdout, "node-script")

    def wait_for_line(self, expected: str, timeout: float) -> None:
        """Consume lines until one equals ``expected`` (bounded in time)."""
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._reader.readline(timeout=remaining)
            except TimeoutError:
                raise NodeScriptError(
                    f"{self.argv}: no {expected!r} line within {timeout}s; saw {seen}\n"
                    f"stderr: {self.stderr_tail()}"
                ) from None
            if line is None:
                raise NodeScriptError(
                    f"{self.argv}: exited ({self.proc.wait(timeout=STOP_TIMEOUT)}) before "
                    f"printing {expected!r}; saw {seen}\nstderr: {self.stderr_tail()}"
                )
            if line.strip() == expected:
                return
            seen.append(line)

    def readline(self, timeout: float) -> str | None:
        """The next stdout line, None at EOF; TimeoutError after ``timeout`` seconds."""
        return self._reader.readline(timeout=timeout)

    def result(self, timeout: float = NODE_TIMEOUT) -> dict[str, Any]:
        """Wait for the script to exit and return its last JSON line."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise NodeScriptError(
                f"{self.argv} did not exit within {timeout}s; stdout {self._reader.lines}"
            ) from None
        self._reader.join(2.0)
        result = _last_json_line(self._reader.lines)
        if result is None:
            raise NodeScriptError(
                f"{self.argv} printed no JSON line (exit {rc}); stdout {self._reader.lines}\n"
                f"stderr: {self.stderr_tail()}"
            )
        result["_returncode"] = rc
        result["_stderr"] = self.stderr_tail()
        return result

    def stderr_tail(self) -> str:
        return _tail(self._stderr_file)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=STOP_TIMEOUT)

    def close(self) -> None:
        self.kill()
        if self.proc.stdout is not None:
            with contextlib.suppress(OSError):
                self.proc.stdout.close()
        self._stderr_file.close()


@contextlib.contextmanager
def spawn_node(script: str, *args: Any) -> Iterator[NodeProcess]:
    """Start a node script from tests/interop; it is killed on exit if still running."""
    require_node()
    proc = NodeProcess(_node_argv(script, args))
    try:
        yield proc
    finally:
        proc.close()


# ---------------------------------------------------------- engine.io-client


EIO_CLIENT = "eio_client.mjs"


def scenario_options(server: ServerHandle, **options: Any) -> dict[str, Any]:
    return {"path": server.path, **options}


def check_result(result: dict[str, Any], server: ServerHandle, what: str) -> dict[str, Any]:
    """Assert that a driver result reports success, with useful diagnostics."""
    if not result.get("ok") or result.get("_returncode") != 0:
        shown = {k: v for k, v in result.items() if k != "_stderr"}
        raise AssertionError(
            f"{what} against the {server.kind} server failed:\n"
            f"{json.dumps(shown, indent=1)[:6000]}\n"
            f"client stderr: {result.get('_stderr', '')[-2000:]}\n"
            f"{server.diagnostics()}"
        )
    return result


def run_eio_scenario(
    scenario: str, server: ServerHandle, *, timeout: float = NODE_TIMEOUT, **options: Any
) -> dict[str, Any]:
    """Run ``eio_client.mjs <scenario>`` against ``server`` and assert it succeeded."""
    result = run_node(
        EIO_CLIENT, scenario, server.url, scenario_options(server, **options), timeout=timeout
    )
    return check_result(result, server, f"engine.io-client scenario {scenario!r} {options}")


__all__ = [
    "DEFAULT_PATH",
    "DEFAULT_SERVER_FLAGS",
    "INTEROP_DIR",
    "NODE_MODULES",
    "REPO_ROOT",
    "SERVER_KINDS",
    "NodeProcess",
    "NodeScriptError",
    "ServerHandle",
    "check_result",
    "node_problem",
    "node_required",
    "require_node",
    "run_eio_scenario",
    "run_node",
    "scenario_options",
    "server_command",
    "server_kind",
    "spawn_node",
    "start_server",
]
