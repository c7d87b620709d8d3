"""The security suite: quick versions run in ``make test``; the long runs carry the ``soak`` marker and run
only when asked for (``pytest -m soak -s tests/security``)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "soak: long runs (make soak); skipped unless -m soak")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "soak" in (config.getoption("markexpr", "") or ""):
        return
    skip = pytest.mark.skip(reason="soak run: use pytest -m soak -s tests/security")
    for item in items:
        if item.get_closest_marker("soak") is not None and "tests/security" in str(item.fspath):
            item.add_marker(skip)
