"""Quality order of the baselines on a synthetic volume built here (no phantom, no click policy).

The volume mimics a T2 fat-suppressed whole-body MRI at the spacing of the real data, (2.5, 7.8,
2.5) mm: dark noisy fat with a smooth intensity drift, and four bright ellipsoid lesions of
different sizes whose centres are darker (the "target sign"). Every lesion gets one click at its
centre, then two corrective clicks from a rule written here: click the innermost voxel (in mm) of
the largest error component, positive when it is missed lesion, negative when it is a false
positive. Region growing and the random walker must beat the sphere clearly.
"""

from __future__ import annotations

import time

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from nfbench.io.volume import Volume
from nfbench.metrics.overlap import dice
from nfbench.types import Click
from tests.models.answers import FullMaskSession

SPACING = (2.5, 7.8, 2.5)
SHAPE = (72, 14, 72)
# (centre voxel, semi-axes in mm): small to large, far enough apart that crops do not matter.
LESIONS = (
    ((16, 4, 16), (6.0, 9.0, 7.0)),
    ((54, 6, 18), (11.0, 16.0, 9.0)),
    ((18, 8, 52), (15.0, 22.0, 18.0)),
    ((52, 7, 54), (9.0, 12.0, 13.0)),
)


def _synthetic_case(rng: int = 0) -> tuple[Volume, np.ndarray]:
    """The image and its instance map (lesion ``n`` has label ``n + 1``)."""
    generator = np.random.default_rng(rng)
    grid = np.indices(SHAPE).astype(float)
    mm = grid * np.asarray(SPACING)[:, None, None, None]
    data = 90.0 + 25.0 * np.sin(mm[0] / 60.0) * np.cos(mm[2] / 45.0)  # drifting fat level
    instances = np.zeros(SHAPE, np.uint8)
    for label, (centre, axes) in enumerate(LESIONS, start=1):
        offset = mm - (np.asarray(centre) * np.asarray(SPACING))[:, None, None, None]
        r = np.sqrt(sum((offset[a] / axes[a]) ** 2 for a in range(3)))  # 1 on the surface
        instances[r <= 1.0] = label
        data[r <= 1.0] = 420.0 + 40.0 * label
        data[r <= 0.45] = 260.0  # darker centre
    data = ndimage.gaussian_filter(data, sigma=(0.8, 0.3, 0.8))  # partial volume at the borders
    data += generator.normal(0.0, 35.0, SHAPE)
    affine = np.diag([*SPACING, 1.0])
    return Volume(data.astype(np.float32), affine, affine, nib.Nifti1Header()), instances


def _corrective_click(pred: np.ndarray, truth: np.ndarray) -> Click | None:
    """The innermost voxel of the largest error component, signed by the kind of error."""
    best: tuple[int, np.ndarray, bool] | None = None
    for error, positive in ((truth & ~pred, True), (pred & ~truth, False)):
        labels, n = ndimage.label(error)
        if n == 0:
            continue
        sizes = np.bincount(labels.ravel())[1:]
        if best is None or sizes.max() > best[0]:
            best = (int(sizes.max()), labels == np.argmax(sizes) + 1, positive)
    if best is None:
        return None
    _, component, positive = best
    depth = ndimage.distance_transform_edt(np.pad(component, 1), sampling=SPACING)[1:-1, 1:-1, 1:-1]
    return Click(np.unravel_index(int(np.argmax(depth)), depth.shape), positive)


def _scores(name: str, image: Volume, instances: np.ndarray) -> tuple[list[float], list[float]]:
    """Per lesion Dice after the centre click and two corrections; click latencies in seconds."""
    session = FullMaskSession(name, image)
    scores, latencies = [], []
    for label, (centre, _) in enumerate(LESIONS, start=1):
        truth = instances == label
        session.reset()
        click: Click | None = Click(centre, True)
        for _ in range(3):
            if click is None:
                break
            start = time.perf_counter()
            session.add_click(click)
            pred = session.predict()
            latencies.append(time.perf_counter() - start)
            click = _corrective_click(pred, truth)
        scores.append(dice(pred, truth))
    return scores, latencies


@pytest.fixture(scope="module")
def case():
    return _synthetic_case()


def test_synthetic_case_has_target_sign_lesions(case):
    image, instances = case
    for label, (centre, _) in enumerate(LESIONS, start=1):
        lesion = image.data[instances == label]
        assert image.data[centre] < np.percentile(lesion, 90) - 50  # the centre is darker
        assert np.count_nonzero(instances == label) >= 8


def test_corrective_click_rule():
    truth = np.zeros((9, 5, 9), bool)
    truth[1:8, 1:4, 1:8] = True
    pred = np.zeros_like(truth)
    # Depth in mm: 4 voxels × 2.5 in-plane, 2 slices × 7.8 across, only at the very centre.
    assert _corrective_click(pred, truth) == Click((4, 2, 4), True)
    pred = truth.copy()
    pred[8, :, :] = True  # a false-positive sheet beyond the lesion, larger than any miss
    negative = _corrective_click(pred, truth)
    assert not negative.positive and negative.ijk[0] == 8
    assert _corrective_click(truth, truth) is None


def test_classical_baselines_beat_the_sphere_on_a_synthetic_case(case):
    image, instances = case
    names = ("sphere", "region-grow", "random-walker")
    means = {name: float(np.mean(_scores(name, image, instances)[0])) for name in names}
    # Measured: sphere 0.44, region-grow 0.91, random-walker 0.88 (0.76-0.88 and 0.77-0.91 for
    # noise seeds 1-5; 0.94 and 0.94 before issue 8, whose negative clicks became barriers).
    assert means["region-grow"] > means["sphere"] + 0.2, means
    assert means["random-walker"] > means["sphere"] + 0.2, means
    assert min(means.values()) > 0.0, means  # every model found something on every lesion
