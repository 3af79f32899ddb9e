"""``scripts/cluster``: one command starts Redis, the nodes and HAProxy; Ctrl-C stops all of it.

The script runs in its own session with free ports, a Redis port nobody uses (so it starts
its own redis-server there) and a temporary state folder; Ctrl-C is simulated the way a
terminal sends it, SIGINT to the whole foreground process group. Afterwards no process of
that group is left, the nodes (in sessions of their own) are gone and no port answers.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import jwt
import pytest

from .fleet import REPO_ROOT, free_port, http, require_fleet_tools, wait_until

SCRIPT = REPO_ROOT / "scripts" / "cluster"


def free_ports_in_a_row(count: int) -> int:
    """The first of ``count`` consecutive free ports (the script numbers its nodes so)."""
    for _ in range(50):
        base = free_port()
        if base + count > 65535:
            continue
        with contextlib.ExitStack() as stack:
            try:
                for port in range(base, base + count):
                    s = stack.enter_context(socket.socket())
                    s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return base
    raise RuntimeError("no run of free ports")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose (its parent, the script, has exited).
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    return False


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_cluster_script_starts_a_fleet_and_ctrl_c_stops_everything() -> None:
    require_fleet_tools()
    if not (REPO_ROOT / "web" / "node_modules" / "vue" / "package.json").exists():
        pytest.skip("the page's libraries are not installed (cd web && npm ci)")
    public, redis_port, base = free_port(), free_port(), free_ports_in_a_row(3)
    state = Path(tempfile.mkdtemp(prefix="cluster-script-"))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JWT_", "API_KEY", "REDIS_", "DEV_MODE", "NODES", "CLUSTER_"))}
    env.update({"CLUSTER_PYTHON": sys.executable, "CLUSTER_DIR": str(state),
                "REDIS_URL": f"redis://127.0.0.1:{redis_port}", "REDIS_PREFIX": "cluster-script:",
                "PYTHONPATH": str(REPO_ROOT)})
    proc = subprocess.Popen(
        [str(SCRIPT), "--nodes", "3", "--port", str(public), "--base-port", str(base)],
        cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    pgid = proc.pid
    lines: queue.Queue[str | None] = queue.Queue()
    output: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    try:
        deadline = time.monotonic() + 45
        while True:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, f"scripts/cluster exited:\n{''.join(output)}"
            if line.startswith("Ctrl-C stops everything"):
                break
        text = "".join(output)
        assert f"started redis-server on 127.0.0.1:{redis_port}" in text, text
        assert http(f"http://127.0.0.1:{public}/readyz", api_key=None)[0] == 200
        for i in range(3):  # every node answers on its own port, with its NODE_ID
            status, body = http(f"http://127.0.0.1:{base + i}/healthz", api_key=None)
            assert status == 200 and body.get("node") == f"node{i + 1}", body
        rendered = (state / "haproxy.cfg").read_text()
        assert [ln.split()[1:3] for ln in rendered.splitlines()
                if ln.strip().startswith("server ")] == [
            [f"node{i + 1}", f"127.0.0.1:{base + i}"] for i in range(3)]
        # The printed tokens and `scripts/cluster token` sign with the fleet's secret.
        secret = dict(line.split("=", 1) for line in
                      (state / "env").read_text().split())["JWT_SECRET"].strip("'")
        token = subprocess.run([str(SCRIPT), "token", "carol", "Carol"], cwd=REPO_ROOT,
                               env=env, capture_output=True, text=True, timeout=20,
                               check=True).stdout.strip()
        claims = jwt.decode(token, secret, algorithms=["HS256"])
        assert claims["sub"] == "carol" and claims["username"] == "Carol"
        alice = text.split("alice's token:")[1].split()[0]
        assert jwt.decode(alice, secret, algorithms=["HS256"])["sub"] == "alice"
    finally:
        if group_alive(pgid):
            os.killpg(pgid, signal.SIGINT)  # what Ctrl-C in a terminal does
        try:
            code = proc.wait(timeout=25)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            proc.wait(timeout=5)
            raise AssertionError(f"scripts/cluster did not stop on Ctrl-C:\n{''.join(output)}"
                                 ) from None
        shutil.rmtree(state, ignore_errors=True)
        wait_until(lambda: not group_alive(pgid), 10, "every process of the fleet to be gone")
    assert code == 130, f"exit code {code}:\n{''.join(output)}"
    # The nodes run in sessions of their own (so that the script stops them in order): gone too.
    node_pids = [int(p) for p in re.findall(r"node\d+ pid (\d+)", "".join(output))]
    assert len(node_pids) == 3, "".join(output)
    for pid in node_pids:
        wait_until(lambda pid=pid: not pid_alive(pid), 5, f"node pid {pid} to be gone")
    assert "stopping: redis node1 node2 node3 haproxy" in "".join(output)
    for port in (public, base, base + 1, base + 2, redis_port):
        with socket.socket() as s, contextlib.suppress(OSError):
            s.settimeout(1)
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"
