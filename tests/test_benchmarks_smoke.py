"""The benchmarks must not rot: every micro-benchmark runs once, and the load harness runs
its tiny smoke profile (our server only, a few clients, about a second per scenario).

The numbers are not checked here; only that everything runs and reports.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_micro_benchmarks_run_once() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks/micro", "--benchmark-disable", "-q",
         "-p", "no:cacheprovider"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout


def test_load_harness_smoke(tmp_path: Path) -> None:
    if shutil.which("node") is None:
        pytest.skip("Node.js is required by the load generator")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "run", "--smoke", "--out", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    (results,) = tmp_path.glob("*.json")
    data = json.loads(results.read_text())
    cases = {case["name"] for case in data["cases"]}
    assert {"fanout-10", "echo", "connect-websocket", "memory"} <= cases
    for run in data["runs"]:
        assert "error" not in run["result"], run
    summary = data["summary"]
    assert summary["fanout-10"]["servers"]["ours"]["metrics"]["deliveries_per_s"]["median"] > 0
    assert summary["echo"]["servers"]["ours"]["metrics"]["acks_per_s"]["median"] > 0
    assert (tmp_path / results.name.replace(".json", ".md")).is_file()


def test_load_harness_smoke_two_nodes(tmp_path: Path) -> None:
    """fanout2: two of our server processes sharing Redis (a channel prefix unique to the run)."""
    if shutil.which("node") is None:
        pytest.skip("Node.js is required by the load generator")
    pytest.importorskip("redis")
    pytest.importorskip("msgpack")
    from benchmarks.load.harness import redis_ping

    why = redis_ping("redis://127.0.0.1:6379")
    if why is not None:
        pytest.skip(f"no Redis: {why}")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "run", "--smoke", "fanout2", "--out",
         str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    (results,) = tmp_path.glob("*.json")
    data = json.loads(results.read_text())
    (run,) = data["runs"]
    result = run["result"]
    assert "error" not in result, run
    assert result["nodes"] == 2
    assert result["clients_per_node"] == [5, 5]
    # Both nodes' clients got broadcasts: the second node's only came through Redis.
    assert all(rate > 0 for rate in result["deliveries_per_s_per_node"])
    assert len(result["server_cpu_s_per_node"]) == 2
