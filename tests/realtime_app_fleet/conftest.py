"""Fixtures of the gateway fleet tests: see :mod:`tests.realtime_app_fleet.fleet`.

``fleet`` is shared by a module (a private Redis, two nodes, HAProxy; users are unique per
test); tests that kill, restart or break something start their own with ``running_fleet``.
Everything skips with the reason when haproxy, redis-server or Node is missing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .fleet import Fleet, FleetPuppet, running_fleet


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    with running_fleet(nodes=2) as running:
        yield running


@pytest.fixture
def puppet(fleet: Fleet) -> Iterator[FleetPuppet]:
    driver = fleet.puppet()
    try:
        yield driver
    finally:
        driver.close()
        fleet.puppets.remove(driver)
