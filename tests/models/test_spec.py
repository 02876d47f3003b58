"""Model specs: options checked against the model, weights identified, runs tied to both."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from nfbench.interaction.scenarios import scenario_from_options
from nfbench.models.base import ModelError
from nfbench.models.registry import load_spec, register_model, unregister_model
from nfbench.models.spec import ModelSpec, parse_option
from nfbench.models.baselines.sphere import SphereModel
from nfbench.results.store import RunError
from nfbench.runner.evaluate import EvaluationPlan, evaluate


class WeightedSphere(SphereModel):
    """A sphere whose radius (mm) is read from its weights file: a stand-in for a learned model."""

    name = "weighted-sphere"
    needs_weights = True

    def __init__(self, weights: Path, scale: float = 1.0, refine: bool = False) -> None:
        super().__init__(float(Path(weights).read_text()) * scale)
        self.refine = refine


@pytest.fixture()
def weighted(tmp_path):
    register_model("weighted-sphere", WeightedSphere)
    weights = tmp_path / "radius.txt"
    weights.write_text("4.0")
    yield weights
    unregister_model("weighted-sphere")


def test_options_are_converted_to_the_models_types(weighted):
    model = load_spec(ModelSpec("weighted-sphere", weighted, {"scale": "0.5", "refine": "yes"}))
    assert model.radius_mm == 2.0 and model.refine is True
    assert load_spec(ModelSpec("sphere", options={"radius_mm": "3"})).radius_mm == 3.0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (ModelSpec("sphere", options={"radus_mm": "3"}), r"model 'sphere' has no option 'radus_mm'. Did you mean 'radius_mm'\?"),
        (ModelSpec("sphere", options={"radius_mm": "big"}), r"model 'sphere': option 'radius_mm' takes a float, got 'big'"),
        (ModelSpec("sphere", options={"radius_mm": "-1"}), r"model 'sphere': sphere radius must be positive"),
        (ModelSpec("sphere", weights=Path("w.pt")), r"model 'sphere' takes no weights"),
        (ModelSpec("sphere", device="cuda"), r"model 'sphere' runs on the CPU only"),
        (ModelSpec("spheer"), r"unknown model 'spheer'. Did you mean 'sphere'"),
    ],
)
def test_bad_specs_name_the_model_and_the_option(spec, message):
    with pytest.raises(ModelError, match=message):
        load_spec(spec)


def test_bad_spec_values_are_refused_when_written():
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        ModelSpec("sphere", device="gpu")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_option("radius_mm")
    assert parse_option(" radius_mm = 3 ") == ("radius_mm", "3")


def test_weights_are_recorded_by_content(weighted):
    record = ModelSpec("weighted-sphere", weighted, {"scale": "2"}).record()
    assert record["weights_identity"] == {"sha256": hashlib.sha256(b"4.0").hexdigest(), "size": 3}
    assert record["options"] == {"scale": "2"} and record["weights"] == str(weighted.resolve())


def test_resume_refuses_other_weights_or_options(weighted, tiny_dataset, tmp_path):
    def plan(spec):
        return EvaluationPlan(data=tiny_dataset, test_sets=("imagesTs_1",), models=(spec,),
                              scenarios=(scenario_from_options("lesion-single"),))

    spec = ModelSpec("weighted-sphere", weighted)
    evaluate(plan(spec), tmp_path / "run", quiet=True)
    assert evaluate(plan(spec), tmp_path / "run", quiet=True, resume=True).skipped == 1
    with pytest.raises(RunError, match="differs in model_specs"):
        evaluate(plan(ModelSpec("weighted-sphere", weighted, {"scale": "2"})), tmp_path / "run", quiet=True, resume=True)
    weighted.write_text("5.0")  # same path, other weights
    with pytest.raises(RunError, match="differs in model_specs"):
        evaluate(plan(spec), tmp_path / "run", quiet=True, resume=True)
