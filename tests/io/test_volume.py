"""NIfTI volumes: canonical RAS+ on load, the original file reproduced exactly on save."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from nfbench.io.volume import VolumeError, canonical_grid, load_volume, read_header, save_volume

STORED = ["RAS", "LPS", "RSA", "oblique"]


def _stored_image(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-500, 3000, size=shape).astype(np.int16)


@pytest.mark.parametrize("orientation", STORED)
def test_save_of_load_reproduces_data_and_affine(tmp_path, nifti, affine_of, orientation):
    source = nifti(tmp_path / "in.nii.gz", _stored_image((7, 5, 9)), affine_of(orientation))
    out = save_volume(load_volume(source), tmp_path / "out.nii.gz")
    before, after = nib.load(source), nib.load(out)
    np.testing.assert_array_equal(np.asanyarray(after.dataobj), np.asanyarray(before.dataobj))
    assert after.get_data_dtype() == before.get_data_dtype()
    np.testing.assert_array_equal(after.affine, before.affine)
    assert nib.aff2axcodes(after.affine) == nib.aff2axcodes(before.affine)
    assert (int(after.header["sform_code"]), int(after.header["qform_code"])) == (1, 1)
    np.testing.assert_allclose(after.get_qform(), before.get_qform(), atol=1e-5)


@pytest.mark.parametrize("orientation", STORED)
def test_label_written_from_canonical_grid_matches_stored_label(tmp_path, nifti, affine_of, orientation):
    affine = affine_of(orientation)
    stored_label = np.zeros((7, 5, 9), dtype=np.uint8)
    stored_label[1:3, 0, 4:8] = 1
    stored_label[6, 4, 0] = 2
    image = load_volume(nifti(tmp_path / "img.nii.gz", _stored_image((7, 5, 9)), affine))
    label = load_volume(nifti(tmp_path / "lab.nii.gz", stored_label, affine))
    # A prediction equal to the label, computed in the canonical grid, written through the image.
    out = save_volume(image, tmp_path / "pred.nii.gz", data=label.data.copy())
    written = nib.load(out)
    np.testing.assert_array_equal(np.asanyarray(written.dataobj), stored_label)
    np.testing.assert_array_equal(written.affine, nib.load(tmp_path / "lab.nii.gz").affine)


def test_bool_prediction_is_written_as_uint8(tmp_path, nifti, affine_of):
    image = load_volume(nifti(tmp_path / "img.nii.gz", _stored_image((4, 3, 5)), affine_of("LPS")))
    mask = image.data > 1000
    out = save_volume(image, tmp_path / "mask.nii.gz", data=mask)
    written = nib.load(out)
    assert written.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asanyarray(written.dataobj), image.to_original(mask).astype(np.uint8))


@pytest.mark.parametrize("orientation", STORED)
def test_every_voxel_keeps_its_world_position(tmp_path, nifti, affine_of, orientation):
    shape = (7, 5, 9)
    stored = np.arange(np.prod(shape), dtype=np.int32).reshape(shape)  # each value names its voxel
    affine = affine_of(orientation)
    vol = load_volume(nifti(tmp_path / "in.nii.gz", stored, affine))
    assert "".join(nib.aff2axcodes(vol.affine)) == "RAS"
    ijk = np.argwhere(np.ones(vol.shape, dtype=bool))
    stored_ijk = np.column_stack(np.unravel_index(vol.data[tuple(ijk.T)], shape))
    world_canonical = vol.ijk_to_mm(ijk)
    world_stored = stored_ijk @ affine[:3, :3].T + affine[:3, 3]
    np.testing.assert_allclose(world_canonical, world_stored, atol=1e-4)


def test_coronal_rsa_lands_at_hand_computed_canonical_index(tmp_path, nifti, affine_of):
    # Stored axes: 0 → Right (0.8 mm), 1 → Superior (1.1 mm), 2 → Anterior (7.8 mm thick slices).
    stored = np.zeros((6, 10, 3), dtype=np.uint8)
    stored[1, 7, 2] = 1
    vol = load_volume(nifti(tmp_path / "rsa.nii.gz", stored, affine_of("RSA")))
    assert vol.shape == (6, 3, 10)  # (R, A, S)
    assert vol.spacing == pytest.approx((0.8, 7.8, 1.1))
    assert vol.original_orientation == "RSA"
    assert tuple(np.argwhere(vol.data)[0]) == (1, 2, 7)


def test_lps_lands_at_hand_computed_canonical_index(tmp_path, nifti, affine_of):
    # L and P axes are reversed: stored index 0 (most left / posterior) becomes the last one.
    stored = np.zeros((6, 4, 5), dtype=np.uint8)
    stored[0, 1, 3] = 1
    vol = load_volume(nifti(tmp_path / "lps.nii.gz", stored, affine_of("LPS")))
    assert vol.shape == (6, 4, 5)
    assert vol.spacing == pytest.approx((0.8, 1.1, 3.0))
    assert tuple(np.argwhere(vol.data)[0]) == (5, 2, 3)
    assert vol.data.flags.c_contiguous


def test_trailing_singleton_axis_is_squeezed(tmp_path, nifti):
    vol = load_volume(nifti(tmp_path / "t.nii.gz", np.ones((3, 4, 5, 1), dtype=np.float32)))
    assert vol.shape == (3, 4, 5)


def test_real_4d_volume_is_refused_naming_the_file(tmp_path, nifti):
    path = nifti(tmp_path / "four_d.nii.gz", np.ones((3, 4, 5, 2), dtype=np.float32))
    with pytest.raises(VolumeError, match=r"four_d\.nii\.gz.*3D volume.*\(3, 4, 5, 2\)"):
        load_volume(path)


def test_truncated_gzip_is_refused_naming_the_file(tmp_path, nifti):
    path = nifti(tmp_path / "whole.nii.gz", np.arange(4000, dtype=np.float32).reshape(10, 20, 20))
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(path.read_bytes()[:-200])
    read_header(cut)  # the header alone is still readable
    with pytest.raises(VolumeError, match=r"cut\.nii\.gz.*corrupt"):
        load_volume(cut)


def test_a_corrupted_byte_is_caught_by_the_gzip_checksum(tmp_path, nifti):
    plain = nifti(tmp_path / "plain.nii", np.arange(4000, dtype=np.float32).reshape(10, 20, 20))
    # Deflate's stored blocks copy the bytes as they are: a flipped byte changes one voxel and
    # leaves the stream valid, so only the checksum in the gzip trailer can tell.
    packed = bytearray(gzip.compress(plain.read_bytes(), compresslevel=0))
    packed[-8 - 1000] ^= 0x10
    flipped = tmp_path / "flipped.nii.gz"
    flipped.write_bytes(bytes(packed))
    with pytest.raises(VolumeError, match=r"flipped\.nii\.gz.*corrupt.*CRC"):
        load_volume(flipped)


def test_save_keeps_the_qform_and_sform_as_stored_and_drops_the_display_range(tmp_path):
    sform = np.array([[0, 0, -1.0, 50], [-0.8, 0, 0, 60], [0, 0.8, 0, -70], [0, 0, 0, 1]])
    qform = sform.copy()
    qform[2, 3] += 5.0  # the two disagree by 5 mm: nibabel reads the sform, ITK-based viewers the qform
    img = nib.Nifti1Image(_stored_image((4, 5, 6)), None)
    img.set_sform(sform, code=2)
    img.set_qform(qform, code=1)
    img.header["cal_min"], img.header["cal_max"] = 0, 2000
    nib.save(img, tmp_path / "in.nii.gz")
    vol = load_volume(tmp_path / "in.nii.gz")
    out = nib.load(save_volume(vol, tmp_path / "mask.nii.gz", data=vol.data > 100))
    np.testing.assert_allclose(out.get_qform(), qform, atol=1e-5)
    np.testing.assert_allclose(out.get_sform(), sform)
    assert (int(out.header["qform_code"]), int(out.header["sform_code"])) == (1, 2)
    assert (float(out.header["cal_min"]), float(out.header["cal_max"])) == (0.0, 0.0)


@pytest.mark.parametrize("broken", ["singular", "nan"])
def test_an_affine_that_places_no_voxels_is_refused_naming_the_file(tmp_path, broken):
    affine = np.eye(4)
    affine[2, 2] = 0.0 if broken == "singular" else np.nan
    img = nib.Nifti1Image(np.zeros((3, 4, 5), np.float32), None)
    img.header.set_sform(affine, code=1)  # stored as given (a qform would be refused by nibabel itself)
    path = tmp_path / "flat.nii.gz"
    nib.save(img, path)
    with pytest.raises(VolumeError, match=r"flat\.nii\.gz: its affine does not place the voxels in space"):
        load_volume(path)


def test_garbage_file_and_missing_file_are_refused(tmp_path):
    junk = tmp_path / "junk.nii.gz"
    junk.write_bytes(gzip.compress(b"not a nifti header at all"))
    with pytest.raises(VolumeError, match=r"junk\.nii\.gz"):
        read_header(junk)
    with pytest.raises(VolumeError, match="does not exist"):
        load_volume(tmp_path / "absent.nii.gz")


def test_dtype_conversion_and_repr(tmp_path, nifti, affine_of):
    vol = load_volume(nifti(tmp_path / "x.nii.gz", _stored_image((4, 3, 5)), affine_of("RSA")), dtype=np.float32)
    assert vol.data.dtype == np.float32
    text = repr(vol)
    assert "x.nii.gz" in text and "RSA" in text and "(4, 5, 3)" in text


def test_canonical_grid_of_a_header_by_hand(affine_of):
    # RSA: stored axes point Right, Superior, Anterior; canonical swaps the last two, no flip.
    affine, shape = canonical_grid(affine_of("RSA"), (12, 6, 20))
    assert shape == (12, 20, 6)
    np.testing.assert_allclose(affine[:3, :3], np.diag([0.8, 7.8, 1.1]))
    np.testing.assert_allclose(affine[:3, 3], (-12.5, 40.25, -301.0))
    # LPS: the first two axes flip, so the canonical origin is the stored far corner on them.
    affine, shape = canonical_grid(affine_of("LPS"), (5, 4, 3))
    assert shape == (5, 4, 3)
    np.testing.assert_allclose(affine[:3, :3], np.diag([0.8, 1.1, 3.0]))
    np.testing.assert_allclose(affine[:3, 3], (-12.5 - 0.8 * 4, 40.25 - 1.1 * 3, -301.0))


def test_to_original_refuses_other_shapes(tmp_path, nifti):
    vol = load_volume(nifti(tmp_path / "x.nii.gz", np.zeros((4, 3, 5), dtype=np.uint8)))
    with pytest.raises(ValueError, match="differs from volume shape"):
        vol.to_original(np.zeros((3, 4, 5)))


def test_scaled_integer_file_keeps_its_values(tmp_path, affine_of):
    # Scanners often store int16 with scl_slope/scl_inter; nibabel applies them on load, so the
    # volume holds floats and is written back as floats with the same world values.
    img = nib.Nifti1Image(np.arange(60, dtype=np.int16).reshape(3, 4, 5), affine_of("LPS"))
    img.header.set_slope_inter(2.0, 10.0)
    nib.save(img, tmp_path / "scaled.nii.gz")
    vol = load_volume(tmp_path / "scaled.nii.gz")
    assert vol.data.max() == 59 * 2.0 + 10.0
    out = nib.load(save_volume(vol, tmp_path / "out.nii.gz"))
    np.testing.assert_array_equal(out.get_fdata(), nib.load(tmp_path / "scaled.nii.gz").get_fdata())
    np.testing.assert_array_equal(out.affine, nib.load(tmp_path / "scaled.nii.gz").affine)


def test_complex_voxels_are_refused_as_a_real_image(tmp_path, nifti):
    path = nifti(tmp_path / "c.nii.gz", np.full((3, 4, 5), 1 + 2j, np.complex64))
    with pytest.raises(VolumeError, match=r"c\.nii\.gz: image holds complex values \(complex64\)"):
        load_volume(path, dtype=np.float32)
    assert load_volume(path).data.dtype == np.complex64  # the stored type, when no cast is asked for
    assert load_volume(path, dtype=np.complex128).data.dtype == np.complex128
