"""Properties every registered model keeps, hand-checkable cases, and the quality order expected."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from nfbench.bbox import mask_bbox, pad_bbox, union_bbox
from nfbench.interaction.policies import next_clicks
from nfbench.io.volume import Volume
from nfbench.lesions import instance_map, lesion_table
from nfbench.metrics.overlap import dice
from nfbench.models.base import check_prediction
from nfbench.models.registry import available_models, load_model
from nfbench.phantom import make_case
from nfbench.types import Click
from tests.models.answers import FullMaskSession

#: The weight-free models nfbench ships: each must load here, none may be skipped silently.
BASELINES = ("sphere", "region-grow", "random-walker")


def test_every_shipped_baseline_is_available():
    infos = {m.name: m for m in available_models()}
    for name in BASELINES:
        assert infos[name].available and not infos[name].needs_weights, infos[name]


def _volume(data: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> Volume:
    affine = np.diag([*spacing, 1.0])
    return Volume(data.astype(np.float32), affine, affine, nib.Nifti1Header())


def _phantoms(difficulty: str):
    """Two small low-burden phantoms: (image Volume, instance map, lesions) each."""
    cases = []
    for seed in (21, 22):
        phantom = make_case(size="small", burden="low", rng=seed, difficulty=difficulty)
        image, label = phantom.volumes(image_dtype=np.float32)
        instances = instance_map(label.data)
        cases.append((image, instances, lesion_table(instances, affine=image.affine)))
    return cases


@pytest.fixture(scope="module")
def phantoms():
    return _phantoms("realistic")


def _centre_click(instances, lesion, spacing) -> Click:
    box = pad_bbox(lesion.bbox, 1, instances.shape)
    truth = instances[box] == lesion.lesion_id
    click = next_clicks(np.zeros_like(truth), truth, spacing=spacing, rng=np.random.default_rng(0))[0]
    return Click(tuple(s.start + v for s, v in zip(box, click.ijk)), True)


@pytest.mark.parametrize("name", BASELINES)
def test_contract(name, phantoms):
    image, instances, lesions = phantoms[0]
    session = FullMaskSession(name, image)  # every answer goes through check_prediction
    empty = session.predict()
    assert empty.dtype == np.bool_ and empty.shape == image.shape and not empty.any()
    click = _centre_click(instances, lesions[0], image.spacing)
    session.add_click(Click(click.ijk, False))
    assert not session.predict().any()  # a negative click alone marks nothing
    session.reset()
    session.add_click(click)
    first = session.predict()
    assert first[click.ijk]
    again = FullMaskSession(name, image)
    again.add_click(click)
    np.testing.assert_array_equal(again.predict(), first)  # deterministic
    session.reset()
    assert not session.predict().any()


def _painted(session) -> np.ndarray:
    """The full mask a click-region session stands for: every region painted, written plainly."""
    full = np.zeros(session.shape, bool)
    for region in session.regions:
        full[region.box] |= region.mask
    return full


@pytest.mark.parametrize("name", BASELINES)
def test_answers_are_the_changed_box_and_assemble_to_the_full_mask(name, phantoms):
    image, instances, lesions = phantoms[1]
    session = load_model(name).start(image, seed=3)
    clicks = [_centre_click(instances, lesion, image.spacing) for lesion in lesions[:4]]
    near = tuple(min(v + 2, n - 1) for v, n in zip(clicks[1].ijk, image.shape))
    sequence = [*clicks, Click(clicks[0].ijk, False), Click(near, False), Click((0, 0, 0), False)]
    assembled = np.zeros(image.shape, bool)
    for click in sequence:
        session.add_click(click)
        answer = check_prediction(name, session.predict(), image.shape)
        assert isinstance(answer.box, tuple) and answer.mask.shape == tuple(s.stop - s.start for s in answer.box)
        before = assembled.copy()
        assembled[answer.box] = answer.mask
        reference = _painted(session)
        np.testing.assert_array_equal(assembled, reference)
        outside = np.ones(image.shape, bool)
        outside[answer.box] = False
        np.testing.assert_array_equal(reference[outside], before[outside])  # nothing changed outside the box
        assert np.prod(answer.mask.shape) < 0.05 * np.prod(image.shape), (answer.box, image.shape)
        if click.ijk == (0, 0, 0):  # a negative click far from every region changes nothing
            assert answer.mask.size == 0
    assert check_prediction(name, session.predict(), image.shape).mask.size == 0  # asked again: no change
    session.reset()
    assert check_prediction(name, session.predict(), image.shape).mask.size == 0  # empty after a reset


@pytest.mark.parametrize("name", BASELINES)
def test_box_needs_the_capability(name, phantoms):
    assert "box" not in load_model(name).capabilities
    session = load_model(name).start(phantoms[0][0])
    with pytest.raises(NotImplementedError, match="no 'box' capability"):
        session.add_box(None)


@pytest.mark.parametrize("name", BASELINES)
def test_many_clicks_over_the_body(name, phantoms):
    """A global session: clicks on every lesion, then negatives; each region stays local."""
    image, instances, lesions = phantoms[1]
    session = FullMaskSession(name, image)
    clicks = [_centre_click(instances, lesion, image.spacing) for lesion in lesions]
    for click in clicks:
        session.add_click(click)
    pred = session.predict()
    assert all(pred[c.ijk] for c in clicks)
    session.add_click(Click(clicks[0].ijk, False))  # cancels the first lesion's click only
    after = session.predict()
    assert not after[clicks[0].ijk] and all(after[c.ijk] for c in clicks[1:])
    far = pad_bbox(lesions[0].bbox, 30, image.shape)
    outside = np.ones(image.shape, bool)
    outside[far] = False
    np.testing.assert_array_equal(after & outside, pred & outside)  # nothing changed far away
    with pytest.raises(ValueError, match="outside the image"):
        session.add_click(Click((image.shape[0], 0, 0), True))


def test_sphere_respects_anisotropic_spacing():
    image = _volume(np.zeros((11, 5, 11)), spacing=(2.5, 7.8, 2.5))
    session = FullMaskSession("sphere", image, radius_mm=5.0)
    session.add_click(Click((5, 2, 5), True))
    pred = session.predict()
    # (2.5 i)² + (7.8 j)² + (2.5 k)² ≤ 25: j = 0 only, i² + k² ≤ 4: 13 voxels.
    assert np.count_nonzero(pred) == 13 and pred[:, 2].any() and not pred[:, [1, 3]].any()
    session.add_click(Click((7, 2, 5), False))
    pred = session.predict()
    # Voxels closer (in mm) to the negative click than to the positive one go: in offsets from the
    # positive click, i² + k² < (i - 2)² + k² keeps i ≤ 0, i.e. 5 + 3 + 1 voxels, the click included.
    assert np.count_nonzero(pred) == 9 and pred[5, 2, 5] and not pred[6, 2, 5] and not pred[6, 2, 4]
    session.add_click(Click((5, 2, 5), False))  # a negative click on the positive click itself
    assert not session.predict().any()


def _target_lesion(shape=(40, 9, 40), radius=8.0, rng=0):
    """A bright ball with a darker centre in dark fat, plus Gaussian noise."""
    generator = np.random.default_rng(rng)
    grid = np.indices(shape).astype(float)
    centre = np.array(shape, float)[:, None, None, None] // 2
    spacing = np.array([1.0, 3.0, 1.0])[:, None, None, None]
    r = np.sqrt((((grid - centre) * spacing) ** 2).sum(axis=0))
    data = np.full(shape, 55.0)
    data[r <= radius] = 800.0
    data[r <= 0.5 * radius] = 400.0  # the "target sign"
    truth = r <= radius
    return data + generator.normal(0, 15, shape), truth, tuple(int(c) for c in centre[:, 0, 0, 0])


@pytest.mark.parametrize("name", ["region-grow", "random-walker"])
def test_target_sign_lesion_is_segmented_whole(name):
    data, truth, centre = _target_lesion()
    image = _volume(data, spacing=(1.0, 3.0, 1.0))
    session = FullMaskSession(name, image)
    session.add_click(Click(centre, True))  # in the darker centre
    assert dice(session.predict(), truth) > 0.95


def test_region_grow_does_not_leak_into_dimmer_tissue():
    data, truth, centre = _target_lesion()
    data[:, :, :8] = 450.0  # a large organ of intermediate intensity the lesion touches
    data[truth] = np.maximum(data[truth], 800.0)
    truth[:, :, :8] = False
    data[(np.indices(data.shape)[2] < 16) & (np.abs(np.indices(data.shape)[0] - 20) <= 1) & (data < 400)] = 450.0
    image = _volume(data, spacing=(1.0, 3.0, 1.0))
    session = FullMaskSession("region-grow", image)
    session.add_click(Click((centre[0] + 4, centre[1], centre[2]), True))
    pred = session.predict()
    assert not pred[:, :, :4].any()
    assert dice(pred, truth) > 0.9


def _mean_lesion_dice(name, cases, n_interactions=3, n_lesions=10):
    """Mean lesion Dice after ``n_interactions`` centre-of-error clicks on the largest lesions."""
    scores = []
    for image, instances, lesions in cases:
        session = FullMaskSession(name, image)
        for lesion in lesions[:n_lesions]:
            session.reset()
            pred = np.zeros(image.shape, bool)
            for _ in range(n_interactions):
                scope = pad_bbox(union_bbox(lesion.bbox, mask_bbox(pred)), 1, image.shape)
                truth = instances[scope] == lesion.lesion_id
                ignore = (instances[scope] > 0) & ~truth
                clicks = next_clicks(pred[scope], truth, spacing=image.spacing, rng=np.random.default_rng(0), ignore=ignore)
                if not clicks:
                    break
                session.add_click(Click(tuple(s.start + v for s, v in zip(scope, clicks[0].ijk)), clicks[0].positive))
                pred = session.predict()
            scope = pad_bbox(union_bbox(lesion.bbox, mask_bbox(pred)), 1, image.shape)
            truth = instances[scope] == lesion.lesion_id
            scores.append(dice(pred[scope], truth, ignore=(instances[scope] > 0) & ~truth))
    return float(np.mean(scores))


@pytest.mark.parametrize(("difficulty", "margin"), [("easy", 0.25), ("realistic", 0.05)])
def test_classical_baselines_beat_the_sphere(difficulty, margin):
    cases = _phantoms(difficulty)
    scores = {name: _mean_lesion_dice(name, cases) for name in BASELINES}
    # Measured on easy: sphere 0.64, region-grow 1.0, random-walker 1.0; on realistic (small
    # lesions, where a ball is a fair guess): sphere 0.62, region-grow 0.71, random-walker 0.82.
    assert scores["region-grow"] > scores["sphere"] + margin, scores
    assert scores["random-walker"] > scores["sphere"] + margin, scores


def test_region_grow_negative_click_drops_a_bright_neighbour():
    data, truth, centre = _target_lesion(rng=1)
    neighbour = np.zeros(data.shape, bool)
    neighbour[:, :, :13] = True
    neighbour &= ~truth
    data[neighbour] = 600.0  # brighter than every threshold but the highest: grown with the lesion
    image = _volume(data, spacing=(1.0, 3.0, 1.0))
    session = FullMaskSession("region-grow", image)
    session.add_click(Click((centre[0] + 5, centre[1], centre[2]), True))
    assert session.predict()[20, 4, 2]  # the neighbour came along
    session.add_click(Click((20, 4, 2), False))
    pred = session.predict()
    assert not pred[neighbour].any() and dice(pred, truth) > 0.95


@pytest.mark.parametrize("name", ["region-grow", "random-walker"])
def test_a_dark_target_is_segmented_like_a_bright_one(name):
    data, truth, centre = _target_lesion()
    bright = FullMaskSession(name, _volume(data, spacing=(1.0, 3.0, 1.0)))
    dark = FullMaskSession(name, _volume(1000.0 - data, spacing=(1.0, 3.0, 1.0)))  # CSF-like: darker than around
    for session in (bright, dark):
        session.add_click(Click((centre[0] + 5, centre[1], centre[2]), True))  # on the rim
    assert dice(dark.predict(), truth) > 0.95
    np.testing.assert_array_equal(dark.predict(), bright.predict())


def _two_balls_and_a_bridge():
    """Two bright balls in dark fat, joined by a bright bridge: intensity alone cannot part them."""
    shape, spacing = (60, 7, 30), np.array([1.0, 3.0, 1.0])[:, None, None, None]
    grid = np.indices(shape).astype(float)
    data = np.full(shape, 60.0)
    balls = []
    for i in (15, 45):
        r = np.sqrt((((grid - np.array([i, 3, 15])[:, None, None, None]) * spacing) ** 2).sum(axis=0))
        balls.append(r <= 7.0)
        data[balls[-1]] = 700.0
    data[15:46, 3, 14:17] = 700.0  # the bridge
    return data + np.random.default_rng(0).normal(0, 10, shape), balls


@pytest.mark.parametrize("name", ["region-grow", "random-walker"])
def test_a_negative_click_is_a_barrier_not_only_a_removal(name):
    data, (lesion, neighbour) = _two_balls_and_a_bridge()
    session = FullMaskSession(name, _volume(data, spacing=(1.0, 3.0, 1.0)))
    session.add_click(Click((15, 3, 15), True))
    session.add_click(Click((45, 3, 15), False))  # the neighbour's centre, 30 mm away from the lesion's
    pred = session.predict()
    assert not pred[neighbour].any() and not pred[31:, 3, 15].any()  # cut at the midway plane
    assert dice(pred & (np.indices(data.shape)[0] < 30), lesion) > 0.9


@pytest.mark.parametrize("name", ["region-grow", "random-walker"])
def test_the_crop_grows_along_a_long_target(name):
    """A plexiform-like tube, 90 mm long: the first crop cuts it, the region reaches both ends."""
    shape = (110, 11, 40)
    grid = np.indices(shape).astype(float)
    axes = np.array([45.0, 6.0, 5.0])[:, None, None, None]
    offset = (grid - np.array([55, 5, 20])[:, None, None, None]) * np.array([1.0, 3.0, 1.0])[:, None, None, None]
    truth = np.sqrt(((offset / axes) ** 2).sum(axis=0)) <= 1.0
    data = np.where(truth, 600.0, 80.0) + np.random.default_rng(0).normal(0, 15, shape)
    assert load_model(name).start_mm < 45.0  # the first crop cuts the target
    session = FullMaskSession(name, _volume(data, spacing=(1.0, 3.0, 1.0)))
    session.add_click(Click((55, 5, 20), True))
    pred = session.predict()
    assert dice(pred, truth) > 0.95 and pred[12, 5, 20] and pred[97, 5, 20]


@pytest.mark.parametrize("name", ["region-grow", "random-walker"])
def test_a_click_deep_inside_a_large_target(name):
    """A ball of 28 mm radius: the first crop holds only lesion, the surroundings come from further out."""
    shape = (90, 11, 90)
    grid = np.indices(shape).astype(float)
    offset = (grid - np.array([45, 5, 45])[:, None, None, None]) * np.array([1.0, 3.0, 1.0])[:, None, None, None]
    truth = np.sqrt((offset**2).sum(axis=0)) <= 28.0
    data = np.where(truth, 600.0, 80.0) + np.random.default_rng(0).normal(0, 15, shape)
    session = FullMaskSession(name, _volume(data, spacing=(1.0, 3.0, 1.0)))
    session.add_click(Click((45, 5, 45), True))
    assert dice(session.predict(), truth) > 0.95


def _core_rim_and_muscle(rng=0):
    """A lesion of a bright core and a dim rim, in fat, its rim touching a muscle a little darker than the rim."""
    shape, spacing = (40, 9, 40), np.array([1.0, 3.0, 1.0])[:, None, None, None]
    r = np.sqrt((((np.indices(shape) - np.array([20, 4, 20])[:, None, None, None]) * spacing) ** 2).sum(axis=0))
    data = np.full(shape, 55.0)
    muscle = (np.indices(shape)[2] <= 12) & (r > 8.0)
    data[muscle] = 300.0
    data[r <= 8.0] = 350.0
    data[r <= 5.0] = 800.0
    return data + np.random.default_rng(rng).normal(0, 10, shape), r <= 8.0, muscle


def test_a_corrective_click_on_a_dim_rim_extends_the_lesion_without_leaking():
    data, truth, muscle = _core_rim_and_muscle()
    click = (20, 4, 14)  # on the rim, beside the core's region, dimmer than its threshold
    data[click] = 350.0  # the rim's own level: the extension's threshold is the clicked intensity
    session = FullMaskSession("region-grow", _volume(data, spacing=(1.0, 3.0, 1.0)))
    session.add_click(Click((20, 4, 20), True))
    core = session.predict()
    assert not core[muscle].any() and dice(core, truth) < 0.5  # the core alone: its thresholds lie above the rim
    session.add_click(Click(click, True))
    pred = session.predict()
    # Grown on the lesion's levels down to the clicked voxel: about half the noisy rim and none of
    # the muscle (the rim voxel's own levels, 50-80 % of the way from the fat to 350, all hold the
    # muscle: a region of their own took all of it).
    assert not pred[muscle].any() and np.count_nonzero(pred & truth & ~core) > 0.4 * np.count_nonzero(truth & ~core)
    assert dice(pred, truth) > dice(core, truth) + 0.3


def test_a_negative_click_that_intensity_excludes_cuts_no_plane_through_the_lesion():
    """A negative click on a dimmer false-positive fringe: the raised threshold removes the fringe,
    and no midway-plane barrier takes the lesion's voxels on the fringe's side with it."""
    shape, spacing = (40, 9, 40), np.array([1.0, 3.0, 1.0])[:, None, None, None]
    r = np.sqrt((((np.indices(shape) - np.array([20, 4, 20])[:, None, None, None]) * spacing) ** 2).sum(axis=0))
    data = np.full(shape, 55.0)
    truth = r <= 8.0
    data[truth] = 600.0
    fringe = np.zeros(shape, bool)
    fringe[18:27, 5, 26:31] = True
    fringe &= ~truth
    data[fringe] = 450.0  # above the lowest threshold, below the lesion
    data += np.random.default_rng(0).normal(0, 10, shape)
    session = FullMaskSession("region-grow", _volume(data, spacing=(1.0, 3.0, 1.0)))
    session.add_click(Click((20, 4, 20), True))
    assert session.predict()[fringe].all()
    session.add_click(Click((22, 5, 29), False))  # the fringe's centre, 11 mm from the positive click
    pred = session.predict()
    # The fringe voxels brighter than the clicked one stay (1 of 33 here); the plane barrier took
    # the lesion's far side too (Dice 0.94).
    assert pred[fringe].mean() < 0.1 and dice(pred, truth) > 0.99


def test_a_click_on_a_neighbour_is_not_captured_by_a_region_too_small_to_know_its_levels():
    """A tiny, very bright first region (its thresholds far above the lesion it touches) is no
    object a dimmer click extends: the neighbour's click grows with its own levels."""
    shape, spacing = (40, 9, 40), np.array([1.0, 3.0, 1.0])[:, None, None, None]
    grid = np.indices(shape)
    data = np.full(shape, 55.0)
    neighbour = np.sqrt((((grid - np.array([20, 4, 22])[:, None, None, None]) * spacing) ** 2).sum(axis=0)) <= 7.0
    data[neighbour] = 500.0
    spot = np.sqrt((((grid - np.array([20, 4, 15])[:, None, None, None]) * spacing) ** 2).sum(axis=0)) <= 1.5
    data[spot] = 2000.0  # on the neighbour's edge
    data += np.random.default_rng(0).normal(0, 10, shape)
    session = FullMaskSession("region-grow", _volume(data, spacing=(1.0, 3.0, 1.0)))
    session.add_click(Click((20, 4, 15), True))
    assert np.count_nonzero(session.predict()) < 20  # the spot alone, smaller than the 3 mm ball
    session.add_click(Click((20, 4, 24), True))
    assert dice(session.predict() & ~spot, neighbour) > 0.95


@pytest.mark.parametrize("name", ["region-grow", "random-walker"])
@pytest.mark.parametrize("image", ["flat", "noise"])
def test_a_positive_click_keeps_its_voxel_whatever_negative_clicks_come_near(name, image):
    rng = np.random.default_rng(4)
    data = np.full((30, 30, 30), 500.0) if image == "flat" else rng.normal(100.0, 10.0, (30, 30, 30))
    session = FullMaskSession(name, _volume(data))
    positive = (15, 15, 15)
    session.add_click(Click(positive, True))  # nothing stands out: the clicked voxel alone
    for negative in ((16, 15, 15), (17, 15, 15), (15, 15, 25)):
        session.add_click(Click(negative, False))
        pred = session.predict()
        assert pred[positive] and not pred[negative]
    session.add_click(Click(positive, False))  # clicked both ways: the negative has the last word
    assert not session.predict()[positive]


def test_region_grow_answers_an_int16_image_spanning_its_range_as_its_float_copy():
    data, truth, centre = _target_lesion(rng=2)
    wide = np.where(truth, 32000, -32000).astype(np.int16)
    answers = []
    for dtype in (np.int16, np.float32):
        affine = np.eye(4)
        session = FullMaskSession("region-grow", Volume(wide.astype(dtype), affine, affine, nib.Nifti1Header()))
        session.add_click(Click(centre, True))
        outside = tuple(np.argwhere(~truth & np.roll(truth, 1, axis=0))[0])  # just beside the lesion
        session.add_click(Click(outside, False))
        answers.append(session.predict())
    np.testing.assert_array_equal(answers[0], answers[1])
    assert dice(answers[1], truth) > 0.99


@pytest.mark.parametrize("name", ["region-grow", "random-walker"])
def test_intensities_near_the_float32_limit_are_answered_as_the_image_scaled_down(name):
    data, truth, centre = _target_lesion(rng=3)
    answers = []
    for scale in (1.0, 3e38 / 480.0):  # about ±3e38: differences of neighbours overflow float32
        centred = (data - 500.0) * scale
        session = FullMaskSession(name, _volume(centred, spacing=(1.0, 3.0, 1.0)))
        session.add_click(Click(centre, True))
        answers.append(session.predict())
    assert dice(answers[0], truth) > 0.95
    assert dice(answers[1], answers[0]) > 0.99


def _uncached(session):
    """A region-grow session with its per-case caches off: every growth and surroundings computed anew."""
    from nfbench.models.baselines.region_grow import GrownCache

    session.grown_cache = GrownCache(0)
    session.surroundings = session._read_surroundings
    return session


def test_region_grow_caches_give_the_masks_of_the_uncached_path(phantoms):
    """Many mixed corrective clicks on one lesion (each negative click recomputes every region in its
    reach), a reset and the same clicks again: the cached session answers exactly as the uncached one."""
    image, instances, lesions = phantoms[0]
    truth = instances == lesions[0].lesion_id
    box = pad_bbox(lesions[0].bbox, 20, image.shape)
    model = load_model("region-grow")
    cached, plain = model.start(image), _uncached(model.start(image))
    masks = [np.zeros(image.shape, bool), np.zeros(image.shape, bool)]
    rng, clicks = np.random.default_rng(0), []
    for _ in range(25):
        drawn = next_clicks(masks[0], truth, spacing=image.spacing, rng=rng, box=box, policy="uniform")
        clicks += drawn
        for session, mask in zip((cached, plain), masks):
            for click in drawn:
                session.add_click(click)
            answer = session.predict()
            mask[answer.box] = answer.mask
        np.testing.assert_array_equal(masks[0], masks[1])
    assert any(c.positive for c in clicks) and sum(not c.positive for c in clicks) >= 3
    assert cached.grown_cache.items and not plain.grown_cache.items
    cached.reset()  # the caches outlive a reset: the same clicks now mostly hit them
    for click in clicks:
        cached.add_click(click)
    np.testing.assert_array_equal(_painted(cached), masks[1])


def test_grown_cache_returns_read_only_copies_and_keeps_its_byte_budget():
    from nfbench.models.baselines.region_grow import GrownCache

    masks = [np.random.default_rng(n).random((4, 5, 6)) > 0.5 for n in range(3)]  # 120 bits: 15 bytes each
    cache = GrownCache(30)
    for n, mask in enumerate(masks):
        got = cache.get(n, lambda: mask.copy())
        np.testing.assert_array_equal(got, mask)
        assert not got.flags.writeable
    assert list(cache.items) == [1, 2] and cache.size == 30  # the oldest went
    np.testing.assert_array_equal(cache.get(1, lambda: pytest.fail("recomputed")), masks[1])
    cache.get(3, lambda: masks[0])
    assert list(cache.items) == [1, 3]  # the most recently read stays
    assert not GrownCache(0).get(0, lambda: masks[0].copy()).flags.writeable and not GrownCache(0).items
