"""Aligning a target RGB image to its RAW, and measuring how well it worked.

The RAW side is the engine's levels-normalised packed input (half sensor resolution) reduced to
its green sites, sRGB-encoded; the target is mapped to the same camera green through the RAW's
colour matrix. Estimates and checks use image structure, not colour, so another camera's
rendering and tone curve do not matter.

Modes:
- ``none``: the target already is the sensor image (synthetic pairs, same-size exports): it is
  only reflect-padded like the mosaic.
- ``crop``: same camera, target cropped and/or scaled (camera JPEGs, edited exports): a
  similarity from SIFT matches (RANSAC), refined by ECC with an affine model.
- ``homography``: another camera: a homography from SIFT matches (RANSAC), refined by ECC
  (Evangelidis & Psarakis 2008, OpenCV's `findTransformECC`) with a homography model.
- ``auto``: ``homography``, falling back to ECC from a centred "same field of view" start when
  the images give too few matches.

The result maps target pixel coordinates to the padded full-resolution sensor grid: the grid G1's
output lives on (twice the packed size), where patches are cut. Alignment quality is the
normalised cross-correlation of gradient fields (a cosine between the two images' gradients at
packed resolution): 1 for identical structure, ~0 for unrelated images, robust to tone curves.
Per patch, phase correlation also measures the displacement that is left (parallax, motion).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from raw2rgb_plugin.pipeline.colour import srgb_decode, srgb_encode

ALIGN_MODES = ("auto", "homography", "crop", "none")

#: long side of the images features and the first ECC pass work on (fast, robust)…
WORKING_SIZE = 1024
#: … and of the final ECC pass: the packed frame itself up to this size (~0.1 packed px).
FINE_SIZE = 2048
MIN_INLIERS = 12
_RATIO_TEST = 0.8
#: gradient RMS (gray levels, after a σ=1 blur) below which a patch has no structure to check.
TEXTURE_THRESHOLD = 0.004


class AlignmentFailed(Exception):
    """The pair could not be aligned (not a user error: the pair is dropped and counted)."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


@dataclass
class Alignment:
    matrix: np.ndarray  # (3, 3) target pixel → padded full-resolution sensor grid
    method: str
    matches: int = 0
    inliers: int = 0
    ecc: float | None = None
    score: float = float("nan")  # gradient NCC over the overlap, at packed resolution
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "matrix": [[float(v) for v in row] for row in self.matrix],
            "matches": self.matches,
            "inliers": self.inliers,
            "ecc": None if self.ecc is None else float(self.ecc),
            "score": float(self.score),
            "notes": list(self.notes),
        }


#: sRGB transfer curves sampled at 16 bits: alignment images need ~1e-4 precision, and a table
#: lookup is ~20× faster than the exact curves on multi-megapixel frames.
_LUT_STEPS = 65535
_DECODE_LUT = srgb_decode(np.linspace(0.0, 1.0, _LUT_STEPS + 1)).astype(np.float32)
_ENCODE_LUT = srgb_encode(np.linspace(0.0, 1.0, _LUT_STEPS + 1)).astype(np.float32)


def _lookup(lut: np.ndarray, x: np.ndarray) -> np.ndarray:
    index = np.clip(x, 0.0, 1.0) * _LUT_STEPS
    return lut[(index + 0.5).astype(np.int32)]


def packed_gray(levelled: torch.Tensor) -> np.ndarray:
    """Levels-normalised packed (…, 4, h, w) RAW → (h, w) float32 sRGB-encoded green.

    Only the two green sites: their centroid is the packed pixel's centre, whereas red and blue
    sit half a sensor pixel off it, which would bias the alignment by a fraction of a pixel.
    """
    p = levelled.reshape(-1, *levelled.shape[-3:])[0].detach().to("cpu", torch.float32).numpy()
    return _lookup(_ENCODE_LUT, 0.5 * (p[1] + p[2]))


def packed_rgb_preview(packed: torch.Tensor) -> np.ndarray:
    """`wb+ccm`-normalised packed RAW → (h, w, 3) sRGB-encoded float image (previews)."""
    p = packed.reshape(-1, *packed.shape[-3:])[0].detach().to("cpu", torch.float32).numpy()
    return srgb_encode(np.stack([p[0], 0.5 * (p[1] + p[2]), p[3]], axis=-1)).astype(np.float32)


def target_gray(rgb: np.ndarray, camera_to_srgb: np.ndarray | None = None) -> np.ndarray:
    """The target as the RAW's green sites would have seen it, sRGB-encoded like `packed_gray`.

    With the RAW's camera matrix, the target is linearised and mapped to white-balanced camera
    green (camera green mixes in red and blue, so sRGB green alone differs at coloured edges and
    would pull the intensity-based refinement off by a fraction of a pixel). Without it, the
    target's own green channel.
    """
    if camera_to_srgb is None:
        return np.ascontiguousarray(rgb[..., 1], dtype=np.float32)
    camera_green = np.linalg.inv(np.asarray(camera_to_srgb, dtype=np.float64))[1].astype(np.float32)
    linear = _lookup(_DECODE_LUT, rgb)
    return _lookup(_ENCODE_LUT, linear @ camera_green)


def resampling(src_shape: tuple[int, ...], dst_shape: tuple[int, ...]) -> np.ndarray:
    """Pixel coordinates of an image → those of its resized copy, per axis: x' = s·(x + ½) − ½.

    Per axis because rounding the resized size makes the two scales differ slightly, which is
    already a third of a pixel at the far edge of a large frame.
    """
    sy, sx = dst_shape[0] / src_shape[0], dst_shape[1] / src_shape[1]
    return np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]], dtype=np.float64)


#: packed coordinates → padded full-resolution grid: packed pixel i covers full pixels 2i, 2i+1.
PACKED_TO_FULL = np.array([[2, 0, 0.5], [0, 2, 0.5], [0, 0, 1]], dtype=np.float64)


def _to_uint8(gray: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(gray, [0.5, 99.5])
    return np.clip((gray - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interpolation)


def _match_features(reference: np.ndarray, moving: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SIFT keypoints matched with Lowe's ratio test → (N, 2) moving and reference points."""
    sift = cv2.SIFT.create(nfeatures=4000)
    kr, dr = sift.detectAndCompute(_to_uint8(reference), None)
    km, dm = sift.detectAndCompute(_to_uint8(moving), None)
    if dr is None or dm is None or len(kr) < 2 or len(km) < 2:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(dm, dr, k=2)
    good = [m for m, n in (p for p in pairs if len(p) == 2) if m.distance < _RATIO_TEST * n.distance]
    src = np.array([km[m.queryIdx].pt for m in good], dtype=np.float32).reshape(-1, 2)
    dst = np.array([kr[m.trainIdx].pt for m in good], dtype=np.float32).reshape(-1, 2)
    return src, dst


def _matches_at(reference: np.ndarray, moving: np.ndarray, size: int | None) -> tuple[np.ndarray, np.ndarray]:
    """`_match_features` on copies reduced to a long side of `size`, in the given images' pixels."""
    scale = min(1.0, size / max(*reference.shape, *moving.shape)) if size else 1.0
    if scale >= 1.0:
        return _match_features(reference, moving)
    ref, mov = _resize(reference, scale), _resize(moving, scale)
    src, dst = _match_features(ref, mov)
    # points back through each copy's own resampling (rounded sizes give slightly different scales)
    back_ref, back_mov = np.linalg.inv(resampling(reference.shape, ref.shape)), np.linalg.inv(resampling(moving.shape, mov.shape))
    return _through(back_mov, src), _through(back_ref, dst)


def _through(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    return (points.astype(np.float64) @ affine[:2, :2].T + affine[:2, 2]).astype(np.float32).reshape(-1, 2)


def _ecc_refine(reference: np.ndarray, moving: np.ndarray, h_moving_to_ref: np.ndarray, motion: int) -> tuple[np.ndarray, float]:
    """Refine a moving→reference warp with ECC; returns the refined warp and its correlation."""
    # ECC finds W with moving(W·x) ≈ reference(x): W maps reference → moving coordinates.
    w0 = np.linalg.inv(h_moving_to_ref)
    w0 = w0 / w0[2, 2]
    warp = w0.astype(np.float32) if motion == cv2.MOTION_HOMOGRAPHY else w0[:2].astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 200, 1e-6)
    # The stubs want a mask in the 7-argument form; OpenCV takes None (no mask) there.
    cc, warp = cv2.findTransformECC(  # type: ignore[call-overload]
        reference.astype(np.float32), moving.astype(np.float32), warp, motion, criteria, None, 5)
    full = np.eye(3) if motion != cv2.MOTION_HOMOGRAPHY else np.zeros((3, 3))
    full[: warp.shape[0]] = warp
    return np.linalg.inv(full), float(cc)


def _plausible(h: np.ndarray) -> bool:
    """A transform a photo pair can have: not mirrored, scale within 1/20…20, mild perspective."""
    affine = h[:2, :2] / h[2, 2]
    det = float(np.linalg.det(affine))
    return det > 0 and 1 / 400 < det < 400 and float(np.abs(h[2, :2] / h[2, 2]).max()) < 1e-2


def estimate_alignment(reference: np.ndarray, target: np.ndarray, mode: str = "auto", *,
                       feature_size: int | None = None) -> Alignment:
    """Map `target` (gray, any size) onto `reference` (packed-resolution gray of the RAW).

    Returns an `Alignment` whose matrix maps target pixels to the padded full-resolution grid
    (the caller measures `score` on the warped result). Raises `AlignmentFailed` when no
    plausible transform fits. `feature_size`: the long side feature matches are found at when
    smaller than the working size (ECC still refines at the working size): the coarse search
    is the costly part (SIFT and matching: 0.96 of 1.1 s at 1024 px).
    """
    if mode not in ALIGN_MODES:
        raise ValueError(f"unknown alignment mode {mode!r}")
    if mode == "none":
        raise ValueError("mode 'none' needs no estimate; use pad_to_grid")
    rh, rw = reference.shape
    s_r = min(1.0, WORKING_SIZE / max(rh, rw))
    ref_work = _resize(reference, s_r)
    # Start from "same field of view": the target scaled so its long side matches the reference's.
    s_m = max(ref_work.shape) / max(target.shape)
    mov_work = _resize(target, s_m)
    to_ref_work = resampling(reference.shape, ref_work.shape)
    to_mov_work = resampling(target.shape, mov_work.shape)

    src, dst = _matches_at(ref_work, mov_work, feature_size)
    notes: list[str] = []
    rejected = ""
    h_work = None
    inliers = 0
    if len(src) >= 4:
        if mode == "crop":
            affine, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=3.0)
            if affine is not None:
                h_work = np.vstack([affine, [0, 0, 1]])
        else:
            h_work, mask = cv2.findHomography(src, dst, cv2.RANSAC, 3.0)
        inliers = int(mask.sum()) if h_work is not None and mask is not None else 0
        if h_work is not None and not _plausible(h_work):
            rejected = "feature matches gave an implausible (mirrored or extreme) transform"
            h_work, inliers = None, 0
    method = "similarity" if mode == "crop" else "homography"
    if h_work is None or inliers < MIN_INLIERS:
        if mode != "auto":
            raise AlignmentFailed(rejected or f"too few feature matches ({inliers} consistent of {len(src)})")
        notes.append(f"only {inliers} consistent feature matches: ECC from the centred start")
        # Centre the scaled target on the reference.
        dy = (ref_work.shape[0] - mov_work.shape[0]) / 2
        dx = (ref_work.shape[1] - mov_work.shape[1]) / 2
        h_work = np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1]], dtype=np.float64)
        method = "centred"
        motion = cv2.MOTION_AFFINE
    else:
        motion = cv2.MOTION_AFFINE if mode == "crop" else cv2.MOTION_HOMOGRAPHY
    try:
        h_work, ecc = _ecc_refine(ref_work, mov_work, h_work, motion)
        method += "+ecc"
    except cv2.error:
        if method == "centred":
            raise AlignmentFailed("no feature matches and ECC did not converge") from None
        ecc = None
        notes.append("ECC did not converge: feature estimate kept")
    h_packed = np.linalg.inv(to_ref_work) @ h_work @ to_mov_work
    s_fine = min(1.0, FINE_SIZE / max(rh, rw))
    if ecc is not None and s_fine > s_r * 1.25:
        ref_fine = _resize(reference, s_fine)
        to_ref_fine = resampling(reference.shape, ref_fine.shape)
        # The target at the scale the coarse estimate says it has on the fine reference.
        scale_to_ref = float(np.sqrt(abs(np.linalg.det(h_packed[:2, :2])))) * s_fine
        mov_fine = _resize(target, min(1.0, scale_to_ref))
        to_mov_fine = resampling(target.shape, mov_fine.shape)
        h_fine0 = to_ref_fine @ h_packed @ np.linalg.inv(to_mov_fine)
        try:
            h_fine, ecc = _ecc_refine(ref_fine, mov_fine, h_fine0, motion)
            h_packed = np.linalg.inv(to_ref_fine) @ h_fine @ to_mov_fine
        except cv2.error:
            notes.append("fine ECC pass did not converge: coarse estimate kept")
    matrix = PACKED_TO_FULL @ h_packed
    return Alignment(matrix=matrix / matrix[2, 2], method=method, matches=len(src), inliers=inliers, ecc=ecc, notes=notes)


def warp_to_grid(
    image: np.ndarray, matrix: np.ndarray, size: tuple[int, int], *, interpolation: int = cv2.INTER_LINEAR
) -> tuple[np.ndarray, np.ndarray]:
    """Resample `image` (target pixels) onto a grid of `size` (h, w) through `matrix`.

    Returns the warped image and a float32 validity mask (1 where the target covers the grid).
    A target much larger than the grid is first reduced with area averaging so that the
    bilinear warp does not alias.
    """
    h, w = size
    affine = matrix[:2, :2] / matrix[2, 2]
    scale = float(np.sqrt(abs(np.linalg.det(affine))))
    if scale < 0.75:
        src_h, src_w = image.shape[:2]
        image = _resize(image, scale)
        matrix = matrix @ np.linalg.inv(resampling((src_h, src_w), image.shape))
    flags = interpolation
    warped = cv2.warpPerspective(image, matrix, (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    ones = np.ones(image.shape[:2], dtype=np.float32)
    mask = cv2.warpPerspective(ones, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return warped, mask


def pad_to_grid(image: np.ndarray, top: int, left: int, bottom: int, right: int) -> np.ndarray:
    """Reflect-pad a sensor-sized (H, W, …) image exactly like `packing.pad_mosaic` pads the mosaic."""
    pad = [(top, bottom), (left, right)] + [(0, 0)] * (image.ndim - 2)
    return np.pad(image, pad, mode="reflect") if any((top, left, bottom, right)) else image


def _gradients(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    smooth = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), 1.0)
    return cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3) / 8, cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3) / 8


def gradient_ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Cosine between the gradient fields of two gray images (optionally within `mask`)."""
    ax, ay = _gradients(a)
    bx, by = _gradients(b)
    if mask is not None:
        m = mask > 0.5
        ax, ay, bx, by = ax[m], ay[m], bx[m], by[m]
    dot = float((ax * bx).sum() + (ay * by).sum())
    norm = float(np.sqrt(((ax**2).sum() + (ay**2).sum()) * ((bx**2).sum() + (by**2).sum())))
    return dot / norm if norm > 1e-12 else 0.0


class PatchScorer:
    """Per-window checks between the RAW's gray image and the warped target's (packed pixels).

    `score` (gradient cosine) says whether a window shows the same structure; `shift` (phase
    correlation) says by how much it is still displaced, which the cosine alone hides: a
    3-pixel shift of a soft edge still correlates at 0.7. Gradients are computed once per frame.
    """

    def __init__(self, reference: np.ndarray, warped: np.ndarray):
        self.reference = reference.astype(np.float32)
        self.warped = warped.astype(np.float32)
        self.rx, self.ry = _gradients(reference)
        self.wx, self.wy = _gradients(warped)
        self._windows: dict[tuple[int, int], np.ndarray] = {}

    def texture(self, box: tuple[int, int, int, int]) -> float:
        """Gradient RMS of the reference inside `box` = (y0, x0, y1, x1)."""
        y0, x0, y1, x1 = box
        rx, ry = self.rx[y0:y1, x0:x1], self.ry[y0:y1, x0:x1]
        return float(np.sqrt(np.mean(rx**2 + ry**2)))

    def score(self, box: tuple[int, int, int, int]) -> float:
        y0, x0, y1, x1 = box
        rx, ry = self.rx[y0:y1, x0:x1], self.ry[y0:y1, x0:x1]
        wx, wy = self.wx[y0:y1, x0:x1], self.wy[y0:y1, x0:x1]
        dot = float((rx * wx).sum() + (ry * wy).sum())
        norm = float(np.sqrt(((rx**2).sum() + (ry**2).sum()) * ((wx**2).sum() + (wy**2).sum())))
        return dot / norm if norm > 1e-12 else 0.0

    def shift(self, box: tuple[int, int, int, int]) -> float:
        """Length of the residual displacement of the target inside `box`, in packed pixels."""
        y0, x0, y1, x1 = box
        size = (x1 - x0, y1 - y0)
        window = self._windows.get(size)
        if window is None:
            window = self._windows[size] = cv2.createHanningWindow(size, cv2.CV_32F)
        (dx, dy), _ = cv2.phaseCorrelate(self.reference[y0:y1, x0:x1], self.warped[y0:y1, x0:x1], window)
        return float(np.hypot(dx, dy))
