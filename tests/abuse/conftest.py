"""Fixtures of the abuse suite.

``abuse`` gives a :class:`Harness`: ``await h.start(env)`` starts a fresh gateway process
(memory store; Redis with ``ABUSE_REDIS_URL``), ``await h.begin()`` starts the well-behaved
clients (:mod:`tests.abuse.observer`) and the RSS sampler, ``await h.end()`` stops them and
fills ``h.record`` (RSS growth and peak, worst /healthz latency, normal clients' worst
latency, served or not). The record is written to the report file at teardown with the
test's outcome, whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from .support import (
    JWT_SECRET,
    MIB,
    REPO_ROOT,
    Gateway,
    RssSampler,
    add_to_report,
    reset_report,
)

FULL = os.environ.get("ABUSE_FULL") == "1"
NORMAL_CLIENTS = 5
OBSERVER_STOP_TIMEOUT = 60.0


def _raise_fd_limit() -> None:
    # The churn attack holds thousands of sockets here and in the gateway, which inherits
    # this limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


_raise_fd_limit()


@pytest.fixture(scope="session", autouse=True)
def _fresh_report() -> Iterator[None]:
    reset_report({"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "full": FULL, "redis": bool(os.environ.get("ABUSE_REDIS_URL")),
                  "cpus": os.cpu_count()})
    yield


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def mib(value: int | None) -> float | None:
    return None if value is None else round(value / MIB, 1)


class Harness:
    def __init__(self, name: str) -> None:
        self.name = name
        self.gateway: Gateway | None = None
        self.prefix = f"normal{uuid.uuid4().hex[:6]}"
        self.normal_users = [f"{self.prefix}-{i}" for i in range(NORMAL_CLIENTS)]
        self.record: dict[str, Any] = {"test": name, "attack": name}
        self.observed: dict[str, Any] | None = None
        self._observer: asyncio.subprocess.Process | None = None
        self._sampler: RssSampler | None = None
        self._rss_before = 0
        self._log_offset = 0
        self._redis_prefix: str | None = None

    @property
    def gw(self) -> Gateway:
        assert self.gateway is not None, "start() first"
        return self.gateway

    @property
    def port(self) -> int:
        return self.gw.port

    async def start(self, env: dict[str, str] | None = None) -> Gateway:
        env = dict(env or {})
        redis_url = os.environ.get("ABUSE_REDIS_URL")
        if redis_url:
            self._redis_prefix = f"abuse:{uuid.uuid4().hex[:10]}:"
            env.setdefault("REDIS_URL", redis_url)
            env.setdefault("REDIS_PREFIX", self._redis_prefix)
        self.gateway = await Gateway(env).start()
        return self.gateway

    async def begin(self) -> None:
        """Normal clients connected and probing; RSS baseline taken; sampling starts."""
        env = {**os.environ, "ABUSE_JWT_SECRET": JWT_SECRET,
               "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self._observer = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.abuse.observer", str(self.port), self.prefix,
            str(NORMAL_CLIENTS), cwd=REPO_ROOT, env=env, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE)
        assert self._observer.stdout is not None
        line = await asyncio.wait_for(self._observer.stdout.readline(), 60)
        if line.strip() != b"READY":
            raise AssertionError(f"observer did not start: {line!r}\n{self.gw.log_tail()}")
        # Let the connections settle before the baseline.
        await asyncio.sleep(0.5)
        self._rss_before = self.gw.rss() or 0
        self._log_offset = self.gw.log_size()
        self._sampler = RssSampler(self.gw.pid).start()
        self._attack_started = time.monotonic()

    def attack_log(self) -> str:
        """What the gateway logged since begin()."""
        return self.gw.log_since(self._log_offset)

    async def end(self, settle: float = 1.0, broadcasts: int = 0) -> dict[str, Any]:
        """Stop the normal clients (who must each have received ``broadcasts`` broadcasts);
        record the measurements. Returns the observer's JSON."""
        self.record["attack_s"] = round(time.monotonic() - self._attack_started, 2)
        assert self._observer is not None and self._observer.stdin is not None
        self._observer.stdin.write(b"stop %d\n" % broadcasts)
        with contextlib.suppress(OSError):
            await self._observer.stdin.drain()
        assert self._observer.stdout is not None
        observed: dict[str, Any] = {"served": False, "error": "observer gave no result"}
        try:
            line = await asyncio.wait_for(self._observer.stdout.readline(),
                                          OBSERVER_STOP_TIMEOUT)
            if line.strip():
                observed = json.loads(line)
        except (TimeoutError, ValueError) as exc:
            observed["error"] = f"observer: {exc!r}"
        await asyncio.sleep(settle)
        after = self.gw.rss()
        peak = self._sampler.stop() if self._sampler else 0
        if after is not None:
            peak = max(peak, after)
        self.observed = observed
        self.record.update({
            "served": observed.get("served", False),
            "gateway_alive": self.gw.alive(),
            "rss_before_mib": mib(self._rss_before),
            "rss_after_mib": mib(after),
            "rss_growth_mib": mib(after - self._rss_before) if after is not None else None,
            "rss_peak_mib": mib(peak),
            "rss_peak_growth_mib": mib(peak - self._rss_before),
            "healthz_worst_ms": observed.get("healthz_worst_ms"),
            "healthz_p99_ms": observed.get("healthz_p99_ms"),
            "clients_worst_ms": observed.get("clients_worst_ms"),
            "clients_p99_ms": observed.get("clients_p99_ms"),
            "observer": {k: v for k, v in observed.items() if k != "served"},
        })
        return observed

    def peak_growth(self) -> float:
        return float(self.record.get("rss_peak_growth_mib") or 0.0)

    def growth(self) -> float:
        return float(self.record.get("rss_growth_mib") or 0.0)

    def assert_served(self) -> None:
        observed = self.observed or {}
        assert self.gw.alive(), f"the gateway died:\n{self.gw.log_tail()}"
        assert observed.get("served"), (
            "normal clients were not all served: "
            + json.dumps({k: observed.get(k) for k in (
                "error", "sent", "acked", "ack_errors", "ack_error_count", "ack_timeouts",
                "missing", "disconnects", "healthz_failures", "broadcasts_short")}))

    async def close(self) -> None:
        if self._sampler is not None:
            self._sampler.stop()
        if self._observer is not None and self._observer.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._observer.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._observer.wait(), 5)
        if self.gateway is not None:
            await self.gateway.stop()
        if self._redis_prefix:
            await asyncio.to_thread(_delete_redis_keys, self._redis_prefix)


def _delete_redis_keys(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(os.environ["ABUSE_REDIS_URL"])
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start:start + 500])
    finally:
        client.close()


@pytest.fixture
async def abuse(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    harness = Harness(request.node.name)
    try:
        yield harness
    finally:
        await harness.close()
        call = getattr(request.node, "rep_call", None)
        if call is None:
            outcome = "error"
        elif call.skipped:
            outcome = "skipped"
        else:
            outcome = "passed" if call.passed else "failed"
        harness.record["outcome"] = outcome
        if call is not None and call.failed:
            text = str(call.longrepr.reprcrash.message if hasattr(call.longrepr, "reprcrash")
                       and call.longrepr.reprcrash else call.longrepr)
            harness.record["failure"] = text.splitlines()[0][:300] if text else ""
        if harness.gateway is not None:
            if outcome == "passed":
                harness.gateway.remove_log()
            else:
                harness.record["gateway_log"] = str(harness.gateway.log_path)
        add_to_report(harness.record)
