import cv2
import numpy as np
import pytest

from raw2rgb_plugin.io.raw_file import decode_raw
from raw2rgb_plugin.pipeline.normalization import network_input
from raw2rgb_plugin.training.data.align import (
    TEXTURE_THRESHOLD,
    AlignmentFailed,
    PatchScorer,
    estimate_alignment,
    gradient_ncc,
    packed_gray,
    target_gray,
    warp_to_grid,
)

from scene_images import textured_scene, write_pair


def _reference(path):
    """The RAW's alignment image (levels-normalised green) and its camera matrix."""
    frame = decode_raw(path)
    return packed_gray(network_input(frame, "raw").packed), frame.camera_to_srgb


def _mapping_error(found: np.ndarray, truth: np.ndarray, points: np.ndarray) -> float:
    a = found @ points
    b = truth @ points
    return float(np.abs(a[:2] / a[2] - b[:2] / b[2]).max())


@pytest.mark.parametrize("mode", ["auto", "crop"])
def test_a_rotated_scaled_shifted_target_is_recovered(tmp_path, mode):
    scene = textured_scene(240, 320, seed=1)
    write_pair(tmp_path / "raw", tmp_path / "rgb", "p", scene, cfa="RGGB", seed=1)
    reference, ccm = _reference(tmp_path / "raw" / "p.dng")
    # The target: the scene rotated 3°, scaled 1.1, shifted (+9, −6) px, in a smaller frame.
    m = cv2.getRotationMatrix2D((160, 120), 3.0, 1.1)
    m[:, 2] += (9, -6)
    target = cv2.warpAffine(scene, m, (300, 220), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    alignment = estimate_alignment(reference, target_gray(target, ccm), mode)
    truth = np.linalg.inv(np.vstack([m, [0, 0, 1]]))  # target pixel → sensor pixel (RGGB: no padding)
    ys, xs = np.mgrid[40:180:20, 40:260:20]
    inside = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])
    assert _mapping_error(alignment.matrix, truth, inside) < 0.4  # sensor pixels
    assert alignment.inliers >= 12 and alignment.ecc > 0.9
    warped, valid = warp_to_grid(target, alignment.matrix, (2 * reference.shape[0], 2 * reference.shape[1]))
    small = cv2.resize(target_gray(warped, ccm), reference.shape[::-1], interpolation=cv2.INTER_AREA)
    overlap = cv2.resize(valid, reference.shape[::-1], interpolation=cv2.INTER_AREA) > 0.999
    assert gradient_ncc(reference, small, overlap) > 0.8


def test_features_found_at_half_size_give_the_same_alignment(tmp_path):
    """The coarse search at a smaller size (learn's pairs: 512 px) only seeds ECC, which refines
    at the working size to the same transform (card frames: within 4e-5 target px)."""
    scene = textured_scene(480, 640, seed=5)
    write_pair(tmp_path / "raw", tmp_path / "rgb", "p", scene, cfa="RGGB", seed=5)
    reference, ccm = _reference(tmp_path / "raw" / "p.dng")
    m = cv2.getRotationMatrix2D((320, 240), 1.0, 1.02)
    m[:, 2] += (7, -5)
    target = target_gray(cv2.warpAffine(scene, m, (620, 460), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT), ccm)
    full, coarse = (estimate_alignment(reference, target, "crop", feature_size=size) for size in (None, 160))
    ys, xs = np.mgrid[40:420:40, 40:580:40]
    inside = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])
    assert coarse.method == full.method == "similarity+ecc" and coarse.inliers >= 12
    assert _mapping_error(coarse.matrix, full.matrix, inside) < 0.01  # sensor pixels


def test_an_unrelated_target_scores_low_or_fails(tmp_path):
    write_pair(tmp_path / "raw", tmp_path / "rgb", "p", textured_scene(240, 320, seed=2), seed=2)
    reference, ccm = _reference(tmp_path / "raw" / "p.dng")
    other = textured_scene(240, 320, seed=3)
    with pytest.raises(AlignmentFailed):
        estimate_alignment(reference, target_gray(other, ccm), "homography")
    alignment = estimate_alignment(reference, target_gray(other, ccm), "auto")  # falls back to ECC from the centre
    warped, valid = warp_to_grid(other, alignment.matrix, (2 * reference.shape[0], 2 * reference.shape[1]))
    small = cv2.resize(target_gray(warped, ccm), reference.shape[::-1], interpolation=cv2.INTER_AREA)
    assert gradient_ncc(reference, small, valid[::2, ::2] > 0.999) < 0.3


def test_patch_checks_measure_residual_shift_and_texture():
    scene = target_gray(textured_scene(128, 128, seed=4))
    noise = np.random.default_rng(0).normal(0, 0.02, scene.shape).astype(np.float32)
    box = (32, 32, 96, 96)
    aligned = PatchScorer(scene, scene + noise)
    shifted = PatchScorer(scene, np.roll(scene, 3, axis=1) + noise)
    assert aligned.score(box) > 0.95 and aligned.shift(box) < 0.3
    assert abs(shifted.shift(box) - 3) < 0.5
    assert shifted.score(box) < aligned.score(box)
    flat = PatchScorer(np.full((64, 64), 0.5, np.float32), scene[:64, :64])
    assert aligned.texture(box) > TEXTURE_THRESHOLD > flat.texture((0, 0, 64, 64))
