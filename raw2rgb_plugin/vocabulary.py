"""The words every layer shares, defined once, torch-free (the CLI and the host installer start fast).

Anything that names one of these imports it from here: the engine, the profiles' checks, the
trainer's config, the CLI's help texts and the host plug-ins (the installer writes the denoise
range into them).
"""

from __future__ import annotations

#: what the engine does to the mosaic before G1 sees it (pipeline/normalization.py says each)
INPUT_NORMALIZATIONS = ("raw", "wb", "wb+ccm", "linear-srgb", "wb-headroom")

#: what a profile's network renders: a finished display image, or scene-linear light for an
#: editable DNG / linear TIFF (no tone curve, highlights not clipped by a display curve)
PROFILE_OUTPUTS = ("display", "scene-linear")
#: a profile's output colour space, one per `PROFILE_OUTPUTS` entry; "camera-linear": white-balanced
#: camera RGB scaled so no channel clips (`wb-headroom`), linear
OUTPUT_COLOR_SPACES = ("srgb", "camera-linear")
#: where a display profile's network works: "srgb" (it renders display sRGB itself, from
#: `linear-srgb` input) or "camera" (white-balanced camera RGB from `wb-headroom` input, then a
#: fixed rendering: camera matrix, sRGB encoding, the generic tone curve); absent means "srgb"
NETWORK_SPACES = ("srgb", "camera")

#: G1's named widths (channels of its first stage): the seed's, and two narrower for CPUs
VARIANT_WIDTHS: dict[str, int] = {"base": 64, "slim": 32, "lite": 16}

#: what --device accepts (plus cuda:N)
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")

#: `--denoise`: the noise level a noise-aware profile is told is multiplied by this strength;
#: 0 keeps all detail and grain, 1 is the default, 2 denoises strongly
DENOISE_RANGE = (0.0, 2.0)
DEFAULT_DENOISE = 1.0

#: `convert --format`: a finished TIFF, or an editable linear DNG (needs a scene-linear profile)
OUTPUT_FORMATS = ("tiff", "dng")

#: bounds of a profile's look table (tone curves + 3D LUT, pipeline/look.py): knots per curve, LUT
#: nodes per axis; a profile is user data, checked before anything is allocated
MAX_CURVE_KNOTS = 257
MAX_LUT_SIZE = 65

#: `convert --lens`: lens corrections from lensfun's database, or none
LENS_MODES = ("auto", "off")

#: camera RAW extensions (lower case) that LibRaw reads; matched case-insensitively
RAW_EXTENSIONS = frozenset(
    ".3fr .ari .arw .bay .cr2 .cr3 .crw .cs1 .dcr .dcs .dng .drf .eip .erf .fff .gpr .iiq .k25 "
    ".kdc .mdc .mef .mos .mrw .nef .nrw .orf .pef .ptx .pxn .qtk .raf .raw .rw2 .rwl .rwz .sr2 "
    ".srf .srw .sti .x3f".split()
)
