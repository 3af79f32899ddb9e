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
        # --no-cov: this inner run must not write (and erase) the outer run's coverage data
        [sys.executable, "-m", "pytest", "benchmarks/micro", "--benchmark-disable", "-q",
         "-p", "no:cacheprovider", "--no-cov"],
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


def test_load_harness_smoke_gateway(tmp_path: Path) -> None:
    """gateway-pm: python -m realtime_app on one node and on two, private messages with acks
    and storage; the run's Redis keys (a REDIS_PREFIX of its own) are deleted afterwards."""
    if shutil.which("node") is None:
        pytest.skip("Node.js is required by the load generator")
    redis = pytest.importorskip("redis")
    from benchmarks.load.harness import redis_ping

    why = redis_ping("redis://127.0.0.1:6379")
    if why is not None:
        pytest.skip(f"no Redis: {why}")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "run", "--smoke", "gateway-pm", "--out",
         str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    (results,) = tmp_path.glob("*.json")
    data = json.loads(results.read_text())
    runs = {run["case"]: run for run in data["runs"]}
    assert set(runs) == {"gateway-pm-1node", "gateway-pm-2nodes"}
    for run in runs.values():
        result = run["result"]
        assert "error" not in result, run
        assert result["messages_per_s"] > 0
        assert result["delivery_ms"]["count"] > 0
        # Every acked message reached its receiver, once; nothing refused.
        assert result["refused"] == 0
        assert result["duplicates"] == 0
        assert result["lost_after_ack"] == 0
        assert run["redis_keys_deleted"] >= 0
        client = redis.Redis.from_url("redis://127.0.0.1:6379")
        left = list(client.scan_iter(match=run["redis_prefix"] + "*", count=1000))
        client.close()
        assert not left, f"keys left behind: {left[:5]}"
    two = runs["gateway-pm-2nodes"]["result"]
    assert two["nodes"] == 2 and two["receiver_node"] == 1
    assert len(two["server_cpu_s_per_node"]) == 2
    assert "ratio_to_baseline" in data["summary"]["gateway-pm-2nodes"]
    assert "gateway-pm" in (tmp_path / results.name.replace(".json", ".md")).read_text()
