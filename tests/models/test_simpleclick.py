"""`simpleclick`: the original's parameter layout, checkpoint formats, MAE init, click disks, the predictor and its cache."""

from __future__ import annotations

import numpy as np
import pytest

from nfbench.models.base import ModelError

torch = pytest.importorskip("torch")

from nfbench.models.blocks.checkpoints import load_checkpoint  # noqa: E402
from nfbench.models.simpleclick import (  # noqa: E402
    ORIGINAL, REDUCED, SimpleClickConfig, SliceClicker, build_network, checkpoint_options, click_maps, crop_window,
    cut_square, load_mae_backbone, load_weights, model_pixel, paste_square, save_weights,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# A network small enough for a test, with the original's layout (depth 8: windowed and global blocks).
SMALL = SimpleClickConfig(image_size=64, patch_size=8, embed_dim=32, depth=8, heads=2, neck=(8, 16, 32, 64),
                          head_channels=16)


def original_layout(c: SimpleClickConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter of isegm's ``PlainVitModel`` (``use_disks=True, with_prev_mask=True``) and its shape,
    written from uncbiag/SimpleClick@f33112e: ``is_plainvit_model.py`` (``patch_embed_coords`` with 3
    input channels, ``SimpleFPN``), ``models_vit.py`` (``VisionTransformer``: ``cls_token``, ``pos_embed``
    of N + 1 tokens, ``blocks``, ``fc_norm``, a 1000-class ``head``), ``swin_transformer.py``
    (``SwinTransfomerSegHead``: mmcv ``ConvModule``s without norm, so biased ``.conv``; ``up_conv1`` and
    ``up_conv2`` built whatever ``upsample``) and ``decode_head.py`` (``conv_seg`` to 1 class)."""
    e, p, n = c.embed_dim, c.patch_size, c.grid ** 2
    o = c.neck
    keys: dict[str, tuple[int, ...]] = {
        "patch_embed_coords.proj.weight": (e, 3, p, p), "patch_embed_coords.proj.bias": (e,),
        "backbone.cls_token": (1, 1, e), "backbone.pos_embed": (1, n + 1, e),
        "backbone.patch_embed.proj.weight": (e, 3, p, p), "backbone.patch_embed.proj.bias": (e,),
        "backbone.fc_norm.weight": (e,), "backbone.fc_norm.bias": (e,),
        "backbone.head.weight": (1000, e), "backbone.head.bias": (1000,),
    }
    hidden = int(e * c.mlp_ratio)
    for i in range(c.depth):
        b = f"backbone.blocks.{i}."
        keys.update({b + "norm1.weight": (e,), b + "norm1.bias": (e,), b + "norm2.weight": (e,), b + "norm2.bias": (e,),
                     b + "attn.qkv.weight": (3 * e, e), b + "attn.qkv.bias": (3 * e,),
                     b + "attn.proj.weight": (e, e), b + "attn.proj.bias": (e,),
                     b + "mlp.fc1.weight": (hidden, e), b + "mlp.fc1.bias": (hidden,),
                     b + "mlp.fc2.weight": (e, hidden), b + "mlp.fc2.bias": (e,)})

    def conv(name: str, out: int, inp: int, k: int) -> None:
        keys[name + ".weight"], keys[name + ".bias"] = (out, inp, k, k), (out,)

    def convt(name: str, inp: int, out: int) -> None:  # ConvTranspose2d weights are (in, out, k, k)
        keys[name + ".weight"], keys[name + ".bias"] = (inp, out, 2, 2), (out,)

    def gn(name: str, ch: int) -> None:
        keys[name + ".weight"], keys[name + ".bias"] = (ch,), (ch,)

    c4, c8, c32 = max(o[0] * 2, e // 2), max(o[1], e // 2), max(o[3], e * 2)
    convt("neck.down_4.0", e, c4), gn("neck.down_4.1", c4), convt("neck.down_4.3", c4, c4 // 2)
    gn("neck.down_4.4", c4 // 2), conv("neck.down_4.5", o[0], c4 // 2, 1), gn("neck.down_4.6", o[0])
    convt("neck.down_8.0", e, c8), gn("neck.down_8.1", c8), conv("neck.down_8.2", o[1], c8, 1), gn("neck.down_8.3", o[1])
    conv("neck.down_16.0", o[2], e, 1), gn("neck.down_16.1", o[2])
    conv("neck.down_32.0", c32, e, 2), gn("neck.down_32.1", c32), conv("neck.down_32.2", o[3], c32, 1)
    gn("neck.down_32.3", o[3])
    h = c.head_channels
    for i, ch in enumerate(o):
        conv(f"head.convs.{i}.conv", h, ch, 1)
    conv("head.fusion_conv.conv", h, 4 * h, 1)
    for name, inp in (("head.up_conv1", h), ("head.up_conv2", h // 2)):
        convt(name + ".0", inp, inp // 2), gn(name + ".1", inp // 2), conv(name + ".2", inp // 2, inp // 2, 1)
        gn(name + ".3", inp // 2)
    conv("head.conv_seg", 1, h, 1)
    return keys


@pytest.mark.parametrize("config", [ORIGINAL, REDUCED, SMALL], ids=["vit-b-1024", "reduced", "small"])
def test_parameters_have_the_original_names_and_shapes(config):
    with torch.device("meta"):  # ViT-B at 1024 without allocating it
        network = build_network(config)
    shapes = {k: tuple(v.shape) for k, v in network.state_dict().items()}
    assert shapes == original_layout(config)


def test_original_vit_b_size():
    layout = original_layout(ORIGINAL)
    assert layout["backbone.pos_embed"] == (1, 64 * 64 + 1, 768) and len([k for k in layout if ".attn.qkv.weight" in k]) == 12
    assert 80e6 < sum(int(np.prod(s)) for s in layout.values()) < 110e6


def test_a_state_dict_in_the_published_format_loads_strictly(tmp_path):
    layout = original_layout(SMALL)
    generator = torch.Generator().manual_seed(0)
    state = {k: torch.randn(s, generator=generator) for k, s in layout.items()}
    config = {"class": "isegm.model.is_plainvit_model.PlainVitModel",
              "params": {"use_disks": {"type": "builtin", "value": True, "specified": True}}}
    torch.save({"state_dict": state, "config": config}, tmp_path / "published.pth")
    network = build_network(SMALL)
    load_checkpoint(network, tmp_path / "published.pth", model_name="simpleclick", key="state_dict")
    assert all(torch.equal(network.state_dict()[k], v) for k, v in state.items())
    network = build_network(SMALL)
    load_weights(network, tmp_path / "published.pth")
    assert all(torch.equal(network.state_dict()[k], v) for k, v in state.items())
    del state["head.up_conv2.0.weight"]
    torch.save(state, tmp_path / "plain.pt")
    with pytest.raises(ModelError, match=r"does not fit SimpleClick \(image 64.*missing key.*head.up_conv2.0.weight"):
        load_weights(build_network(SMALL), tmp_path / "plain.pt")


def _isegm_checkpoint(path, state, config: SimpleClickConfig) -> None:
    """A file as isegm's ``save_checkpoint`` writes it: the ``config`` pickles isegm's own objects (the
    head's ``loss_decode=CrossEntropyLoss()``, a module holding a function), which nfbench cannot import."""
    import sys
    import types

    module = types.ModuleType("isegm.model.modeling.transformer_helper.cross_entropy_loss")

    def cross_entropy(*args):
        return None

    class CrossEntropyLoss(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.cls_criterion, self.loss_weight = cross_entropy, 1.0

    for thing in (cross_entropy, CrossEntropyLoss):
        thing.__module__ = module.__name__
        thing.__qualname__ = thing.__name__
        setattr(module, thing.__name__, thing)
    parts = module.__name__.split(".")
    parents = [".".join(parts[:n]) for n in range(1, len(parts))]
    sys.modules.update({name: types.ModuleType(name) for name in parents} | {module.__name__: module})
    try:
        def param(value):
            return {"type": "builtin", "value": value, "specified": True}

        params = {"use_disks": param(True), "norm_radius": param(5), "with_prev_mask": param(True),
                  "backbone_params": param({"img_size": (config.image_size,) * 2, "patch_size": (config.patch_size,) * 2,
                                            "in_chans": 3, "embed_dim": config.embed_dim, "depth": config.depth,
                                            "num_heads": config.heads, "mlp_ratio": 4, "qkv_bias": True}),
                  "neck_params": param({"in_dim": config.embed_dim, "out_dims": list(config.neck)}),
                  "head_params": param({"in_channels": list(config.neck), "in_index": [0, 1, 2, 3], "dropout_ratio": 0.1,
                                        "num_classes": 1, "loss_decode": CrossEntropyLoss(), "align_corners": False,
                                        "upsample": "x1", "channels": config.head_channels})}
        torch.save({"state_dict": state, "config": {"class": "isegm.model.is_plainvit_model.PlainVitModel",
                                                    "params": params}}, path)
    finally:
        for name in [*parents, module.__name__]:
            del sys.modules[name]


def test_a_published_checkpoint_with_isegm_objects_loads_without_running_them(tmp_path):
    state = {k: torch.randn(s) for k, s in original_layout(SMALL).items()}
    _isegm_checkpoint(tmp_path / "cocolvis_vit_small.pth", state, SMALL)
    with pytest.raises(ModelError, match="holds objects other than tensors"):  # a plain weights_only load refuses it
        load_checkpoint(build_network(SMALL), tmp_path / "cocolvis_vit_small.pth", model_name="simpleclick",
                        key="state_dict")
    options = checkpoint_options(tmp_path / "cocolvis_vit_small.pth")
    assert SimpleClickConfig.from_options(options) == SMALL
    network = build_network(SMALL)
    load_weights(network, tmp_path / "cocolvis_vit_small.pth")
    assert all(torch.equal(network.state_dict()[k], v) for k, v in state.items())
    import datetime

    torch.save({"state_dict": state, "config": datetime.date(2023, 1, 1)}, tmp_path / "foreign.pth")
    with pytest.raises(ModelError, match=r"holds objects other than tensors .*datetime.date"):
        load_weights(network, tmp_path / "foreign.pth")  # only isegm's objects get stand-ins


def test_saved_weights_reload_with_their_config(tmp_path):
    torch.manual_seed(0)
    network = build_network(SMALL)
    save_weights(network, tmp_path / "w.pt", crop=64)
    saved = torch.load(tmp_path / "w.pt", weights_only=True)
    assert saved["config"]["params"] == {**SMALL.options(), "crop": "64"} == checkpoint_options(tmp_path / "w.pt")
    assert SimpleClickConfig.from_options({k: v for k, v in saved["config"]["params"].items() if k != "crop"}) == SMALL
    other = build_network(SMALL)
    load_weights(other, tmp_path / "w.pt")
    assert all(torch.equal(other.state_dict()[k], v) for k, v in network.state_dict().items())
    clicker = SliceClicker.from_weights(tmp_path / "w.pt", threads=1)
    assert clicker.crop == 64 and clicker.network.config == SMALL
    assert SliceClicker.from_weights(tmp_path / "w.pt", options={"crop": 0}).crop == 0
    torch.save(network.state_dict(), tmp_path / "plain.pt")
    assert SliceClicker.from_weights(tmp_path / "plain.pt", options=SMALL.options()).network.config == SMALL
    with pytest.raises(ModelError, match=r"does not fit SimpleClick \(image 64, patch 8, embed 16.*shape mismatch"):
        SliceClicker.from_weights(tmp_path / "plain.pt", options={**SMALL.options(), "embed_dim": 16})


def test_mae_weights_initialise_the_backbone_with_interpolated_positions(tmp_path):
    torch.manual_seed(0)
    source = build_network(SimpleClickConfig(**{**SMALL.__dict__, "image_size": 32})).backbone.state_dict()
    mae = {k: v for k, v in source.items() if not k.startswith(("fc_norm", "head"))}
    mae |= {"norm.weight": torch.ones(32), "norm.bias": torch.zeros(32)}  # MAE's final norm: not SimpleClick's
    torch.save({"model": mae}, tmp_path / "mae.pth")
    network = build_network(SMALL)
    before = network.patch_embed_coords.proj.weight.clone()
    load_mae_backbone(network, tmp_path / "mae.pth")
    state = network.backbone.state_dict()
    assert torch.equal(state["blocks.3.attn.qkv.weight"], mae["blocks.3.attn.qkv.weight"])
    assert torch.equal(state["cls_token"], mae["cls_token"])
    assert state["pos_embed"].shape == (1, 65, 32) and torch.equal(state["pos_embed"][:, 0], mae["pos_embed"][:, 0])
    assert torch.equal(network.patch_embed_coords.proj.weight, before)  # not in MAE: left as it was
    del mae["blocks.2.mlp.fc1.weight"]
    torch.save({"model": mae}, tmp_path / "cut.pth")
    with pytest.raises(ModelError, match="MAE weight file .* does not fit the backbone.*blocks.2.mlp.fc1.weight"):
        load_mae_backbone(network, tmp_path / "cut.pth")
    torch.save({"model": {"encoder.weight": torch.zeros(3)}}, tmp_path / "other.pth")
    with pytest.raises(ModelError, match="no ViT blocks"):
        load_mae_backbone(network, tmp_path / "other.pth")


def test_windowed_blocks_follow_the_original_schedule():
    network = build_network(ORIGINAL.__class__(**{**ORIGINAL.__dict__, "embed_dim": 24, "heads": 2,
                                                  "neck": (4, 8, 8, 8), "head_channels": 8}))
    vit = network.backbone
    assert vit.windows == 4 and vit.global_every == 6  # 64 × 64 patches in 4 × 4 windows of 16 × 16
    x = torch.randn(2, 64 * 64, 24)
    assert torch.equal(vit._merge(vit._split(x)), x)
    # the second image's window (row 1, column 1) is window 16 + 4 + 1: grid rows and columns 16–31
    assert torch.equal(vit._split(x)[21], x[1].view(64, 64, 24)[16:32, 16:32].reshape(-1, 24))
    assert build_network(SMALL).backbone.global_every == 2 and build_network(REDUCED).backbone.global_every == 1


def test_options_parse_and_bad_configurations_are_refused():
    config = SimpleClickConfig.from_options({"image_size": "256", "embed_dim": 96, "neck": "32, 64,128,256"})
    assert config.neck == (32, 64, 128, 256) and config.image_size == 256 and config.depth == 12
    assert SimpleClickConfig.from_options(REDUCED.options()) == REDUCED
    with pytest.raises(ValueError, match="unknown option.*size"):
        SimpleClickConfig.from_options({"size": 3})
    with pytest.raises(ValueError, match="neck='1,2,x' is not a number list"):
        SimpleClickConfig.from_options({"neck": "1,2,x"})
    with pytest.raises(ValueError, match="four positive widths"):
        SimpleClickConfig.from_options({"neck": "1,2"})
    with pytest.raises(ValueError, match="multiple of patch_size"):
        SimpleClickConfig(image_size=100)
    with pytest.raises(ValueError, match="heads=5"):
        SimpleClickConfig(heads=5)
    with pytest.raises(ValueError, match="depth=6"):
        SimpleClickConfig(depth=6)


def test_click_disks_have_radius_5_and_pixels_map_through_their_centres():
    maps = click_maps([(10, 10, True), (30, 20, False), (31, 20, False)], 64)
    assert maps.shape == (2, 64, 64) and maps[0].sum() == 81  # integer pixels within 5 of a pixel
    assert maps[0, 10, 15] == 1 and maps[0, 10, 16] == 0 and maps[0, 14, 13] == 1 and maps[0, 14, 14] == 0
    assert maps[1, 30, 20] == 1 and maps[1, 36, 20] == 1 and maps[1].sum() == 81 + 11  # a second disk one row down: one more pixel per column
    assert not click_maps([], 8).any()
    assert model_pixel(0, 0, (725, 200), 1024) == (0, 2) and model_pixel(724, 199, (725, 200), 1024) == (1023, 1021)
    assert model_pixel(362, 100, (725, 200), 1024) == (512, 514)


def test_crops_cut_and_paste_back():
    assert crop_window((725, 200), (10, 190), 64) == (0, 136)
    assert crop_window((40, 200), (10, 100), 64) == (-12, 68)  # smaller than the crop: centred, padded
    frame = np.arange(40 * 200).reshape(40, 200)
    square = cut_square(frame, (-12, 68), 64)
    assert square.shape == (64, 64) and square[12, 0] == frame[0, 68] and square[:12].sum() == 0
    assert np.array_equal(paste_square(square, (-12, 68), frame.shape)[:, 68:132], frame[:, 68:132])


def _frame(seed: int = 0, shape=(90, 40)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.mark.parametrize("crop", [0, 32])
def test_cached_embedding_gives_exactly_the_uncached_answer(crop):
    torch.manual_seed(0)
    network = build_network(SMALL)
    cached, plain = SliceClicker(network, crop=crop, cache=2), SliceClicker(network, crop=crop, cache=0)
    frame, other = _frame(0), _frame(1)
    clicks = [(40, 20, True)]
    previous = None
    for step, click in enumerate([(45, 22, False), (30, 10, True), (60, 30, True)]):
        clicks.append(click)
        a, corner = cached.logits(frame, clicks, previous, key="f0")
        b, _ = plain.logits(frame, clicks, previous, key="f0")
        assert torch.equal(a, b)
        previous = cached.predict(frame, clicks, previous, key="f0")
        assert previous.shape == frame.shape and previous.dtype == bool
        cached.predict(other, clicks, None, key=("f", step))  # other frames come and go in the cache
    assert len(cached._cache) == 2 and len(plain._cache) == 0
    if crop:
        assert not previous[:, :4].any() or corner[1] <= 0  # outside the crop the mask is empty


def test_cache_is_used_and_a_frame_of_another_shape_is_not_served_from_it(monkeypatch):
    torch.manual_seed(0)
    network = build_network(SMALL)
    clicker = SliceClicker(network)
    calls = []
    real = network.embed_image
    monkeypatch.setattr(network, "embed_image", lambda image: calls.append(1) or real(image))
    frame = _frame(0)
    for n in range(3):
        clicker.predict(frame, [(40, 20, True)] * (n + 1), None, key=7)
    assert len(calls) == 1
    clicker.predict(_frame(0, (50, 50)), [(4, 2, True)], None, key=7)
    assert len(calls) == 2


def test_predictor_uses_clicks_previous_mask_and_threshold():
    torch.manual_seed(0)
    network = build_network(SMALL)
    clicker = SliceClicker(network)
    frame = _frame(0)
    logits, _ = clicker.logits(frame, [(40, 20, True)], None)
    assert logits.shape == frame.shape
    assert np.array_equal(clicker.predict(frame, [(40, 20, True)], None), (torch.sigmoid(logits) > 0.5).numpy())
    with_prev, _ = clicker.logits(frame, [(40, 20, True)], np.ones(frame.shape, bool))
    negative, _ = clicker.logits(frame, [(40, 20, False)], None)
    assert not torch.equal(with_prev, logits) and not torch.equal(negative, logits)
    with pytest.raises(ValueError, match="previous mask of shape"):
        clicker.predict(frame, [], np.zeros((3, 3), bool))
    with pytest.raises(ValueError, match="must be 2D"):
        clicker.predict(frame[None], [], None)
