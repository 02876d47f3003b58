"""Strict checkpoint loading: nested keys, prefixes, and messages that list every difference."""

from __future__ import annotations

import pytest

from nfbench.models.base import ModelError

torch = pytest.importorskip("torch")

from nfbench.models.blocks.checkpoints import load_checkpoint, read_state_dict  # noqa: E402


class _Opaque:
    """An object a ``weights_only`` load must refuse."""


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv3d(1, 2, 3), torch.nn.ReLU(), torch.nn.Conv3d(2, 3, 1))


def _weights(net):
    return {k: v.clone() for k, v in net.state_dict().items()}


def test_nested_key_and_prefix_load_every_tensor(tmp_path):
    source = _net()
    with torch.no_grad():
        for p in source.parameters():
            p.add_(1.0)  # differs from a fresh network's initialisation
    path = tmp_path / "ckpt.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in _weights(source).items()}}, path)
    target = _net()
    load_checkpoint(target, path, model_name="tiny", key="state_dict", strip_prefix="module.")
    for name, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[name], value)
    assert sorted(read_state_dict(path, model_name="tiny", key=("state_dict",))) == [
        "module.0.bias", "module.0.weight", "module.2.bias", "module.2.weight"]


def test_renamed_and_reshaped_keys_are_listed(tmp_path):
    state = _weights(_net())
    state["2.weights"] = state.pop("2.weight")
    state["0.bias"] = torch.zeros(5)
    path = tmp_path / "renamed.pt"
    torch.save(state, path)
    with pytest.raises(ModelError) as caught:
        load_checkpoint(_net(), path, model_name="tiny")
    message = str(caught.value)
    assert "model 'tiny'" in message and "renamed.pt" in message
    assert "1 missing key(s): 2.weight" in message and "1 unexpected key(s): 2.weights" in message
    assert "1 shape mismatch(es): 0.bias (file (5,), network (2,))" in message


def test_a_forgotten_prefix_is_named(tmp_path):
    path = tmp_path / "dp.pt"
    torch.save({f"module.{k}": v for k, v in _weights(_net()).items()}, path)
    with pytest.raises(ModelError, match=r"4 missing key\(s\).*names start with 'module\.': strip that prefix"):
        load_checkpoint(_net(), path, model_name="tiny")


def test_unreadable_files_are_named(tmp_path):
    with pytest.raises(ModelError, match=r"model 'tiny': weight file '.*absent\.pt' does not exist"):
        load_checkpoint(_net(), tmp_path / "absent.pt", model_name="tiny")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelError, match="corrupt.pt' cannot be read: corrupt or not a torch checkpoint"):
        load_checkpoint(_net(), corrupt, model_name="tiny")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ModelError, match="empty.pt' cannot be read: corrupt or not a torch checkpoint"):
        load_checkpoint(_net(), tmp_path / "empty.pt", model_name="tiny")
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"state_dict": _weights(_net()), "extra": _Opaque()}, unsafe)
    with pytest.raises(ModelError, match=r"holds objects other than tensors and plain containers \(.*_Opaque\), which a weights_only"):
        load_checkpoint(_net(), unsafe, model_name="tiny", key="state_dict")


def test_missing_entry_and_non_state_dicts(tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save({"model": _weights(_net()), "epoch": 1}, path)
    with pytest.raises(ModelError, match=r"has no entry 'state_dict' \(it holds: model, epoch\)"):
        read_state_dict(path, model_name="tiny", key="state_dict")
    with pytest.raises(ModelError, match="is not a state dict .*under one of: model"):
        read_state_dict(path, model_name="tiny")
