from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from nfbench.interaction.loop import simulate_case
from nfbench.interaction.scenarios import scenario_from_options
from nfbench.io.volume import Volume
from nfbench.lesions import instance_map, lesion_table
from nfbench.models.base import ModelError
from nfbench.phantom import make_case
from tests.oracle_models import BrokenModel, OracleModel


@pytest.fixture(scope="module")
def case():
    phantom = make_case(size="tiny", burden="low", rng=11, n_lesions=6)
    image, label = phantom.volumes(image_dtype=np.float32)
    instances = instance_map(label.data)
    return image, instances, lesion_table(instances, affine=image.affine)


class HalfOracle(OracleModel):
    """Misses every other voxel of the lesion, so corrective clicks are needed."""

    def start(self, image):
        session = super().start(image)
        inner = session.predict
        checker = np.indices(self.instances.shape).sum(axis=0) % 2 == 0
        session.predict = lambda: inner() & checker
        return session


def _rows(result, **match):
    return [r for r in result.interactions if all(r[k] == v for k, v in match.items())]


def test_lesion_corrective_oracle_reaches_one_and_carries_forward(case):
    image, instances, lesions = case
    scenario = scenario_from_options("lesion-corrective", interactions=3)
    result = simulate_case(OracleModel(instances), image, instances, lesions, scenario, rng=np.random.default_rng(0))
    assert len(result.lesions) == len(lesions)
    for les in lesions:
        rows = _rows(result, lesion_id=les.lesion_id)
        assert [r["interaction"] for r in rows] == [1, 2, 3]
        assert rows[0]["dice_lesion"] == 1.0 and not rows[0]["carried_forward"]
        # The target Dice 1.0 is reached at the first click: the rest is carried forward, flagged.
        assert all(r["carried_forward"] and r["n_clicks"] == 0 for r in rows[1:])
    assert result.prediction is not None and np.array_equal(result.prediction, instances > 0)
    scan = [r["dice_scan"] for r in result.interactions if not r["carried_forward"]]
    assert scan == sorted(scan) and scan[-1] == 1.0


def test_first_click_is_positive_inside_its_lesion(case):
    image, instances, lesions = case
    scenario = scenario_from_options("lesion-single")
    result = simulate_case(OracleModel(instances), image, instances, lesions, scenario, rng=np.random.default_rng(0))
    assert len(result.clicks) == len(lesions)
    for click in result.clicks:
        assert click["positive"] and instances[click["i"], click["j"], click["k"]] == click["lesion_id"]
        expected_mm = image.ijk_to_mm((click["i"], click["j"], click["k"]))
        np.testing.assert_allclose([click["x_mm"], click["y_mm"], click["z_mm"]], expected_mm)


def test_other_lesions_are_ignored_in_lesion_dice(case):
    image, instances, lesions = case
    # A model that always answers with every lesion: perfect for the ignoring Dice, not for the strict one.
    everything = instances > 0

    class AllLesions(OracleModel):
        def start(self, image):
            session = super().start(image)
            session.predict = lambda: everything.copy()
            return session

    scenario = scenario_from_options("lesion-single")
    result = simulate_case(AllLesions(instances, "all"), image, instances, lesions, scenario, rng=np.random.default_rng(0))
    for row in result.interactions:
        assert row["dice_lesion"] == 1.0
        assert row["dice_lesion_strict"] < 1.0


def test_global_corrective_stops_at_target_and_carries_forward(case):
    image, instances, lesions = case
    scenario = scenario_from_options("global-corrective", interactions=10, stop_dice=0.8)
    result = simulate_case(OracleModel(instances), image, instances, lesions, scenario, rng=np.random.default_rng(0))
    rows = result.interactions
    assert [r["interaction"] for r in rows] == list(range(1, 11))
    used = [r for r in rows if not r["carried_forward"]]
    assert used[-1]["dice_scan"] >= 0.8
    assert all(r["dice_scan"] < 0.8 for r in used[:-1])
    assert all(r["lesion_id"] == 0 for r in rows)
    dices = [r["dice_scan"] for r in used]
    assert dices == sorted(dices)


def test_global_single_clicks_each_prompted_lesion_once(case):
    image, instances, lesions = case
    scenario = scenario_from_options("global-single", lesions=4)
    result = simulate_case(OracleModel(instances), image, instances, lesions, scenario, rng=np.random.default_rng(0))
    clicked = [instances[c["i"], c["j"], c["k"]] for c in result.clicks]
    assert clicked == [les.lesion_id for les in lesions[:4]]


def test_lesion_free_scan_evaluates(case):
    image, instances, _ = case
    empty = np.zeros_like(instances)
    for name in ("lesion-corrective", "global-corrective"):
        result = simulate_case(OracleModel(empty), image, empty, [], scenario_from_options(name), rng=np.random.default_rng(0))
        assert result.interactions == [] and not result.prediction.any()


def test_model_breaking_the_contract_is_named(case):
    image, instances, lesions = case
    with pytest.raises(ModelError, match="broken.*dtype uint8"):
        simulate_case(BrokenModel(), image, instances, lesions, scenario_from_options("lesion-single"), rng=np.random.default_rng(0))


@pytest.mark.parametrize("policy", ["uniform", "edt-power"])
def test_same_seed_same_clicks(case, policy):
    image, instances, lesions = case

    scenario = scenario_from_options("lesion-corrective", click_policy=policy, interactions=3)
    runs = [simulate_case(HalfOracle(instances), image, instances, lesions, scenario, rng=np.random.default_rng(5))
            for _ in range(2)]
    assert runs[0].clicks == runs[1].clicks and len(runs[0].clicks) > len(lesions)


def test_patch_clicks_use_the_volume_patch_grid():
    from scipy import ndimage

    from nfbench.interaction.loop import _tile_aligned

    assert _tile_aligned((slice(5, 9), slice(17, 18), slice(600, 700)), (512, 16, 512), (800, 31, 2900)) == (
        slice(0, 512), slice(16, 31), slice(512, 1024))
    phantom = make_case(size="small", burden="low", rng=3, n_lesions=4)
    image, label = phantom.volumes(image_dtype=np.float32)
    instances = instance_map(label.data)
    lesions = lesion_table(instances, affine=image.affine)

    class Swollen(OracleModel):
        """The clicked lesion grown by one voxel: corrective clicks must be negative."""

        def start(self, image):
            session = super().start(image)
            inner = session.predict
            session.predict = lambda: ndimage.binary_dilation(inner())
            return session

    scenario = scenario_from_options("lesion-corrective", preset="paper")
    result = simulate_case(Swollen(instances), image, instances, lesions, scenario, rng=np.random.default_rng(0))
    assert scenario.click_policy == "patch" and len(result.lesions) == len(lesions)
    corrective = [c for c in result.clicks if c["interaction"] > 1]
    assert corrective and all(not c["positive"] for c in corrective)
    for c in corrective:  # never on the lesion, never on another lesion (those voxels are ignored)
        assert instances[c["i"], c["j"], c["k"]] == 0


def test_box_prompt_on_the_largest_coronal_slice_for_box_capable_models():
    instances = np.zeros((12, 6, 14), np.uint8)
    instances[2:5, 1, 3:6] = 1          # 9 voxels on slice 1
    instances[3:9, 3, 2:10] = 1         # 48 voxels on slice 3: the largest
    instances[10, 5, 12] = 2
    volume = Volume(np.zeros(instances.shape, np.float32), np.eye(4), np.eye(4), nib.Nifti1Header())
    lesions = lesion_table(instances, affine=volume.affine)

    class BoxOracle(OracleModel):
        capabilities = frozenset({"click", "box"})
        boxes: list = []

        def start(self, image):
            session = super().start(image)
            session.add_box = self.boxes.append
            return session

    model = BoxOracle(instances, "box-oracle")
    result = simulate_case(model, volume, instances, lesions, scenario_from_options("lesion-single", boxes=True),
                           rng=np.random.default_rng(0))
    first = model.boxes[0]
    assert (first.lo, first.hi) == ((3, 3, 2), (9, 4, 10))
    assert len(model.boxes) == 2 and [r["n_boxes"] for r in result.interactions] == [1, 1]
    # A click-only model is never sent a box (OracleModel.add_box would raise).
    plain = simulate_case(OracleModel(instances), volume, instances, lesions,
                          scenario_from_options("lesion-single", boxes=True), rng=np.random.default_rng(0))
    assert [r["n_boxes"] for r in plain.interactions] == [0, 0]
