from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from nfbench.cli import app
from nfbench.models.base import ModelError
from nfbench.models.registry import available_models, load_model, register_model, unregister_model
from nfbench.models.sphere import SphereModel


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
        assert infos[name].target.startswith("nfbench.models.")


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


def test_options_reach_the_model():
    assert load_model("sphere", radius_mm=7.5).radius_mm == 7.5
    with pytest.raises(ValueError, match="radius must be positive"):
        load_model("sphere", radius_mm=0)


def test_models_command_lists_every_model():
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0
    for name in ("sphere", "region-grow", "random-walker"):
        assert name in result.output
