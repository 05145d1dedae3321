"""Synthetic RAW from sRGB images by "unprocessing" (Brooks et al., CVPR 2019).

Every step of a simple camera pipeline is inverted on an 8/16-bit sRGB image, with random
camera parameters, so that the engine's own decoding of the result (levels → white balance →
camera matrix, the `wb+ccm` input normalisation) gives back the scene-linear image:

1. inverse tone curve (the smoothstep's inverse, x ↦ 0.5 − sin(asin(1 − 2x)/3));
2. inverse gamma, with the exact sRGB decode (IEC 61966-2-1) rather than x^2.2, because the
   engine's targets are sRGB-encoded;
3. linear sRGB → camera RGB with a random camera: a convex mix of real XYZ→camera matrices (below)
   times sRGB→XYZ, rows normalised to 1, as dcraw builds it;
4. inverse white balance (red U(1.9, 2.4), blue U(1.5, 1.9)) with highlight protection, so that
   near-white highlights stay white after the camera's gains instead of turning cyan;
5. mosaic in one of the four Bayer orders, or in a 6×6 X-Trans pattern when asked for one
   (`random_params(cfa_pattern=xtrans_pattern())`); shot/read noise (variance x·shot + read, log shot ~
   U(log 1e-4, log 0.012), log read = 2.18·log shot + 1.2 + N(0, 0.26));
6. quantisation to a 12- or 14-bit integer mosaic with a black level.

**Exposure.** Brooks et al. also divide by a random overall gain 1/N(0.8, 0.1) to vary exposure
for denoising. With an sRGB target that makes each pair's exposure unguessable from the RAW, so
it is kept at 1 here: the mosaic's brightness is exactly what the target implies. (G1 takes no
exposure input; a future one could be fed DNG BaselineExposure, which `write_bayer_dng` can write.)

The camera matrix and white balance are written into the DNG as a camera would (ColorMatrix1 =
the mixed XYZ→camera matrix, CalibrationIlluminant1 = D65, AsShotNeutral = 1 / gains), so the
engine's metadata path — not a shortcut — is what training data goes through.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from raw2rgb_plugin.pipeline.cfa import period
from raw2rgb_plugin.pipeline.colour import SRGB_TO_XYZ, srgb_decode

#: XYZ(D65) → camera matrices (× 10000) of real Bayer cameras, from the adobe_coeff table that
#: dcraw started and LibRaw maintains (src/tables/colordata.cpp; "from Adobe DNG Converter").
#: Published numbers, used as facts: the spread of real sensors' colour responses.
XYZ_TO_CAMERA_TABLE: dict[str, tuple[int, ...]] = {
    "Canon EOS 5D Mark IV": (6446, -366, -864, -4436, 12204, 2513, -952, 2496, 6348),
    "Canon EOS 80D": (7457, -671, -937, -4849, 12495, 2643, -1213, 2354, 5492),
    "Canon EOS R5": (9766, -2953, -1254, -4276, 12116, 2433, -437, 1336, 5131),
    "Nikon D750": (9020, -2890, -715, -4535, 12436, 2348, -934, 1919, 7086),
    "Nikon D850": (10405, -3755, -1270, -5461, 13787, 1793, -1040, 2015, 6785),
    "Nikon Z 6": (9943, -3269, -839, -5323, 13269, 2259, -1198, 2083, 7557),
    "Panasonic DC-G9": (7685, -2375, -634, -3687, 11700, 2249, -748, 1546, 5111),
    "Ricoh GR III": (6127, -1777, -585, -5913, 13699, 2428, -1088, 1780, 6017),
    "Samsung Galaxy S7": (9927, -3704, -1024, -3935, 12758, 1257, -389, 1512, 4993),
    "Sony ZV-E10": (6355, -2067, -490, -3653, 11542, 2400, -406, 1258, 5506),
}

if TYPE_CHECKING:
    from raw2rgb_plugin.io.exif_read import PhotoMetadata

BAYER_ORDERS = ("RGGB", "BGGR", "GRBG", "GBRG")

#: Brooks et al.'s ranges.
RED_GAIN_RANGE = (1.9, 2.4)
BLUE_GAIN_RANGE = (1.5, 1.9)
SHOT_NOISE_RANGE = (1e-4, 0.012)
#: gray level above which white-balance inversion fades out (highlight protection).
HIGHLIGHT_INFLECTION = 0.9


def xyz_to_camera_matrix(name: str) -> np.ndarray:
    return np.asarray(XYZ_TO_CAMERA_TABLE[name], dtype=np.float64).reshape(3, 3) / 10000.0


@dataclass(frozen=True)
class UnprocessParams:
    """The random camera one synthetic RAW was made with (JSON-able via `to_dict`)."""

    cfa_pattern: str  # a Bayer order, or a 6×6 pattern as 36 letters (X-Trans)
    xyz_to_camera: tuple[tuple[float, ...], ...]  # the mixed matrix written as DNG ColorMatrix1
    camera_mix: dict[str, float]  # weight of each table camera in the mix
    red_gain: float
    blue_gain: float
    shot_noise: float  # 0 without noise
    read_noise: float
    bits: int
    black_level: int
    white_level: int
    inverse_tone_curve: bool

    @property
    def wb_gains_rgb(self) -> np.ndarray:
        return np.array([self.red_gain, 1.0, self.blue_gain])

    @property
    def as_shot_neutral(self) -> tuple[float, float, float]:
        return (1.0 / self.red_gain, 1.0, 1.0 / self.blue_gain)

    @property
    def camera_from_srgb(self) -> np.ndarray:
        """linear sRGB → camera RGB (rows sum to 1): what the unprocessing applies."""
        m = np.asarray(self.xyz_to_camera) @ SRGB_TO_XYZ
        return m / m.sum(axis=1, keepdims=True)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["xyz_to_camera"] = [list(row) for row in self.xyz_to_camera]
        return d


def random_params(
    rng: np.random.Generator,
    *,
    cfa_pattern: str | None = None,
    noise: bool = True,
    inverse_tone_curve: bool = True,
    cameras_in_mix: int = 4,
) -> UnprocessParams:
    """Draw a random camera per Brooks et al. (mix of `cameras_in_mix` table matrices)."""
    names = sorted(XYZ_TO_CAMERA_TABLE)
    chosen = rng.choice(len(names), size=min(cameras_in_mix, len(names)), replace=False)
    weights = rng.uniform(1e-8, 1.0, size=len(chosen))
    weights /= weights.sum()
    mixed = sum(w * xyz_to_camera_matrix(names[i]) for w, i in zip(weights, chosen))
    if noise:
        log_shot = rng.uniform(np.log(SHOT_NOISE_RANGE[0]), np.log(SHOT_NOISE_RANGE[1]))
        log_read = 2.18 * log_shot + 1.2 + rng.normal(0.0, 0.26)
        shot, read = float(np.exp(log_shot)), float(np.exp(log_read))
    else:
        shot, read = 0.0, 0.0
    bits = int(rng.choice([12, 14]))
    # Real cameras put black at 0 or at a small pedestal (Canon 2048 at 14 bits, Nikon 600, …).
    black = int(rng.choice([0, 2 ** (bits - 6), 2 ** (bits - 4)]))
    return UnprocessParams(
        cfa_pattern=cfa_pattern or str(rng.choice(BAYER_ORDERS)),
        xyz_to_camera=tuple(tuple(float(v) for v in row) for row in mixed),
        camera_mix={names[i]: float(w) for w, i in zip(weights, chosen)},
        red_gain=float(rng.uniform(*RED_GAIN_RANGE)),
        blue_gain=float(rng.uniform(*BLUE_GAIN_RANGE)),
        shot_noise=shot,
        read_noise=read,
        bits=bits,
        black_level=black,
        white_level=2**bits - 1,
        inverse_tone_curve=inverse_tone_curve,
    )


def inverse_tone_curve(srgb: np.ndarray) -> np.ndarray:
    """Inverse of the smoothstep 3x² − 2x³ that Brooks et al. use as a generic tone curve."""
    x = np.clip(srgb, 0.0, 1.0)
    return 0.5 - np.sin(np.arcsin(1.0 - 2.0 * x) / 3.0)


def scene_linear(srgb: np.ndarray, params: UnprocessParams) -> np.ndarray:
    """sRGB (H, W, 3) in [0, 1] → the linear-sRGB scene the synthetic camera saw."""
    x = inverse_tone_curve(srgb) if params.inverse_tone_curve else np.clip(srgb, 0.0, 1.0)
    return srgb_decode(x)


def protected_inverse_gains(camera_rgb: np.ndarray, params: UnprocessParams) -> np.ndarray:
    """Divide by the white-balance gains, fading to no division near white.

    Dividing a clipped highlight by the gains and letting the camera multiply back would turn
    white into cyan once it clips again; real highlights saturate all channels. The mask rises
    quadratically from gray level 0.9 to 1 and the division never makes a value larger.
    """
    inverse = 1.0 / params.wb_gains_rgb
    gray = camera_rgb.mean(axis=-1, keepdims=True)
    mask = (np.maximum(gray - HIGHLIGHT_INFLECTION, 0.0) / (1.0 - HIGHLIGHT_INFLECTION)) ** 2
    safe = np.maximum(mask + (1.0 - mask) * inverse, inverse)
    return camera_rgb * safe


def mosaic_rgb(rgb: np.ndarray, cfa_pattern: str) -> np.ndarray:
    """(H, W, 3) → (H, W) by sampling each site's colour in `cfa_pattern` order (a 2×2 Bayer
    order or a 36-letter 6×6 pattern, read row by row)."""
    channel = {"R": 0, "G": 1, "B": 2}
    side = period(cfa_pattern)
    out = np.empty(rgb.shape[:2], dtype=rgb.dtype)
    for k, letter in enumerate(cfa_pattern):
        dy, dx = divmod(k, side)
        out[dy::side, dx::side] = rgb[dy::side, dx::side, channel[letter]]
    return out


def unprocess(srgb: np.ndarray, params: UnprocessParams, rng: np.random.Generator) -> np.ndarray:
    """sRGB (H, W, 3) float in [0, 1] → uint16 Bayer mosaic (H, W) with `params`' levels."""
    linear = scene_linear(srgb, params)
    camera = np.clip(linear @ params.camera_from_srgb.T, 0.0, 1.0)
    camera = np.clip(protected_inverse_gains(camera, params), 0.0, 1.0)
    mosaic = mosaic_rgb(camera, params.cfa_pattern)
    if params.shot_noise > 0 or params.read_noise > 0:
        variance = mosaic * params.shot_noise + params.read_noise
        mosaic = mosaic + rng.normal(size=mosaic.shape) * np.sqrt(variance)
    # Noise may dip below black as on a real sensor; the integer range stops at 0 and white.
    span = params.white_level - params.black_level
    values = np.rint(params.black_level + mosaic * span)
    return np.clip(values, 0, params.white_level).astype(np.uint16)


def write_synthetic_dng(
    srgb: np.ndarray,
    path: Path,
    rng: np.random.Generator,
    *,
    params: UnprocessParams | None = None,
    noise: bool = True,
    model: str = "unprocessed sRGB",
    metadata: PhotoMetadata | None = None,
) -> UnprocessParams:
    """Unprocess `srgb` with a random camera (or `params`) and write it as a DNG at `path`: a Bayer
    DNG, or an X-Trans one when `params.cfa_pattern` is a 6×6 pattern.

    `metadata`, when given, names the camera (make/model) and fills the DNG's EXIF.
    """
    from raw2rgb_plugin.io.dng_write import write_cfa_dng

    params = params or random_params(rng, noise=noise)
    mosaic = unprocess(srgb, params, rng)
    write_cfa_dng(
        path,
        mosaic,
        params.cfa_pattern,
        black_level=params.black_level,
        white_level=params.white_level,
        color_matrix1=np.asarray(params.xyz_to_camera),
        as_shot_neutral=params.as_shot_neutral,
        orientation=1,
        make=(metadata.make if metadata and metadata.make else "raw2rgb"),
        model=(metadata.model if metadata and metadata.model else model),
        metadata=metadata,
    )
    return params
