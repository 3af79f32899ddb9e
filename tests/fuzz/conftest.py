"""The fuzz suite: see tests/fuzz/support.py for FUZZ_EXAMPLES and the nightly run."""

from __future__ import annotations

import pytest

from .support import LONG_RUN


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if LONG_RUN:  # hours of examples: pytest's per-test timeout would cut the run
        for item in items:
            if "tests/fuzz/" in item.nodeid.replace("\\", "/"):
                item.add_marker(pytest.mark.timeout(0))
