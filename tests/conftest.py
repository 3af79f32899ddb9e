"""The sans-I/O cores stay at 100% branch coverage (see the README's Tests section).

Coverage is measured on every run (``addopts`` in pyproject.toml, pytest-cov). The cores are
the files below: both codecs and the session state machine, with the timer wheel it runs on.
Their unit tests alone cover every branch, without relying on hypothesis' random examples, so
the check is applied whenever all of ``CORE_TESTS`` ran: the whole suite, a run of their
folders, or of those files. A run of a single file or with ``-k`` / ``-m`` deselecting some
of them is not checked (it cannot cover everything), nor a run stopped early (``-x``).
"""

from __future__ import annotations

import io
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]

CORE_FILES = (
    "engineio_core/packet.py",
    "engineio_core/session.py",
    "engineio_core/timers.py",
    "socketio_core/packet.py",
    "socketio_core/msgpack_parser.py",
)
CORE_TESTS = (
    "tests/engineio_core/test_packet.py",
    "tests/engineio_core/test_session.py",
    "tests/engineio_core/test_timers.py",
    "tests/socketio_core/test_packet.py",
    "tests/socketio_core/test_msgpack_parser.py",
)

_deselected_paths: set[str] = set()
_core_result: list[str] = []  # the line written in the terminal summary


def _relative(item: pytest.Item) -> str:
    return Path(item.path).resolve().relative_to(ROOT).as_posix()


def pytest_deselected(items: list[pytest.Item]) -> None:
    for item in items:
        _deselected_paths.add(_relative(item))


def _all_core_tests_ran(session: pytest.Session) -> bool:
    if session.shouldstop or session.shouldfail or session.config.option.collectonly:
        return False
    selected = {_relative(item) for item in session.items}
    return all(path in selected and path not in _deselected_paths for path in CORE_TESTS)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, Any, Any]:
    # Outermost wrapper: pytest-cov's own wrapper has stopped, saved and combined the
    # coverage data when this code after ``yield`` runs.
    result = yield
    cov_plugin = session.config.pluginmanager.getplugin("_cov")
    controller = getattr(cov_plugin, "cov_controller", None)
    if controller is None or getattr(cov_plugin, "_disabled", True):
        return result  # --no-cov
    if not _all_core_tests_ran(session):
        return result
    from coverage.exceptions import CoverageException

    report = io.StringIO()
    try:
        percent = controller.cov.report(
            include=[str(ROOT / path) for path in CORE_FILES],
            show_missing=True,
            skip_covered=False,
            file=report,
        )
    except CoverageException as exc:  # e.g. a core file never imported
        percent, report = 0.0, io.StringIO(f"{exc}\n")
    if percent < 100.0:
        _core_result.append(
            "FAIL sans-I/O cores below 100% branch coverage (tests/conftest.py):\n"
            + report.getvalue()
        )
        session.testsfailed += 1  # the run fails (exit status 1), as pytest-cov's fail-under
    else:
        _core_result.append(f"sans-I/O cores: 100% branch coverage ({len(CORE_FILES)} files)\n")
    return result


@pytest.hookimpl(trylast=True)  # after pytest-cov's table
def pytest_terminal_summary(terminalreporter: Any) -> None:
    for text in _core_result:
        failed = text.startswith("FAIL")
        terminalreporter.write(text, red=failed, bold=failed, green=not failed)
