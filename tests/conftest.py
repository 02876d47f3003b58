"""Fixtures shared by several test folders: a tiny phantom dataset built once per test run."""

from __future__ import annotations

from pathlib import Path

import pytest

from nfbench.phantom import write_phantom_dataset


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two training cases and one case in each test set, tiny size; do not modify it."""
    root = tmp_path_factory.mktemp("phantom") / "data"
    write_phantom_dataset(root, cases=2, test_cases=1, size="tiny", burden="low", seed=7, progress=False)
    return root
