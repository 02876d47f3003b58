from __future__ import annotations

import json
import re
from typing import Literal

import numpy as np
import pytest
from typer.testing import CliRunner

from nfbench.cli import app
from nfbench.models.base import ModelError, Prediction, check_prediction
from nfbench.models.registry import available_models, load_model, register_model, unregister_model
from nfbench.models.baselines.sphere import SphereModel
from nfbench.types import Click


@pytest.fixture
def registered():
    names = []

    def add(name, factory):
        register_model(name, factory)
        names.append(name)

    yield add
    for name in names:
        unregister_model(name)


class NeedsWeights(SphereModel):
    """A model whose weight file is absent."""

    needs_weights = True

    @classmethod
    def requirements(cls):
        return ["weight file /nowhere/model.pt is missing (pass weights=PATH)"]


def test_builtin_models_come_from_entry_points():
    infos = {m.name: m for m in available_models()}
    for name in ("sphere", "region-grow", "random-walker"):
        assert infos[name].available and not infos[name].needs_weights
        assert "click" in infos[name].capabilities
        assert infos[name].target.startswith("nfbench.models.baselines.")


def test_unknown_name_suggests_the_closest():
    with pytest.raises(ModelError, match="unknown model 'region_grow'. Did you mean 'region-grow'"):
        load_model("region_grow")


def test_unavailable_model_says_what_is_missing(registered):
    registered("needs-weights", NeedsWeights)
    info = next(m for m in available_models() if m.name == "needs-weights")
    assert not info.available and "weight file" in info.missing[0]
    with pytest.raises(ModelError, match="'needs-weights' is not available: weight file /nowhere"):
        load_model("needs-weights")


def test_broken_plugin_is_listed_not_fatal(registered):
    class Broken:
        value = "thirdparty.models:Broken"

        def load(self):
            raise ImportError("No module named 'thirdparty'")

    registered("thirdparty", Broken())
    info = next(m for m in available_models() if m.name == "thirdparty")
    assert not info.available and "No module named 'thirdparty'" in info.missing[0]
    result = CliRunner().invoke(app, ["models", "--json"])
    assert result.exit_code == 0
    rows = {r["name"]: r for r in json.loads(result.output)}
    assert rows["thirdparty"]["available"] is False and rows["sphere"]["available"] is True


class NoStart:
    """A plug-in class that forgot its start method."""

    name = "no-start"
    capabilities = frozenset({"click"})


class PrevMask(SphereModel):
    """A plug-in that declares DESIGN's illustrative ``prev_mask``."""

    capabilities = frozenset({"click", "prev_mask"})


class Uncapable(SphereModel):
    """A plug-in that declares no capability."""

    capabilities = frozenset()


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (NoStart, r"defines no start\(image, \*, seed\) method"),
        (PrevMask, r"\['click', 'prev_mask'\].*some of \['box', 'click'\].*prev_mask is not a capability"),
        (Uncapable, r"declares capabilities \[\]; it must take some of"),
    ],
)
def test_models_that_break_the_contract_are_listed_as_unavailable(registered, factory, message):
    registered("contract", factory)
    info = next(m for m in available_models() if m.name == "contract")
    assert not info.available and re.search(message, "; ".join(info.missing))
    with pytest.raises(ModelError, match="'contract' is not available: .*" + message):
        load_model("contract")
    rows = {r["name"]: r for r in json.loads(CliRunner().invoke(app, ["models", "--json"]).output)}
    assert rows["contract"]["available"] is False and rows["sphere"]["available"] is True


def test_options_reach_the_model():
    assert load_model("sphere", radius_mm=7.5).radius_mm == 7.5
    with pytest.raises(ValueError, match="radius must be positive"):
        load_model("sphere", radius_mm=0)


def test_models_command_lists_every_model():
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0
    for name in ("sphere", "region-grow", "random-walker"):
        assert name in result.output


def test_requirement_helpers_name_what_is_missing(tmp_path):
    from nfbench.models.registry import missing_file, missing_modules

    assert missing_modules("numpy", "scipy.ndimage") == []
    (message,) = missing_modules("nfbench_no_such_module.sub", extra="sam2")
    assert "'nfbench_no_such_module.sub' is not installed" in message and 'pip install "nfbench[sam2]"' in message
    assert "--weights PATH on the command line" in missing_file(None)[0]
    assert "does not exist" in missing_file(tmp_path / "model.pt")[0]
    assert "is a folder, not a file" in missing_file(tmp_path)[0]
    (tmp_path / "model.pt").write_bytes(b"")
    assert missing_file(tmp_path / "model.pt") == []


class WeightedModel(SphereModel):
    """A model that needs a weight file, checked from the options given to load_model."""

    needs_weights = True

    def __init__(self, weights=None, radius_mm: float = 5.0) -> None:
        super().__init__(radius_mm)
        self.weights = weights

    @classmethod
    def requirements(cls, weights=None):
        from nfbench.models.registry import missing_file

        return missing_file(weights)


def test_requirements_see_the_load_options(registered, tmp_path):
    registered("weighted", WeightedModel)
    info = next(m for m in available_models() if m.name == "weighted")
    assert not info.available and "no weight file given" in info.missing[0]
    with pytest.raises(ModelError, match=r"'weighted' is not available: weight file .*missing\.pt' does not exist"):
        load_model("weighted", weights=tmp_path / "missing.pt")
    (tmp_path / "model.pt").write_bytes(b"")
    model = load_model("weighted", weights=tmp_path / "model.pt", radius_mm=3.0)
    assert model.weights == tmp_path / "model.pt" and model.radius_mm == 3.0


def test_a_factory_must_return_a_model(registered):
    registered("not-a-model", lambda: object())
    with pytest.raises(ModelError, match="'not-a-model'.*does not provide name, capabilities and start"):
        load_model("not-a-model")


class _BadSession:
    def __init__(self, shape, dtype):
        self.shape, self.dtype = shape, dtype

    def reset(self):
        pass

    def add_click(self, click):
        pass

    def add_box(self, box):
        raise NotImplementedError

    def predict(self):
        return np.zeros(self.shape, self.dtype)


class BadModel:
    """A plug-in that returns masks of the wrong shape or type."""

    name = "bad"
    capabilities = frozenset({"click"})

    def __init__(self, shape=(4, 4, 4), dtype=bool):
        self.shape, self.dtype = shape, dtype

    def start(self, image, *, seed=0):
        return _BadSession(self.shape, self.dtype)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"shape": (4, 4, 3)}, r"'bad' returned a mask of shape \(4, 4, 3\), expected \(4, 4, 4\)"),
        ({"dtype": np.uint8}, r"'bad' returned a mask of dtype uint8, expected bool"),
    ],
)
def test_broken_predictions_are_caught_with_the_model_name(registered, options, message):
    registered("bad", BadModel)
    session = load_model("bad", **options).start(None)
    session.add_click(Click((1, 1, 1), True))
    with pytest.raises(ModelError, match=message):
        check_prediction("bad", session.predict(), (4, 4, 4))
    good = load_model("bad").start(None).predict()
    whole = check_prediction("bad", good, (4, 4, 4))
    assert whole.mask.dtype == np.bool_ and whole.box == (slice(0, 4),) * 3
    with pytest.raises(ModelError, match="'bad' returned list"):
        check_prediction("bad", [[[True]]], (1, 1, 1))


def test_cropped_predictions_are_checked_against_their_box():
    crop = Prediction(np.ones((2, 3, 1), bool), (slice(1, 3), slice(None, 3), slice(3, 4)))
    assert check_prediction("m", crop, (4, 4, 4)).box == (slice(1, 3), slice(0, 3), slice(3, 4))
    with pytest.raises(ModelError, match=r"'m' returned a mask of shape \(2, 3, 1\), expected \(2, 2, 1\)"):
        check_prediction("m", Prediction(crop.mask, (slice(1, 3), slice(0, 2), slice(3, 4))), (4, 4, 4))
    for box in [(slice(1, 3), slice(0, 3), slice(3, 5)), (slice(0, 2), slice(0, 3)), (slice(0, 4, 2),) * 3, (1, 2, 3)]:
        with pytest.raises(ModelError, match="'m' returned a Prediction box .* inside the image of shape"):
            check_prediction("m", Prediction(crop.mask, box), (4, 4, 4))
    unchanged = check_prediction("m", Prediction(np.zeros((0, 0, 0), bool), (slice(0, 0),) * 3), (4, 4, 4))
    assert unchanged.mask.size == 0


class TypedOptions(SphereModel):
    """A plug-in whose options are typed only by their annotations and tuple defaults."""

    def __init__(self, size: tuple[int, int, int] = (3, 3, 3), scale: tuple[float, ...] | None = None,
                 prompt: Literal["point", "box"] | None = None) -> None:
        super().__init__()
        self.size, self.scale, self.prompt = size, scale, prompt


def test_command_line_options_are_converted_to_tuples_and_literals(registered):
    from nfbench.models.registry import load_spec
    from nfbench.models.spec import ModelSpec

    registered("typed", TypedOptions)
    model = load_spec(ModelSpec("typed", options={"size": "5,5,7", "scale": "0.5,2", "prompt": "box"}))
    assert model.size == (5, 5, 7) and model.scale == (0.5, 2.0) and model.prompt == "box"
    with pytest.raises(ModelError, match="option 'size' takes a comma-separated list of int, got 'a,b'"):
        load_spec(ModelSpec("typed", options={"size": "a,b"}))
