"""A real run folder made once for the report tests (engine + oracle models on the tiny phantom)."""

from __future__ import annotations

import pytest

from tests.results._runs import make_run


@pytest.fixture(scope="session")
def oracle_run(tiny_dataset, tmp_path_factory):
    """Two oracle models (one perfect, one that misses every other lesion) on lesion-corrective and
    global-corrective, one case in each of two test sets; do not modify it."""
    return make_run(tiny_dataset, tmp_path_factory.mktemp("runs") / "run")
