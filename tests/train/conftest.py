"""Fixtures of the training tests: a tiny phantom with folds, and one torch thread."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nfbench.io.splits import split_dataset
from nfbench.phantom import write_phantom_dataset

pytest.importorskip("torch")
pytest.importorskip("monai")


@pytest.fixture(scope="session")
def fold_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four tiny training cases (three patients) in two patient-grouped folds; do not modify it."""
    root = tmp_path_factory.mktemp("train") / "data"
    write_phantom_dataset(root, cases=4, test_cases=1, size="tiny", burden="low", seed=7, progress=False)
    split_dataset(root, folds=2)
    return root


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny networks: one thread (several threads on a loaded 2-core machine are many times slower)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def copy_of(tmp_path: Path):
    """A writable copy of a dataset folder."""

    def copy(root: Path) -> Path:
        return Path(shutil.copytree(root, tmp_path / "data"))

    return copy


@pytest.fixture()
def kill_after_first_checkpoint(monkeypatch):
    """``kill(start)`` calls ``start()`` and interrupts it (KeyboardInterrupt) right after its first
    ``last.pt`` is written, as a killed job; returns the epochs saved (``[1]``)."""
    from nfbench.train import loop

    def kill(start) -> list[int]:
        saves, real_save = [], loop._atomic_save

        def save_then_die(state, path):
            real_save(state, path)
            saves.append(state["epoch"])
            raise KeyboardInterrupt

        monkeypatch.setattr(loop, "_atomic_save", save_then_die)
        try:
            with pytest.raises(KeyboardInterrupt):
                start()
        finally:
            monkeypatch.setattr(loop, "_atomic_save", real_save)
        return saves

    return kill


@pytest.fixture()
def assert_same_last_weights():
    """``check(run_a, run_b)``: the networks in the two runs' ``last.pt`` are equal, tensor by tensor."""
    import torch

    def check(a: Path, b: Path) -> None:
        first = torch.load(a / "last.pt", weights_only=False)
        second = torch.load(b / "last.pt", weights_only=False)
        for key in first["net"]:
            assert torch.equal(first["net"][key], second["net"][key]), key

    return check
