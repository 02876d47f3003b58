"""Properties of single phantom cases: geometry, lesion counts and sizes, contrast, determinism."""

from __future__ import annotations

import cc3d
import edt
import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from nfbench.io.volume import canonical_grid
from nfbench.lesions import voxel_volume_ml
from nfbench.phantom import SIZES, make_case
from nfbench.phantom.case import BURDEN_RANGES, STORED_ORIENTATION
from nfbench.phantom.difficulty import DIFFICULTIES

# Anatomy tests use the easy phantom (flat shades, noise σ 18), where one threshold tells body from
# air: 120 is above any air voxel (P(air > 120) ~ 2e-10) and below every tissue.
BODY = 120.0


@pytest.fixture(scope="module")
def small_empty():
    return make_case(size="small", burden="low", rng=0, n_lesions=0, difficulty="easy")


@pytest.fixture(scope="module")
def small_high():
    # Test results depend on this seed only through which lesions exist; the properties hold for any.
    return make_case(size="small", burden="high", rng=11)


def _volumes_ml(case) -> np.ndarray:
    counts = np.bincount(case.label.ravel())[1:]
    return counts * voxel_volume_ml(case.affine)


def _spacing(case) -> np.ndarray:
    """Voxel size along each axis, read from the case's affine."""
    return np.sqrt((case.affine[:3, :3] ** 2).sum(axis=0))


def _body_extent_mm(case) -> np.ndarray:
    """World coordinates (mm) of the first and last body voxel along each axis, shape (2, 3)."""
    body = case.image > BODY
    lo = [np.flatnonzero(body.any(axis=tuple(a for a in range(3) if a != axis))).min() for axis in range(3)]
    hi = [np.flatnonzero(body.any(axis=tuple(a for a in range(3) if a != axis))).max() for axis in range(3)]
    return np.array([nib.affines.apply_affine(case.affine, lo), nib.affines.apply_affine(case.affine, hi)])


def test_tiny_grid_and_types():
    case = make_case(size="tiny", burden="low", rng=0)
    shape, spacing = SIZES["tiny"]
    assert case.image.shape == case.label.shape == shape
    assert case.image.size <= 300_000 and shape[1] >= 12
    assert case.image.dtype == np.float32 and case.label.dtype == np.uint16
    assert case.spacing == spacing
    np.testing.assert_allclose(np.sqrt((case.affine[:3, :3] ** 2).sum(0)), spacing)
    assert np.all(case.image >= 0) and np.isfinite(case.image).all()


def test_small_case_has_the_original_slices_and_every_size_the_same_body(small_empty):
    # The original scans: 31 coronal slices of 7.8 mm (anterior-posterior is canonical axis 1).
    assert small_empty.image.shape[1] == 31 and _spacing(small_empty)[1] == pytest.approx(7.8)
    tiny = make_case(size="tiny", burden="low", rng=0, n_lesions=0, difficulty="easy")
    # The same anatomy in mm at both sizes: the body's left-right and head-foot ends agree within
    # one voxel of each grid (posterior-anterior has few thick slices and is coarser).
    tolerance = _spacing(tiny) + _spacing(small_empty)
    difference = np.abs(_body_extent_mm(tiny) - _body_extent_mm(small_empty))
    assert np.all(difference[:, [0, 2]] <= tolerance[[0, 2]])
    height = np.diff(_body_extent_mm(small_empty)[:, 2])[0]
    assert 1600.0 < height < 1900.0  # an adult, head to feet


def test_stored_geometry_is_the_canonical_grid_in_rsa_order():
    case = make_case(size="tiny", burden="low", rng=1)
    image, label = case.volumes()
    assert "".join(nib.aff2axcodes(image.original_affine)) == "".join(STORED_ORIENTATION)
    stored_shape = tuple(case.image.shape[a] for a in (0, 2, 1))
    affine, shape = canonical_grid(image.original_affine, stored_shape)  # as a reader of the files sees it
    assert shape == case.image.shape
    np.testing.assert_allclose(affine, case.affine)
    np.testing.assert_array_equal(label.data, case.label)
    assert voxel_volume_ml(case.affine) == pytest.approx(7.5 * 15.6 * 7.5 / 1000)
    # The world origin sits at the centre of the body's grid.
    centre = (np.array(case.image.shape) - 1) / 2
    np.testing.assert_allclose(nib.affines.apply_affine(case.affine, centre), 0.0, atol=1e-9)


@pytest.mark.parametrize("burden", ["low", "high", "mixed"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lesion_count_within_burden_range(burden, seed):
    case = make_case(size="tiny", burden=burden, rng=seed)
    lo, hi = BURDEN_RANGES[burden]
    assert lo <= case.n_lesions <= hi
    # IDs are exactly 1..N, each lesion has at least one voxel.
    counts = np.bincount(case.label.ravel(), minlength=case.n_lesions + 1)
    assert len(counts) == case.n_lesions + 1
    assert np.all(counts[1:] > 0)


def test_exact_lesion_count_on_request():
    assert make_case(size="tiny", rng=3, n_lesions=7).n_lesions == 7
    empty = make_case(size="tiny", rng=3, n_lesions=0)
    assert empty.n_lesions == 0 and not empty.label.any()


def test_tiny_low_has_lesions_of_various_sizes():
    # Fixture builders elsewhere rely on this: several lesions, not all the same size.
    for seed in range(5):
        case = make_case(size="tiny", burden="low", rng=seed)
        counts = np.bincount(case.label.ravel())[1:]
        assert len(counts) >= 3
        assert counts.max() >= 2 * counts.min()


def test_high_burden_volumes_span_three_orders_of_magnitude(small_high):
    volumes = _volumes_ml(small_high)
    assert volumes.max() / volumes.min() >= 1000.0


def test_high_burden_has_all_lesion_kinds(small_high):
    assert set(small_high.kinds) == {"cutaneous", "nodular", "chain", "plexiform"}
    assert small_high.kinds.count("cutaneous") > small_high.kinds.count("plexiform")


def test_some_high_burden_case_has_a_mass_over_100_ml():
    largest = [_volumes_ml(make_case(size="tiny", burden="high", rng=seed)).max() for seed in range(4)]
    assert max(largest) > 100.0


def test_touching_lesions_keep_separate_ids(small_high):
    n_components = int(cc3d.connected_components(small_high.label > 0, connectivity=26).max())
    # Fewer blobs than instances: some instances touch, and the label still tells them apart.
    assert n_components < small_high.n_lesions


@pytest.mark.parametrize("burden", ["low", "high"])
def test_lesions_brighter_than_their_surroundings(burden, small_high):
    case = small_high if burden == "high" else make_case(size="small", burden="low", rng=5)
    brighter = []
    for lesion_id, box in enumerate(ndimage.find_objects(case.label), start=1):
        box = tuple(slice(max(s.start - 3, 0), s.stop + 3) for s in box)
        lesion = case.label[box] == lesion_id
        shell = ndimage.binary_dilation(lesion, iterations=2) & (case.label[box] == 0)
        if shell.sum() == 0:
            continue
        image = case.image[box]
        brighter.append(image[lesion].mean() > image[shell].mean())
    assert np.mean(brighter) >= 0.95


def _darker_centres(case) -> list[bool]:
    """For every lesion of 300 voxels or more: is its deepest tenth darker than its outer half?"""
    out = []
    counts = np.bincount(case.label.ravel())
    for lesion_id, box in enumerate(ndimage.find_objects(case.label), start=1):
        if counts[lesion_id] < 300:
            continue
        box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        lesion = case.label[box] == lesion_id
        depth = edt.edt(lesion, anisotropy=case.spacing)[lesion]
        values = case.image[box][lesion]
        out.append(values[depth >= np.quantile(depth, 0.9)].mean() < values[depth <= np.quantile(depth, 0.5)].mean())
    return out


def test_large_lesions_have_a_darker_centre(small_high):
    # Easy: every large lesion shows the target sign. Realistic: partial volume of the thick slices,
    # texture and noise hide it in some (thin plexiform lobes, nodules one slice thick), not in all.
    easy = _darker_centres(make_case(size="small", burden="high", rng=11, difficulty="easy"))
    assert len(easy) >= 1 and all(easy)
    assert any(_darker_centres(small_high))


def test_body_orientation_head_up_legs_apart(small_empty):
    case = small_empty
    body = case.image > BODY
    rows = body.any(axis=1)  # (axis 0, axis 2): coronal projection
    z_extent = np.flatnonzero(rows.any(axis=0))
    top, bottom = z_extent.max(), z_extent.min()
    width = rows.sum(axis=0)
    shoulders = width[bottom + int(0.8 * (top - bottom))]
    assert width[top - 5] < 0.5 * shoulders  # the head is at the superior end
    knee = rows[:, bottom + int(0.25 * (top - bottom))]
    runs = np.count_nonzero(np.diff(knee.astype(np.int8)) == 1)
    assert runs == 2  # two legs at knee height


@pytest.mark.parametrize("difficulty", ["easy", "realistic"])
def test_background_noise_is_rician(difficulty):
    case = make_case(size="small", burden="low", rng=4, difficulty=difficulty)
    corner = case.image[:15, :, :60]  # air below and beside the feet
    # Rician with zero signal (Rayleigh) has mean sigma * sqrt(pi / 2); the bias field scales only signal.
    sigma = DIFFICULTIES[difficulty].noise_sigma
    np.testing.assert_allclose(corner.mean(), sigma * np.sqrt(np.pi / 2), rtol=0.05)


def test_same_seed_same_arrays_different_seed_different():
    a = make_case(size="tiny", burden="high", rng=9)
    b = make_case(size="tiny", burden="high", rng=np.random.default_rng(9))
    c = make_case(size="tiny", burden="high", rng=10)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.label, b.label)
    assert a.kinds == b.kinds
    assert not np.array_equal(a.image, c.image)
    assert not np.array_equal(a.label, c.label)


def test_unknown_size_and_burden_are_refused():
    with pytest.raises(ValueError, match="unknown phantom size 'huge'"):
        make_case(size="huge")
    with pytest.raises(ValueError, match="unknown burden 'medium'"):
        make_case(size="tiny", burden="medium")


@pytest.mark.slow
def test_full_size_case_has_the_original_grid_and_the_same_body(small_empty):
    case = make_case(size="full", burden="high", rng=0, difficulty="easy")
    # The original data: 800 × 31 × 2900 voxels of 0.625 × 7.8 × 0.625 mm in canonical RAS.
    assert case.image.shape == case.label.shape == (800, 31, 2900)
    np.testing.assert_allclose(_spacing(case), (0.625, 7.8, 0.625))
    assert BURDEN_RANGES["high"][0] <= case.n_lesions <= BURDEN_RANGES["high"][1]
    tolerance = _spacing(case) + _spacing(small_empty)
    difference = np.abs(_body_extent_mm(case) - _body_extent_mm(small_empty))
    assert np.all(difference[:, [0, 2]] <= tolerance[[0, 2]])
