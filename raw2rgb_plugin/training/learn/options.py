"""The settings of `raw2rgb learn` (no torch import: the CLI reads its defaults at start-up)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

#: where each RAW's target comes from: the sidecar JPEG if present else the embedded preview,
#: or only one of them
SOURCES = ("auto", "sidecar", "embedded")
#: the pair's long side: the look is colour and tone, which a 1024-px frame shows fully, and
#: a 24 MP camera's full-size JPEG would otherwise cost 20× the time and disk for nothing new.
DEFAULT_MAX_SIDE = 1024
DEFAULT_BASE_PROFILE = "default-lite"


@dataclass
class FinetuneOptions:
    steps: int = 800
    batch_size: int = 4
    patch: int = 128  # sensor px at the pair's scale (a multiple of 16)
    lr: float = 7e-4
    warmup: int = 30  # steps of linearly rising learning rate
    clip: float = 0.05  # gradient norm limit (0: none)
    trainable: str = "all"  # all | decoder | head
    encoder_lr_scale: float = 0.2  # the encoder's rate relative to the decoder's
    lowpass_sigma: float = 1.0  # pair px
    detail_weight: float = 0.1  # a stronger hold on the base's detail blurs it (see finetune)
    oklab_weight: float = 1.0  # the colour-as-seen term (mean OKLab distance of the low-passed images)
    pattern_weight: float = 30.0  # holds the 2-px fixed pattern to the target's (see finetune.cell_pattern)
    clean_fraction: float = 0.5  # share of crops trained without added camera noise
    seed: int = 0
    checkpoint_every: int = 100

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LearnOptions:
    profile_name: str
    source: str = "auto"
    base_profile: str = DEFAULT_BASE_PROFILE
    holdout: int | None = None  # frames held out for the report; None: about 15 %, none under 4 files
    max_side: int = DEFAULT_MAX_SIDE
    device: str = "cpu"
    overwrite: bool = False
    install: bool = True
    finetune: FinetuneOptions = field(default_factory=FinetuneOptions)

    def content(self) -> dict:
        """What decides the run's result: a resumed run must have the same."""
        d = asdict(self)
        for key in ("device", "overwrite", "install"):
            d.pop(key)
        return d
