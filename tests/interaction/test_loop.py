from __future__ import annotations

import math
from dataclasses import asdict

import nibabel as nib
import numpy as np
import pytest

from nfbench.interaction.loop import _tile_aligned
from nfbench.interaction.policies import DEFAULT_PATCH_MM, patch_voxels
from nfbench.interaction.scenarios import scenario_from_options
from nfbench.interaction.scoring import CVPR_DICE_GATE, cvpr_auc
from nfbench.io.volume import Volume
from nfbench.lesions import instance_map, lesion_table
from nfbench.models.base import ModelError
from nfbench.phantom import make_case
from tests.engine import run, tiny_case
from tests.oracle_models import BoxOnlyModel, BrokenModel, HalfOracle, OracleModel, SwollenOracle

TIMING = {"latency_ms", "overhead_ms"}


@pytest.fixture(scope="module")
def case():
    return tiny_case(n_lesions=6)


def _rows(result, **match):
    return [r for r in result.interactions if all(getattr(r, k) == v for k, v in match.items())]


def _untimed(rows):
    return [{k: v for k, v in asdict(r).items() if k not in TIMING} for r in rows]


def test_lesion_corrective_oracle_reaches_one_and_carries_forward(case):
    image, instances, lesions = case
    scenario = scenario_from_options("lesion-corrective", interactions=3)
    result = run(OracleModel(instances), scenario, image, instances, lesions)
    assert len(result.lesions) == len(lesions)
    for les in lesions:
        rows = _rows(result, lesion_id=les.lesion_id)
        assert [r.interaction for r in rows] == [1, 2, 3]
        assert rows[0].dice_lesion == 1.0 and not rows[0].carried_forward
        # The target Dice 1.0 is reached at the first click: the rest is carried forward, flagged.
        assert all(r.carried_forward and r.n_clicks == 0 and math.isnan(r.latency_ms) for r in rows[1:])
    assert result.prediction is not None and np.array_equal(result.prediction, instances > 0)
    scan = [r.dice_scan for r in result.interactions if not r.carried_forward]
    assert scan == sorted(scan) and scan[-1] == 1.0


@pytest.mark.parametrize("name", ["lesion-corrective", "global-corrective"])
def test_cropped_answers_score_exactly_like_full_masks(case, name):
    image, instances, lesions = case
    scenario = scenario_from_options(name, interactions=4, stop_dice=None)
    crops = run(HalfOracle(instances), scenario, image, instances, lesions, surface=True)
    full = run(HalfOracle(instances, full_masks=True), scenario, image, instances, lesions, surface=True)
    assert crops.clicks == full.clicks and len(crops.clicks) >= scenario.budget
    assert _untimed(crops.interactions) == _untimed(full.interactions)
    assert crops.lesions == full.lesions
    assert np.array_equal(crops.prediction, full.prediction)


def test_clicks_carry_the_run_keys(case):
    image, instances, lesions = case
    scenario = scenario_from_options("lesion-corrective", interactions=2, click_policy="uniform", stop_dice=None)
    result = run(HalfOracle(instances, "half"), scenario, image, instances, lesions, seed=3)
    assert result.clicks
    for click in result.clicks:
        assert (click.model, click.scenario, click.click_policy, click.budget, click.seed, click.test_set) == (
            "half", "lesion-corrective", "uniform", 2, 3, "imagesTs")


def test_first_click_is_positive_inside_its_lesion(case):
    image, instances, lesions = case
    result = run(OracleModel(instances), scenario_from_options("lesion-single"), image, instances, lesions)
    assert len(result.clicks) == len(lesions)
    for click in result.clicks:
        assert click.positive and instances[click.i, click.j, click.k] == click.lesion_id
        np.testing.assert_allclose([click.x_mm, click.y_mm, click.z_mm], image.ijk_to_mm((click.i, click.j, click.k)))


def test_single_click_scenarios_record_the_policy_of_their_clicks():
    for name in ("lesion-single", "global-single"):
        assert scenario_from_options(name, click_policy="uniform").recorded_policy == "center"
        assert scenario_from_options(name, click_policy="center-voxel").recorded_policy == "center-voxel"
    assert scenario_from_options("lesion-corrective", click_policy="uniform").recorded_policy == "uniform"


def test_other_lesions_are_ignored_in_lesion_dice(case):
    image, instances, lesions = case

    class AllLesions(OracleModel):
        """Answers every click with every lesion: perfect for the ignoring Dice, not for the strict one."""

        def region(self, instances, value):
            return (slice(None),) * 3, instances > 0

    result = run(AllLesions(instances, "all"), scenario_from_options("lesion-single"), image, instances, lesions)
    for row in result.interactions:
        assert row.dice_lesion == 1.0
        assert row.dice_lesion_strict < 1.0


def test_global_corrective_stops_at_target_and_carries_forward(case):
    image, instances, lesions = case
    scenario = scenario_from_options("global-corrective", interactions=10, stop_dice=0.8)
    rows = run(OracleModel(instances), scenario, image, instances, lesions).interactions
    assert [r.interaction for r in rows] == list(range(1, 11))
    used = [r for r in rows if not r.carried_forward]
    assert used[-1].dice_scan >= 0.8
    assert all(r.dice_scan < 0.8 for r in used[:-1])
    assert all(r.lesion_id == 0 for r in rows)
    dices = [r.dice_scan for r in used]
    assert dices == sorted(dices)


def test_global_single_clicks_each_prompted_lesion_once_and_fills_its_budget(case):
    image, instances, lesions = case
    result = run(OracleModel(instances), scenario_from_options("global-single", lesions=4), image, instances, lesions)
    assert [instances[c.i, c.j, c.k] for c in result.clicks] == [les.lesion_id for les in lesions[:4]]
    # Scan-level rows carry the volume of every lesion of the scan, prompted or not.
    total = sum(les.volume_ml for les in lesions)
    assert [r.lesion_volume_ml for r in result.interactions] == pytest.approx([total] * len(result.interactions))
    # Asked for more lesions than the scan has: the curve still has K points, the missing ones carried.
    scenario = scenario_from_options("global-single", lesions=len(lesions) + 3)
    rows = run(OracleModel(instances), scenario, image, instances, lesions).interactions
    assert scenario.budget == len(lesions) + 3 == len(rows)
    assert [r.carried_forward for r in rows] == [False] * len(lesions) + [True] * 3
    assert rows[-1].dice_scan == rows[len(lesions) - 1].dice_scan == 1.0


@pytest.mark.parametrize("name", ["lesion-corrective", "global-corrective", "global-single"])
def test_lesion_free_scan_has_one_flagged_session(case, name):
    image, instances, _ = case
    empty = np.zeros_like(instances)
    scenario = scenario_from_options(name, lesions=3)
    result = run(OracleModel(empty), scenario, image, empty, [])
    rows = result.interactions
    assert len(rows) == scenario.budget and all(r.lesion_free and r.dice_scan == 1.0 for r in rows)
    assert [r.interaction for r in rows] == list(range(1, scenario.budget + 1))
    assert result.clicks == [] and not result.prediction.any()


def test_model_breaking_the_contract_is_named(case):
    image, instances, lesions = case
    with pytest.raises(ModelError, match="broken.*dtype uint8"):
        run(BrokenModel(), scenario_from_options("lesion-single"), image, instances, lesions)


@pytest.mark.parametrize("policy", ["uniform", "edt-power"])
def test_same_seed_same_clicks(case, policy):
    image, instances, lesions = case
    scenario = scenario_from_options("lesion-corrective", click_policy=policy, interactions=3)
    runs = [run(HalfOracle(instances), scenario, image, instances, lesions, seed=5) for _ in range(2)]
    assert runs[0].clicks == runs[1].clicks and len(runs[0].clicks) > len(lesions)


def test_patch_clicks_use_a_physical_patch_grid():
    assert _tile_aligned((slice(5, 9), slice(17, 18), slice(600, 700)), (512, 16, 512), (800, 31, 2900)) == (
        slice(0, 512), slice(16, 31), slice(512, 1024))
    phantom = make_case(size="small", burden="low", rng=3, n_lesions=4)
    image, label = phantom.volumes(image_dtype=np.float32)
    # On the 2.5 mm grid the original's 320 x 125 x 320 mm patch is far smaller than the body.
    patch = patch_voxels(DEFAULT_PATCH_MM, image.spacing)
    assert all(p < n for p, n in zip(patch, image.shape) if n * 2.5 > 330)
    instances = instance_map(label.data)
    lesions = lesion_table(instances, affine=image.affine)
    scenario = scenario_from_options("lesion-corrective", preset="paper")
    result = run(SwollenOracle(instances), scenario, image, instances, lesions)
    assert scenario.click_policy == "patch" and len(result.lesions) == len(lesions)
    corrective = [c for c in result.clicks if c.interaction > 1]
    assert corrective and all(not c.positive for c in corrective)
    for c in corrective:  # never on the lesion, never on another lesion (those voxels are ignored)
        assert instances[c.i, c.j, c.k] == 0


@pytest.fixture()
def two_slices():
    instances = np.zeros((12, 6, 14), np.uint8)
    instances[2:5, 1, 3:6] = 1          # 9 voxels on slice 1
    instances[3:9, 3, 2:10] = 1         # 48 voxels on slice 3: the largest
    instances[10, 5, 12] = 2
    volume = Volume(np.zeros(instances.shape, np.float32), np.eye(4), np.eye(4), nib.Nifti1Header())
    return volume, instances, lesion_table(instances, affine=volume.affine)


def test_box_prompt_on_the_largest_coronal_slice_for_box_capable_models(two_slices):
    volume, instances, lesions = two_slices

    class BoxOracle(OracleModel):
        capabilities = frozenset({"click", "box"})

        def start(self, image, *, seed=0):
            session = super().start(image, seed=seed)
            self.boxes = []
            session.add_box = self.boxes.append
            return session

    model = BoxOracle(instances, "box-oracle")
    result = run(model, scenario_from_options("lesion-single", boxes=True), volume, instances, lesions)
    first = model.boxes[0]
    assert (first.lo, first.hi) == ((3, 3, 2), (9, 4, 10))
    assert len(model.boxes) == 2 and [r.n_boxes for r in result.interactions] == [1, 1]
    # A click-only model is never sent a box (its add_box raises).
    plain = run(OracleModel(instances), scenario_from_options("lesion-single", boxes=True), volume, instances, lesions)
    assert [r.n_boxes for r in plain.interactions] == [0, 0]
    # Global scenarios give one box per prompted lesion with the first interaction.
    model = BoxOracle(instances, "box-oracle")
    result = run(model, scenario_from_options("global-corrective", boxes=True, interactions=2), volume, instances,
                 lesions)
    assert len(model.boxes) == 2 and result.interactions[0].n_boxes == 2


def test_box_only_model_gets_boxes_and_no_clicks(two_slices):
    volume, instances, lesions = two_slices
    model = BoxOnlyModel(instances)
    scenario = scenario_from_options("lesion-corrective", boxes=True, interactions=3, stop_dice=None)
    result = run(model, scenario, volume, instances, lesions)
    assert result.clicks == [] and len(model.boxes) == len(lesions)
    for les in lesions:
        rows = _rows(result, lesion_id=les.lesion_id)
        assert [(r.n_boxes, r.n_clicks, r.carried_forward) for r in rows] == [(1, 0, False), (0, 0, True), (0, 0, True)]
        assert rows[0].dice_lesion == 1.0


def test_cvpr25_preset_box_step_then_center_voxel_clicks(case):
    image, instances, lesions = case

    class BoxHalf(HalfOracle):
        capabilities = frozenset({"click", "box"})

        def start(self, image, *, seed=0):
            session = super().start(image, seed=seed)
            session.add_box = lambda box: None  # a box alone gives nothing: Dice 0 after the box step
            return session

    scenario = scenario_from_options("lesion-corrective", preset="cvpr25")
    assert (scenario.budget, scenario.click_policy, scenario.box_step) == (6, "center-voxel", True)
    result = run(BoxHalf(instances, "box-half"), scenario, image, instances, lesions)
    for les, row in zip(lesions, result.lesions):
        rows = _rows(result, lesion_id=les.lesion_id)
        assert [(r.n_boxes, r.n_clicks) for r in rows[:2]] == [(1, 0), (0, 1)]
        assert rows[0].dice_lesion == 0.0 and rows[0].nsd_cvpr_lesion == 0.0
        for r in rows:  # the challenge's NSD: zero where Dice <= 0.2, the plain NSD elsewhere
            assert r.nsd_cvpr_lesion == (0.0 if r.dice_lesion <= CVPR_DICE_GATE else r.nsd_lesion)
        # The challenge's AUC: trapezoid over the 5 click steps (after the box), on a 0-4 scale.
        dices = [r.dice_lesion for r in rows[1:]]
        expected = sum((a + b) / 2 for a, b in zip(dices, dices[1:]))
        assert row.auc_dice_cvpr == pytest.approx(expected) and 0 <= row.auc_dice_cvpr <= 4


def test_cvpr25_auc_scores_the_five_clicks_after_the_box_and_nothing_else():
    curve = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0]
    longer = scenario_from_options("lesion-corrective", preset="cvpr25", interactions=8)
    assert cvpr_auc(curve, longer) == pytest.approx(2.4)  # steps 2-6, not the last five (3.7)
    no_box = scenario_from_options("global-corrective", preset="cvpr25", boxes=False, interactions=8)
    assert cvpr_auc(curve, no_box) == pytest.approx(1.6)  # without a box step the clicks start at step 1
    short = scenario_from_options("lesion-corrective", preset="cvpr25", interactions=5)
    assert math.isnan(cvpr_auc(curve[:5], short))  # 4 clicks after the box: no challenge AUC
    # global-single's steps are one lesion each, not 5 clicks; other presets have no challenge AUC.
    for scenario in (scenario_from_options("global-single", preset="cvpr25"),
                     scenario_from_options("lesion-corrective", interactions=8)):
        assert math.isnan(cvpr_auc(curve, scenario))


def test_lesion_single_clicks_the_centre_whatever_the_box_gave(case):
    image, instances, lesions = case

    class SwollenBox(SwollenOracle):
        """Answers a box with the lesions under it grown by a voxel: the error is all background."""

        capabilities = frozenset({"click", "box"})

        def start(self, image, *, seed=0):
            session = super().start(image, seed=seed)

            def add_box(box):
                inside = instances[tuple(slice(lo, hi) for lo, hi in zip(box.lo, box.hi))]
                for value in np.unique(inside[inside > 0]):
                    region_box, region = self.region(instances, int(value))
                    session.mask[region_box] |= region
                    session._touch(region_box)
            session.add_box = add_box
            return session

    boxed = run(SwollenBox(instances), scenario_from_options("lesion-single", preset="cvpr25"), image, instances, lesions)
    plain = run(SwollenBox(instances), scenario_from_options("lesion-single", preset="cvpr25", boxes=False),
                image, instances, lesions)
    assert [r.n_boxes for r in boxed.interactions if r.interaction == 1] == [1] * len(lesions)
    assert [(c.lesion_id, c.i, c.j, c.k, c.positive) for c in boxed.clicks] == [
        (c.lesion_id, c.i, c.j, c.k, c.positive) for c in plain.clicks]
    assert all(c.positive and instances[c.i, c.j, c.k] == c.lesion_id for c in boxed.clicks)


def test_click_only_model_under_a_box_step_gets_an_empty_first_interaction(case):
    image, instances, lesions = case
    scenario = scenario_from_options("lesion-corrective", preset="cvpr25")
    result = run(OracleModel(instances), scenario, image, instances, lesions)
    for les in lesions:
        first, second = _rows(result, lesion_id=les.lesion_id)[:2]
        assert (first.n_boxes, first.n_clicks, first.dice_lesion) == (0, 0, 0.0) and math.isnan(first.latency_ms)
        assert second.n_clicks == 1 and second.dice_lesion == 1.0
