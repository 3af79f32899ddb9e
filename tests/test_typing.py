"""mypy --strict over the packages ([tool.mypy] in pyproject.toml), and over
tests/typing_usage.py: what the public handler types accept and refuse.

mypy comes with the dev extra (with msgpack-types, the msgpack stubs); its cache in
.mypy_cache keeps a rerun to a second or two.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_mypy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )


def test_packages_pass_mypy_strict() -> None:
    result = run_mypy()  # the packages and options of pyproject.toml
    assert result.returncode == 0, f"mypy --strict failed:\n{result.stdout}{result.stderr}"


def test_handler_types_accept_and_refuse_what_they_should() -> None:
    result = run_mypy("tests/typing_usage.py")
    assert result.returncode == 0, f"mypy --strict failed:\n{result.stdout}{result.stderr}"
