"""The servers under test: how each is started, pinned to its core, and stopped."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .env import Env

APPS = Path(__file__).resolve().parent / "apps"
REPO_ROOT = APPS.parents[2]

SERVER_NAMES = ("ours", "python-socketio", "node")
LABELS = {
    "ours": "ours (socketio_core + uvloop)",
    "python-socketio": "python-socketio 5.18 (uvicorn + uvloop)",
    "node": "Node socket.io 4.8.4",
}
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


class ServerError(RuntimeError):
    pass


def pin(cpu: int | None) -> list[str]:
    """``taskset -c CPU`` when taskset exists and the machine has that CPU."""
    if cpu is None or shutil.which("taskset") is None or cpu >= (os.cpu_count() or 1):
        return []
    return ["taskset", "-c", str(cpu)]


def server_command(
    name: str, env: Env | None, ours_src: Path | None = None, app: str = "bench",
    app_env: dict[str, str] | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The app's command line and environment (``--port 0``: the app prints its port).

    ``app="gateway"``: ``python -m realtime_app`` (ours only) with ``app_env`` added to its
    environment (PORT=0: it prints ``LISTENING <port>`` once its adapter is connected).
    """
    environ = dict(os.environ)
    environ.pop("PYTHONPATH", None)
    if app == "gateway":
        if name != "ours":
            raise ServerError(f"the gateway is our server only, not {name!r}")
        environ["PYTHONPATH"] = str(ours_src or REPO_ROOT)
        environ.update({"HOST": "127.0.0.1", "PORT": "0", **(app_env or {})})
        # -P: the packages come from PYTHONPATH (the copy), not from the working directory
        # (the repository), which ``-m`` would otherwise put first on sys.path.
        return [sys.executable, "-P", "-m", "realtime_app"], environ
    if name == "ours":
        # ours_src: a folder holding copies of engineio_core and socketio_core (ahead of
        # the editable install on sys.path); the work tree otherwise.
        environ["PYTHONPATH"] = str(ours_src or REPO_ROOT)
        return [sys.executable, str(APPS / "ours.py"), "--port", "0"], environ
    if env is None:
        raise ServerError(f"{name} needs the harness cache (python -m benchmarks install)")
    if name == "python-socketio":
        return [str(env.venv_python), str(APPS / "python_socketio.py"), "--port", "0"], environ
    if name == "node":
        environ["BENCH_NPM_DIR"] = str(env.npm_dir)
        return ["node", str(APPS / "node.mjs"), "--port", "0"], environ
    raise ValueError(f"unknown server {name!r}")


@dataclass
class RunningServer:
    name: str
    proc: subprocess.Popen[str]
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _read_port(stream: IO[str], timeout: float) -> int | None:
    found: list[int] = []

    def reader() -> None:
        for line in stream:
            if line.startswith("LISTENING "):
                found.append(int(line.split()[1]))
                return

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    thread.join(timeout)
    return found[0] if found else None


@contextlib.contextmanager
def start_server(
    name: str, env: Env | None, cpu: int | None, log_dir: Path, ours_src: Path | None = None,
    extra_args: list[str] | None = None, app: str = "bench",
    app_env: dict[str, str] | None = None,
) -> Iterator[RunningServer]:
    """One server process pinned to ``cpu``; ``extra_args`` go to the app (``--redis ...``);
    ``app``/``app_env`` pick the gateway instead of the benchmark app (server_command)."""
    argv, environ = server_command(name, env, ours_src, app, app_env)
    argv += extra_args or []
    log_path = log_dir / f"{name}-{time.monotonic_ns()}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [*pin(cpu), *argv],
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            text=True,
            env=environ,
            cwd=REPO_ROOT,
            start_new_session=True,
        )
    try:
        assert proc.stdout is not None
        port = _read_port(proc.stdout, STARTUP_TIMEOUT)
        if port is None:
            raise ServerError(
                f"{name} did not print LISTENING within {STARTUP_TIMEOUT}s "
                f"(exit code {proc.poll()}):\n{log_path.read_text(errors='replace')[-2000:]}"
            )
        yield RunningServer(name, proc, port, log_path)
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(5)
    if proc.stdout is not None:
        proc.stdout.close()
