"""The reliability suite: quick versions run in ``make test``; the long ones carry the ``soak`` marker and
run only when asked for (``make soak``, i.e. ``pytest -m soak -s tests/reliability``)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "soak: long reliability runs (make soak); skipped unless -m soak")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "soak" in (config.getoption("markexpr", "") or ""):
        return
    skip = pytest.mark.skip(reason="soak run: use `make soak` (pytest -m soak -s tests/reliability)")
    for item in items:
        if item.get_closest_marker("soak") is not None:
            item.add_marker(skip)
