"""The real sensor mosaic of `../shared/data/sensor` as a DNG that LibRaw and the engine both read.

`bayer_small.png` is Halide's `camera_pipe` sample: a 10-bit GRBG mosaic (black 25, white 1023)
with two 3×4 colour matrices calibrated at 3200 K and 7000 K, stored as MATLAB v5 files. Halide
blends them linearly in 1/T (`halide_matrix`) and applies the 3×3 part to black-level-free camera RGB (the 4th
column is an offset in its integer pipeline, which the DNG's black level replaces here). That 3×3
matrix includes the white balance; it is split into the two things a DNG carries:

    M = C · diag(wb):  neutral n = M⁻¹·1, AsShotNeutral = n / n_G, C = M · diag(AsShotNeutral) / k
    ColorMatrix1 (XYZ → camera) = C⁻¹ · XYZ→sRGB, so the engine's camera→sRGB matrix is C again.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from raw2rgb_plugin.io.dng_write import write_bayer_dng
from raw2rgb_plugin.pipeline.colour import XYZ_TO_SRGB

MOSAIC_FILE = "bayer_small.png"
CFA = "GRBG"
BLACK_LEVEL = 25
WHITE_LEVEL = 1023
#: the colour temperature Halide's camera_pipe example is run at (`process raw.png 3700 …`).
COLOR_TEMPERATURE = 3700.0

_MI_INT8, _MI_INT32, _MI_UINT32, _MI_MATRIX = 1, 5, 6, 14
_NUMERIC = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8"}


def read_mat_v5(path: Path) -> dict[str, np.ndarray]:
    """The real numeric arrays of an uncompressed MATLAB v5 file (enough for the matrices here)."""
    data = Path(path).read_bytes()
    if len(data) < 128 or not data.startswith(b"MATLAB 5.0 MAT-file"):
        raise ValueError(f"{path} is not a MATLAB v5 file")
    endian = "<" if data[126:128] == b"IM" else ">"
    arrays: dict[str, np.ndarray] = {}
    offset = 128
    while offset + 8 <= len(data):
        kind, size, body, offset = _element(data, offset, endian)
        if kind != _MI_MATRIX:
            continue  # compressed (miCOMPRESSED) or other top-level elements are not used here
        parts, pos = [], 0
        while pos + 8 <= len(body):
            sub_kind, _, sub_body, pos = _element(body, pos, endian)
            parts.append((sub_kind, sub_body))
        if len(parts) < 4 or parts[1][0] != _MI_INT32 or parts[3][0] not in _NUMERIC:
            continue
        dims = np.frombuffer(parts[1][1], dtype=endian + "i4")
        name = parts[2][1].decode("ascii", errors="replace")
        values = np.frombuffer(parts[3][1], dtype=endian + _NUMERIC[parts[3][0]])
        arrays[name] = values.reshape(tuple(int(d) for d in dims), order="F").astype(np.float64)
    return arrays


def _element(data: bytes, offset: int, endian: str) -> tuple[int, int, bytes, int]:
    """(type, size, body, next offset) of the data element at `offset` (small format included)."""
    first, second = struct.unpack_from(endian + "II", data, offset)
    if first >> 16:  # small data element: type and size share 4 bytes, data in the next 4
        kind, size = first & 0xFFFF, first >> 16
        return kind, size, data[offset + 4 : offset + 4 + size], offset + 8
    kind, size = first, second
    start = offset + 8
    return kind, size, data[start : start + size], start + size + (-size % 8)


def halide_matrix(sensor_dir: Path, temperature: float = COLOR_TEMPERATURE) -> np.ndarray:
    """The 3×3 camera → linear RGB matrix (white balance included) Halide uses at `temperature`."""
    m3200 = read_mat_v5(sensor_dir / "matrix_3200.mat")["matrix_3200"]
    m7000 = read_mat_v5(sensor_dir / "matrix_7000.mat")["matrix_7000"]
    # Stored as Halide buffers (x = column 0..3, y = row 0..2): a (4, 3) array, transposed here.
    m3200, m7000 = m3200.T[:, :3], m7000.T[:, :3]
    # Halide's own blend, weights as it writes them (at 3700 K: 0.25 × 3200 K + 0.75 × 7000 K).
    alpha = (1 / temperature - 1 / 3200) / (1 / 7000 - 1 / 3200)
    return alpha * m3200 + (1 - alpha) * m7000


def split_white_balance(matrix: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float]]:
    """M (camera → RGB, WB included) → (XYZ → camera for DNG ColorMatrix1, AsShotNeutral)."""
    neutral = np.linalg.solve(matrix, np.ones(3))
    if np.any(neutral <= 0):
        raise ValueError(f"matrix maps no positive camera colour to white (neutral {neutral})")
    neutral = neutral / neutral[1]
    balanced = matrix * neutral[None, :]
    balanced = balanced / balanced.sum(axis=1, keepdims=True)
    xyz_to_camera = np.linalg.inv(balanced) @ XYZ_TO_SRGB
    return xyz_to_camera, tuple(float(v) for v in neutral)


def write_real_mosaic_dng(sensor_dir: Path, out: Path) -> Path:
    """`bayer_small.png` with its levels, white balance and colour matrix as a GRBG DNG."""
    from PIL import Image

    with Image.open(sensor_dir / MOSAIC_FILE) as im:
        mosaic = np.asarray(im, dtype=np.uint16)
    xyz_to_camera, neutral = split_white_balance(halide_matrix(sensor_dir))
    write_bayer_dng(out, mosaic, CFA, black_level=BLACK_LEVEL, white_level=WHITE_LEVEL,
                    color_matrix1=xyz_to_camera, as_shot_neutral=neutral,
                    make="Halide", model="camera_pipe sample (bayer_small.png)")
    return out
