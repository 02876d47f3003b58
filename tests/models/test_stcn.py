"""STCN: the published ``stcn.pth`` layout loads strictly, and propagation through a frame stack (cache, stops, limits)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from nfbench.models.base import ModelError  # noqa: E402
from nfbench.models.blocks.checkpoints import load_checkpoint  # noqa: E402
from nfbench.models.stcn import Propagator, STCNConfig, build_network, load_weights, passes  # noqa: E402


def _bn(prefix: str, n: int) -> dict[str, tuple]:
    return {f"{prefix}.{k}": (n,) for k in ("weight", "bias", "running_mean", "running_var")} | {
        f"{prefix}.num_batches_tracked": ()}


def _conv(prefix: str, cout: int, cin: int, k: int, bias: bool) -> dict[str, tuple]:
    return {f"{prefix}.weight": (cout, cin, k, k)} | ({f"{prefix}.bias": (cout,)} if bias else {})


def _resblock(prefix: str, cin: int, cout: int) -> dict[str, tuple]:
    out = _conv(f"{prefix}.conv1", cout, cin, 3, True) | _conv(f"{prefix}.conv2", cout, cout, 3, True)
    return out | (_conv(f"{prefix}.downsample", cout, cin, 3, True) if cin != cout else {})


def published_layout(value_channels: int = 5) -> dict[str, tuple]:
    """Names and shapes of the published ``stcn.pth``, written from the facts of hkchengrex/STCN, not from our code.

    - ``model/network.py`` ``STCN``: ``key_encoder``, ``value_encoder``, ``key_proj`` (``KeyProjection(1024,
      keydim=64)``, its conv named ``key_proj``), ``key_comp`` (``Conv2d(1024, 512, 3)``), ``decoder``;
      the ``memory`` reader has no parameters, so ``eval_network.STCN`` (without it) loads the same keys;
    - ``model/modules.py`` ``KeyEncoder``: torchvision ``resnet50`` (convolutions without bias, bottleneck
      stride on the 3 × 3, ``downsample.0/1``) ``conv1``, ``bn1``, ``layer1`` kept as ``res2``, ``layer2``,
      ``layer3`` (3, 4, 6 blocks);
    - ``ValueEncoder``: ``mod_resnet.resnet18(extra_chan=2)`` (convolutions *with* bias; 3 + 2 = 5 input
      channels; ``ValueEncoderSO``: ``extra_chan=1``, 4) ``conv1``, ``bn1``, ``layer1..3`` (2 blocks each),
      ``fuser = FeatureFusionBlock(1024 + 256, 512)`` (``block1``, ``block2`` = ``ResBlock``: ``conv1``,
      ``conv2``, a 3 × 3 ``downsample`` when the width changes);
    - ``Decoder``: ``compress = ResBlock(1024, 512)``, ``up_16_8 = UpsampleBlock(512, 512, 256)``,
      ``up_8_4 = UpsampleBlock(256, 256, 256)`` (``skip_conv`` 3 × 3, ``out_conv`` ``ResBlock``),
      ``pred = Conv2d(256, 1, 3)``.
    """
    out: dict[str, tuple] = _conv("key_encoder.conv1", 64, 3, 7, False) | _bn("key_encoder.bn1", 64)
    cin = 64
    for name, planes, blocks in (("res2", 64, 3), ("layer2", 128, 4), ("layer3", 256, 6)):
        for b in range(blocks):
            p = f"key_encoder.{name}.{b}"
            out |= _conv(f"{p}.conv1", planes, cin, 1, False) | _bn(f"{p}.bn1", planes)
            out |= _conv(f"{p}.conv2", planes, planes, 3, False) | _bn(f"{p}.bn2", planes)
            out |= _conv(f"{p}.conv3", 4 * planes, planes, 1, False) | _bn(f"{p}.bn3", 4 * planes)
            if b == 0:
                out |= _conv(f"{p}.downsample.0", 4 * planes, cin, 1, False) | _bn(f"{p}.downsample.1", 4 * planes)
            cin = 4 * planes
    out |= _conv("value_encoder.conv1", 64, value_channels, 7, True) | _bn("value_encoder.bn1", 64)
    cin = 64
    for name, planes in (("layer1", 64), ("layer2", 128), ("layer3", 256)):
        for b in range(2):
            p = f"value_encoder.{name}.{b}"
            out |= _conv(f"{p}.conv1", planes, cin, 3, True) | _bn(f"{p}.bn1", planes)
            out |= _conv(f"{p}.conv2", planes, planes, 3, True) | _bn(f"{p}.bn2", planes)
            if b == 0 and cin != planes:
                out |= _conv(f"{p}.downsample.0", planes, cin, 1, True) | _bn(f"{p}.downsample.1", planes)
            cin = planes
    out |= _resblock("value_encoder.fuser.block1", 1280, 512) | _resblock("value_encoder.fuser.block2", 512, 512)
    out |= _conv("key_proj.key_proj", 64, 1024, 3, True) | _conv("key_comp", 512, 1024, 3, True)
    out |= _resblock("decoder.compress", 1024, 512)
    out |= _conv("decoder.up_16_8.skip_conv", 512, 512, 3, True) | _resblock("decoder.up_16_8.out_conv", 512, 256)
    out |= _conv("decoder.up_8_4.skip_conv", 256, 256, 3, True) | _resblock("decoder.up_8_4.out_conv", 256, 256)
    return out | _conv("decoder.pred", 1, 256, 3, True)


def _file(layout: dict[str, tuple], path, **values) -> None:
    """A state dict of ``layout`` in a small file (stride-0 tensors keep one number each)."""
    state = {k: values.get(k, torch.zeros((), dtype=torch.long if k.endswith("tracked") else torch.float32)
                           .expand(shape)) for k, shape in layout.items()}
    torch.save(state, path)


@pytest.fixture(scope="module")
def original():
    return build_network("original")


def test_the_network_has_the_published_names_and_shapes(original):
    ours = {k: tuple(v.shape) for k, v in original.state_dict().items()}
    assert ours == published_layout()
    assert sum(p.numel() for p in original.parameters()) == 54_400_769


def test_the_published_layout_loads_strictly_and_a_wrong_one_names_its_faults(original, tmp_path):
    _file(published_layout(), tmp_path / "stcn.pth")
    load_checkpoint(original, tmp_path / "stcn.pth", model_name="stcn")
    load_weights(original, tmp_path / "stcn.pth")
    wrong = published_layout()
    del wrong["decoder.pred.bias"]
    wrong["key_comp.weight"] = (256, 1024, 3, 3)
    _file(wrong, tmp_path / "wrong.pth")
    with pytest.raises(ModelError, match=r"wrong.pth.*does not fit STCN \(original\).*1 missing key.*decoder.pred.bias"
                                         r".*key_comp.weight \(file \(256, 1024, 3, 3\), network \(512, 1024, 3, 3\)\)"):
        load_weights(original, tmp_path / "wrong.pth")


def test_a_single_object_file_gets_a_zero_other_objects_filter(original, tmp_path):
    conv1 = torch.randn(64, 4, 7, 7)
    _file(published_layout(value_channels=4), tmp_path / "so.pth", **{"value_encoder.conv1.weight": conv1})
    load_weights(original, tmp_path / "so.pth")
    loaded = original.state_dict()["value_encoder.conv1.weight"]
    assert torch.equal(loaded[:, :4], conv1) and not loaded[:, 4].any()
    four = build_network(STCNConfig(value_channels=4))
    load_weights(four, tmp_path / "so.pth")  # a 4-channel network takes it as it is
    with pytest.raises(ModelError, match="value_encoder.conv1.weight"):
        _file(published_layout(), tmp_path / "mo.pth")
        load_weights(four, tmp_path / "mo.pth")


def test_the_reduced_network_keeps_the_names_and_fits_in_5_mb(tmp_path):
    reduced = build_network("reduced")
    assert set(reduced.state_dict()) <= set(published_layout())
    torch.save(reduced.state_dict(), tmp_path / "r.pt")
    assert (tmp_path / "r.pt").stat().st_size <= 5 * 2**20
    load_weights(build_network("reduced"), tmp_path / "r.pt")
    torch.save({"net": reduced.state_dict()}, tmp_path / "last.pt")  # a training run's last.pt
    load_weights(build_network("reduced"), tmp_path / "last.pt")


def test_passes_take_each_frame_from_its_nearest_annotated_frame():
    assert passes([5], 0, 9) == [(5, [4, 3, 2, 1, 0]), (5, [6, 7, 8, 9])]
    assert passes([2, 7], 0, 9) == [(2, [1, 0]), (2, [3, 4]), (7, [6, 5]), (7, [8, 9])]
    assert passes([2, 6], 0, 9) == [(2, [1, 0]), (2, [3, 4]), (6, [5]), (6, [7, 8, 9])]  # the tie to the earlier
    assert passes([2, 3], 1, 4) == [(2, [1]), (3, [4])]
    assert passes([5], 3, 6) == [(5, [4, 3]), (5, [6])]


class _Brightness(torch.nn.Module):
    """A stand-in for STCN: the object is wherever the frame is bright; records the memory it reads."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[tuple[int, int]] = []  # (query frame's mean brightness id, memory positions)

    def encode_key(self, images):
        small = images[:, :1, ::16, ::16]
        return small, images[:, :1], small, small, small

    def encode_value(self, images, f16, mask):
        return torch.ones_like(f16)

    def segment(self, key, comp, f8, f4, memory_keys, memory_values, top_k=None):
        self.reads.append(memory_keys.shape[2] // key[0, 0].numel())
        logit = 20 * (comp - 1.0)  # normalised brightness above 1 (≈ 0.7 of the 8-bit range)
        return torch.cat([-logit, logit], 1), torch.sigmoid(2 * logit)


def _stack(n=12, present=range(3, 8)):
    frames = np.full((n, 40, 24), 60, np.uint8)
    for t in present:
        frames[t, 10:20, 5:15] = 250
    return frames


def test_propagation_stops_where_the_object_ends_and_within_the_limit():
    frames, network = _stack(), _Brightness()
    truth = frames[5] > 128
    out = Propagator(network, frames).propagate({5: truth})
    assert sorted(out) == list(range(2, 9))  # the first empty frame each way (2 and 8) is reached, nothing beyond
    assert [t for t in sorted(out) if out[t].any()] == [3, 4, 5, 6, 7]
    assert all(np.array_equal(out[t], truth) for t in range(3, 8))
    assert network.reads == [1, 2, 3, 1, 2, 3]  # memory: the annotated frame, then each propagated one
    assert sorted(Propagator(network, frames).propagate({5: truth}, stop_empty=False)) == list(range(12))
    assert sorted(Propagator(network, frames).propagate({5: truth}, limit=(4, 6))) == [4, 5, 6]
    every = _Brightness()
    Propagator(every, frames, mem_every=2).propagate({5: truth})
    assert every.reads == [1, 2, 2, 1, 2, 2]  # frame 1 of a pass is the temporary last frame, frame 2 kept


def test_annotated_frames_come_back_as_given_and_bad_masks_are_refused():
    frames, network = _stack(), _Brightness()
    given = {4: frames[4] > 128, 9: np.zeros((40, 24), bool)}
    given[4][0, 0] = True
    out = Propagator(network, frames).propagate(given)
    assert np.array_equal(out[4], given[4]) and out[4] is not given[4] and not out[9].any()
    assert sorted(out) == [2, 3, 4, 5, 6, 9]  # frames 7–11 are nearer 9, which is empty: not propagated
    with pytest.raises(ValueError, match="annotated frame 3: a mask of shape"):
        Propagator(network, frames).propagate({3: np.zeros((4, 4), bool)})
    with pytest.raises(ValueError, match="uint8 frames"):
        Propagator(network, frames.astype(float))


def test_cached_keys_give_exactly_the_uncached_answers_and_are_computed_once():
    torch.manual_seed(0)
    network = build_network("reduced")
    frames = (np.random.default_rng(0).random((6, 70, 50)) * 255).astype(np.uint8)
    mask = np.zeros((70, 50), bool)
    mask[20:40, 10:30] = True
    cached, uncached = Propagator(network, frames), Propagator(network, frames, cache=False)
    for annotated in ({2: mask}, {2: mask, 4: np.roll(mask, 5, axis=1)}):
        a = cached.propagate(annotated, stop_empty=False)
        b = uncached.propagate(annotated, stop_empty=False)
        assert sorted(a) == sorted(b) == list(range(6))
        assert all(np.array_equal(a[t], b[t]) for t in a)
    assert cached.keys_encoded == 6 and uncached.keys_encoded > 12
    scaled = Propagator(network, frames, max_side=32).propagate({2: mask}, stop_empty=False)
    assert all(m.shape == (70, 50) for m in scaled.values())


def test_the_shipped_phantom_weights_load_strictly_and_follow_a_phantom_lesion():
    """From the lesion's largest frame alone, through the frames it spans (stop_empty), on a phantom case not trained on."""
    from pathlib import Path

    from nfbench.lesions import instance_map
    from nfbench.models.blocks.frames import FrameStack
    from nfbench.phantom import make_case

    weights = Path(__file__).resolve().parents[2] / "src" / "nfbench" / "models" / "weights" / "stcn-phantom.pt"
    assert weights.stat().st_size <= 5 * 2**20
    network = build_network("reduced")
    load_weights(network, weights)
    image, label = make_case(size="small", burden="high", rng=3).volumes(image_dtype=np.float32)
    stack = FrameStack.of(image.shape, image.spacing)
    frames = stack.frames(np.asarray(image.data))
    labels = np.stack([stack.frame(instance_map(np.asarray(label.data)), n) for n in range(stack.n_frames)])
    ids, sizes = np.unique(labels[labels > 0], return_counts=True)
    lesion = labels == ids[np.argmax(sizes)]
    frame = int(np.argmax(lesion.sum(axis=(1, 2))))
    out = Propagator(network, frames).propagate({frame: lesion[frame]})
    pred = np.stack([out.get(t, np.zeros_like(lesion[0])) for t in range(len(frames))])
    others = [t for t in range(len(frames)) if t != frame]
    dice = 2 * (pred[others] & lesion[others]).sum() / (pred[others].sum() + lesion[others].sum())
    assert dice > 0.2, dice  # 0.30 on this 22-frame lesion (0.33–0.67 on the next four largest); random weights: ≈ 0
