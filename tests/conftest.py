"""Suite-wide fixtures."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """A run with ``threads=N`` sets torch's process-wide thread count; put it back so no
    test's numbers depend on which tests ran before it in the same process."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
