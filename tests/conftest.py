"""Suite-wide fixtures, and the order the suite runs in.

``LRLAB_TEST_ORDER=reverse`` runs the collected tests in reverse order (last module first,
and within each module the last test first), to show a test that passes only because of
what ran before it::

    LRLAB_TEST_ORDER=reverse python -m pytest

Unset (or ``default``), the order is pytest's own, unchanged.
"""

from __future__ import annotations

import os

import pytest
import torch

#: the environment variable that chooses the order: "default" or "reverse"
ORDER_VARIABLE = "LRLAB_TEST_ORDER"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    order = os.environ.get(ORDER_VARIABLE, "default").strip().lower() or "default"
    if order == "reverse":
        items.reverse()
    elif order != "default":
        raise pytest.UsageError(f"{ORDER_VARIABLE}={order!r}: expected 'default' or 'reverse'")


def pytest_report_header(config: pytest.Config) -> str | None:
    order = os.environ.get(ORDER_VARIABLE, "").strip().lower()
    return f"{ORDER_VARIABLE}={order}" if order and order != "default" else None


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """A run with ``threads=N`` sets torch's process-wide thread count; put it back so no
    test's numbers depend on which tests ran before it in the same process."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
