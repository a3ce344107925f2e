"""pytest fixture for the fake Anthropic server.

Use from a conftest.py with ``from tests.fake_anthropic.pytest_plugin import fake_anthropic``
(or list this module in ``pytest_plugins`` of the root conftest).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .client import FakeAnthropic


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    """A fresh fake Anthropic server for one test, stopped afterwards."""
    with FakeAnthropic() as fake:
        yield fake
