"""Fixtures for the harness's own tests."""

from __future__ import annotations

import pytest

INNER_INI = """\
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
markers =
    redis: x
    sentinel: x
    etcd: x
    slow: x
"""


@pytest.fixture
def inner_pytester(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester whose inner runs load the harness plugin with this project's asyncio settings."""
    pytester.makeconftest('pytest_plugins = ["tests._harness.plugin"]')
    pytester.makeini(INNER_INI)
    return pytester
