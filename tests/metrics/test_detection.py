from __future__ import annotations

import importlib

import numpy as np
import pytest
from scipy import ndimage

from nfbench.lesions import instance_map, lesion_table
from nfbench.metrics.detection import Detection, detection

# The package re-exports the function `detection`, which hides the module attribute of that name.
detection_module = importlib.import_module("nfbench.metrics.detection")

SPACING = (1.0, 1.0, 1.0)  # one voxel = 0.001 ml


def _scene() -> tuple[np.ndarray, np.ndarray]:
    truth = np.zeros((30, 10, 30), np.uint16)
    truth[2:6, 2:6, 2:6] = 1        # found exactly
    truth[10:14, 2:6, 2:6] = 2      # missed (64 voxels)
    truth[20:28, 2:6, 2:6] = 3      # split in two predicted blobs
    truth[2:6, 2:6, 20:24] = 4      # merged with lesion 5 by one blob
    truth[2:6, 2:6, 25:29] = 5
    pred = np.zeros(truth.shape, bool)
    pred[2:6, 2:6, 2:6] = True
    pred[20:23, 2:6, 2:6] = True
    pred[25:28, 2:6, 2:6] = True
    pred[2:6, 2:6, 20:29] = True
    pred[15:17, 7:9, 15:17] = True  # a false positive of 8 voxels
    return pred, truth


@pytest.mark.parametrize("labelling", ["sparse", "cc3d"])
@pytest.mark.parametrize("iou_threshold", [0.0, 0.1])
def test_hand_made_scene(iou_threshold, labelling, monkeypatch):
    monkeypatch.setattr(detection_module, "_SPARSE_RATIO", 10**9 if labelling == "sparse" else 0)
    pred, truth = _scene()
    det = detection(pred, truth, spacing=SPACING, iou_threshold=iou_threshold)
    # Lesions 1, 3, 4, 5 found (smallest IoU: 48/128 for each half of lesion 3), lesion 2 missed;
    # 5 components of which the 8-voxel blob matches nothing.
    assert (det.tp, det.fn, det.fp) == (4, 1, 1)
    assert det.recall == pytest.approx(4 / 5)
    assert det.precision == pytest.approx(4 / 5)
    assert det.f1 == pytest.approx(0.8)
    assert det.fn_volume_ml == pytest.approx(64 * 0.001)
    assert det.fp_volume_ml == pytest.approx(8 * 0.001)


def test_volumes_use_the_spacing():
    pred, truth = _scene()
    det = detection(pred, truth, spacing=(0.5, 2.0, 4.0))  # 4 mm³ per voxel
    assert det.fn_volume_ml == pytest.approx(64 * 0.004)
    assert det.fp_volume_ml == pytest.approx(8 * 0.004)


def test_volumes_from_a_sheared_affine_match_the_lesion_table():
    # Upper-triangular 3×3 part: |det| = 0.5 · 2 · 4 = 4 mm³, while the column lengths multiply
    # to about 4.7 mm³ (the spacing of a sheared grid does not give its voxel volume).
    affine = np.eye(4)
    affine[:3, :3] = [[0.5, 0.3, 0.0], [0.0, 2.0, 0.7], [0.0, 0.0, 4.0]]
    pred, truth = _scene()
    det = detection(pred, truth, affine=affine)
    assert det.fn_volume_ml == pytest.approx(64 * 0.004)
    assert det.fp_volume_ml == pytest.approx(8 * 0.004)
    missed = next(les for les in lesion_table(instance_map(truth), affine=affine) if les.lesion_id == 2)
    assert det.fn_volume_ml == pytest.approx(missed.volume_ml)
    with pytest.raises(ValueError, match="exactly one of affine and spacing"):
        detection(pred, truth)
    with pytest.raises(ValueError, match="exactly one of affine and spacing"):
        detection(pred, truth, affine=affine, spacing=SPACING)


@pytest.mark.parametrize(("stop", "iou", "matched_at_01"), [(20, 0.1, True), (21, 32 / 336, False), (19, 32 / 304, True)])
def test_iou_threshold_at_just_below_and_just_above_0_1(stop, iou, matched_at_01):
    truth = np.zeros((24, 4, 4), np.uint8)
    truth[0:10] = 1  # 160 voxels
    pred = np.zeros(truth.shape, bool)
    pred[8:stop] = True  # 32 shared voxels
    assert 32 / (160 + (stop - 8) * 16 - 32) == pytest.approx(iou)
    strict = detection(pred, truth, spacing=SPACING, iou_threshold=0.1)
    assert (strict.tp, strict.fp, strict.fn) == ((1, 0, 0) if matched_at_01 else (0, 1, 1))
    assert detection(pred, truth, spacing=SPACING).tp == 1  # any overlap


def test_empty_cases():
    empty_truth = np.zeros((5, 5, 5), np.uint8)
    empty_pred = np.zeros((5, 5, 5), bool)
    assert detection(empty_pred, empty_truth, spacing=SPACING) == Detection(0, 0, 0, 1.0, 1.0, 1.0, 0.0, 0.0)
    pred = empty_pred.copy()
    pred[1, 1, 1] = True
    det = detection(pred, empty_truth, spacing=SPACING)
    assert (det.fp, det.precision, det.recall, det.f1) == (1, 0.0, 0.0, 0.0)
    assert det.fp_volume_ml == pytest.approx(0.001)
    truth = empty_truth.copy()
    truth[2, 2, 2] = 7
    det = detection(empty_pred, truth, spacing=SPACING)
    assert (det.fn, det.precision, det.recall, det.f1) == (1, 0.0, 0.0, 0.0)
    assert det.fn_volume_ml == pytest.approx(0.001)


def test_prediction_outside_the_truth_box_and_diagonal_contact():
    truth = np.zeros((10, 10, 10), np.uint8)
    truth[0:2, 0:2, 0:2] = 9
    pred = np.zeros(truth.shape, bool)
    pred[2, 2, 2] = True  # touches the lesion's corner only: 26-connected to nothing, no overlap
    pred[1, 1, 1] = True  # overlaps and is 26-connected to the voxel above
    pred[9, 9, 9] = True
    det = detection(pred, truth, spacing=SPACING)
    assert (det.tp, det.fp, det.fn) == (1, 1, 0)
    assert det.precision == pytest.approx(0.5)


def _brute_force(pred: np.ndarray, truth: np.ndarray, iou_threshold: float) -> tuple[int, int, int, float, float]:
    """Quadratic reference: every lesion against every component (scipy labelling)."""
    comps, n = ndimage.label(pred, structure=np.ones((3, 3, 3)))
    ids = [i for i in np.unique(truth) if i]
    match = np.zeros((len(ids), n), bool)
    for a, lid in enumerate(ids):
        lesion = truth == lid
        for b in range(n):
            comp = comps == b + 1
            inter = np.count_nonzero(lesion & comp)
            iou = inter / np.count_nonzero(lesion | comp)
            match[a, b] = inter > 0 if iou_threshold == 0 else iou >= iou_threshold
    tp, fp = int(match.any(axis=1).sum()), int((~match.any(axis=0)).sum())
    fn_vol = sum(np.count_nonzero(truth == lid) for a, lid in enumerate(ids) if not match[a].any())
    fp_vol = sum(np.count_nonzero(comps == b + 1) for b in range(n) if not match[:, b].any())
    return tp, fp, len(ids) - tp, fp_vol * 1e-3, fn_vol * 1e-3


@pytest.mark.parametrize("labelling", ["sparse", "cc3d"])
@pytest.mark.parametrize("iou_threshold", [0.0, 0.1, 0.3])
def test_agrees_with_a_brute_force_reference(iou_threshold, labelling, monkeypatch):
    # Both ways of labelling the prediction: from its voxel list, and with cc3d on its box.
    monkeypatch.setattr(detection_module, "_SPARSE_RATIO", 10**9 if labelling == "sparse" else 0)
    rng = np.random.default_rng(5)
    for _ in range(4):
        truth = np.zeros((24, 8, 26), np.uint16)
        ids = rng.choice(1000, size=6, replace=False) + 1  # sparse, unordered ids
        for lid in ids:
            lo = rng.integers(0, [20, 5, 22])
            size = rng.integers(2, 5, 3)
            truth[tuple(slice(a, a + s) for a, s in zip(lo, size))] = lid
        found = (truth > 0) & (truth != ids[0])  # the first lesion is missed unless touched by another
        pred = ndimage.binary_dilation(found, iterations=1) & (rng.random(truth.shape) < 0.7)
        pred |= rng.random(truth.shape) < 0.003
        det = detection(pred, truth, spacing=SPACING, iou_threshold=iou_threshold)
        tp, fp, fn, fp_vol, fn_vol = _brute_force(pred, truth, iou_threshold)
        assert (det.tp, det.fp, det.fn) == (tp, fp, fn)
        assert det.fp_volume_ml == pytest.approx(fp_vol) and det.fn_volume_ml == pytest.approx(fn_vol)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match=r"\(2, 2, 2\) differs from truth shape \(2, 2, 3\)"):
        detection(np.zeros((2, 2, 2), bool), np.zeros((2, 2, 3), np.uint8), spacing=SPACING)
    with pytest.raises(ValueError, match="integer"):
        detection(np.zeros((2, 2, 2), bool), np.zeros((2, 2, 2), np.float32), spacing=SPACING)
    with pytest.raises(ValueError, match="iou_threshold"):
        detection(np.zeros((2, 2, 2), bool), np.zeros((2, 2, 2), np.uint8), spacing=SPACING, iou_threshold=1.5)


@pytest.mark.parametrize("labelling", ["sparse", "cc3d"])
def test_bool_truth_is_split_into_26_connected_components(labelling, monkeypatch):
    monkeypatch.setattr(detection_module, "_SPARSE_RATIO", 10**9 if labelling == "sparse" else 0)
    truth = np.zeros((16, 8, 8), bool)
    truth[2:5, 2:5, 2:5] = True     # lesion A (27 voxels) ...
    truth[5, 5, 5] = True           # ... with a voxel touching its corner: still lesion A
    truth[10:13, 2:5, 2:5] = True   # lesion B
    pred = np.zeros(truth.shape, bool)
    pred[10:13, 2:5, 2:5] = True
    det = detection(pred, truth, spacing=SPACING)
    assert (det.tp, det.fp, det.fn) == (1, 0, 1)
    assert det.fn_volume_ml == pytest.approx(28 * 0.001)
    # The same label as an integer 0/1 map is one lesion (instance ids as given), found.
    as_ids = detection(pred, truth.astype(np.uint8), spacing=SPACING)
    assert (as_ids.tp, as_ids.fp, as_ids.fn) == (1, 0, 0)


def test_large_sparse_instance_ids():
    truth = np.zeros((6, 4, 4), np.uint32)
    truth[0:2] = 4_000_000_000
    truth[4:6] = 7
    pred = np.zeros(truth.shape, bool)
    pred[0:2, :2] = True
    det = detection(pred, truth, spacing=SPACING)
    assert (det.tp, det.fp, det.fn) == (1, 0, 1)
    assert det.fn_volume_ml == pytest.approx(32 * 0.001)
