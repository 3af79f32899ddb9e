"""Micro-benchmark plumbing: our implementation beside python-socketio's, and a summary.

Every benchmark is parametrized by ``impl`` (``ours`` / ``python-socketio``) and lives in
a pytest-benchmark group named after the operation, so pytest-benchmark's own table
already shows both times with their ratio in parentheses. The summary printed at the end
puts the two medians of each group on one line with ``theirs / ours``.
"""

from __future__ import annotations

import pytest

IMPLS = ("ours", "python-socketio")
#: Groups whose benchmark covers many operations, with the per-operation divisor.
PER_OP_DIVISORS: dict[str, tuple[int, str]] = {}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "per_op(count, unit): report time per unit too")


@pytest.fixture(params=IMPLS)
def impl(request: pytest.FixtureRequest) -> str:
    if request.param == "python-socketio":
        pytest.importorskip("socketio")
        pytest.importorskip("engineio")
    marker = request.node.get_closest_marker("per_op")
    bench = request.node.get_closest_marker("benchmark")
    if marker is not None and bench is not None:
        PER_OP_DIVISORS[bench.kwargs["group"]] = marker.args
    return str(request.param)


def _fmt(seconds: float) -> str:
    ns = seconds * 1e9
    if ns < 10_000:
        return f"{ns:,.0f} ns"
    if ns < 10_000_000:
        return f"{ns / 1000:,.1f} us"
    return f"{ns / 1e6:,.2f} ms"


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    session = getattr(terminalreporter.config, "_benchmarksession", None)
    if session is None or getattr(session, "disabled", False):
        return
    medians: dict[str, dict[str, float]] = {}
    for bench in session.benchmarks:
        if not bench.has_error and bench.stats and bench.stats.rounds:
            impl = (bench.params or {}).get("impl")
            if impl in IMPLS:
                medians.setdefault(bench.group or bench.name, {})[impl] = bench.stats.median
    if not medians:
        return
    write = terminalreporter.write_line
    terminalreporter.section("ours vs python-socketio (medians; ratio = theirs / ours)")
    write(f"{'operation':<28} {'ours':>12} {'python-socketio':>16} {'ratio':>8}   per op")
    for group in sorted(medians):
        ours = medians[group].get("ours")
        theirs = medians[group].get("python-socketio")
        ratio = f"{theirs / ours:.2f}x" if ours and theirs else "-"
        extra = ""
        if group in PER_OP_DIVISORS:
            count, unit = PER_OP_DIVISORS[group]
            parts = [f"{name} {_fmt(v / count)}" for name, v in (("ours", ours), ("theirs", theirs))
                     if v]
            extra = f"per {unit}: " + ", ".join(parts)
        write(
            f"{group:<28} {_fmt(ours) if ours else '-':>12} "
            f"{_fmt(theirs) if theirs else '-':>16} {ratio:>8}   {extra}"
        )
