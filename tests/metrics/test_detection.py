from __future__ import annotations

import numpy as np
import pytest

from nfbench.metrics.detection import detection

SPACING = (1.0, 1.0, 1.0)  # one voxel = 0.001 ml


def _scene():
    truth = np.zeros((30, 10, 30), np.uint16)
    truth[2:6, 2:6, 2:6] = 1        # found exactly
    truth[10:14, 2:6, 2:6] = 2      # missed
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


def test_any_overlap_matching():
    pred, truth = _scene()
    det = detection(pred, truth, spacing=SPACING)
    assert (det.tp, det.fn, det.fp) == (4, 1, 1)
    assert det.recall == pytest.approx(4 / 5)
    assert det.precision == pytest.approx(4 / 5)  # 5 components, 4 of them touch a lesion
    assert det.f1 == pytest.approx(0.8)
    assert det.fn_volume_ml == pytest.approx(64 * 0.001)
    assert det.fp_volume_ml == pytest.approx(8 * 0.001)


def test_iou_threshold_just_below_and_above():
    truth = np.zeros((20, 4, 4), np.uint8)
    truth[0:10, 0:4, 0:4] = 1  # 160 voxels
    pred = np.zeros(truth.shape, bool)
    pred[9:20, 0:4, 0:4] = True  # 176 voxels, 16 shared: IoU = 16 / 320 = 0.05
    assert detection(pred, truth, spacing=SPACING, iou_threshold=0.05).tp == 1
    assert detection(pred, truth, spacing=SPACING, iou_threshold=0.051).tp == 0
    assert detection(pred, truth, spacing=SPACING).tp == 1


def test_empty_cases():
    empty_truth = np.zeros((5, 5, 5), np.uint8)
    empty_pred = np.zeros((5, 5, 5), bool)
    det = detection(empty_pred, empty_truth, spacing=SPACING)
    assert (det.precision, det.recall, det.f1) == (1.0, 1.0, 1.0)
    pred = empty_pred.copy()
    pred[1, 1, 1] = True
    det = detection(pred, empty_truth, spacing=SPACING)
    assert (det.fp, det.precision, det.f1) == (1, 0.0, 0.0)
    truth = empty_truth.copy()
    truth[2, 2, 2] = 7
    det = detection(empty_pred, truth, spacing=SPACING)
    assert (det.fn, det.recall, det.f1) == (1, 0.0, 0.0)
