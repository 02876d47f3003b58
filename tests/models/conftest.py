"""Fixtures of the model tests."""

from __future__ import annotations

import pytest


@pytest.fixture()
def one_torch_thread():
    """Tiny tensors: one thread (several threads on a loaded 2-core machine are many times slower)."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
