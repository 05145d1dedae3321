"""What a run hands over: its profile (G1 + metadata) in the run folder and installed for `convert`.

The metadata records the run's provenance (dataset, losses, settings, command line), progress
and validation scores, so a profile says how it was made without its run folder.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from raw2rgb_plugin.errors import Raw2RgbError
from raw2rgb_plugin.pipeline.look import Look
from raw2rgb_plugin.profiles.store import load_profile, read_profile_metadata, save_profile, user_profile_dir
from raw2rgb_plugin.training.config import TrainConfig, TrainingError
from raw2rgb_plugin.training.run_log import now
from raw2rgb_plugin.vocabulary import VARIANT_WIDTHS

#: with `keep_best`: G1 of the best epoch so far, as a loadable profile.
BEST_NAME = "best.safetensors"

_PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class Provenance:
    """What a run's profiles record about the run itself: fixed once the run is set up."""

    run_id: str
    started: str
    profile_name: str
    command_line: str
    dataset_path: str | None
    manifest: dict
    input_normalization: str
    init_profile_name: str | None
    perceptual: bool
    vgg_source: str | None
    world_size: int
    device: str


def checked_profile_name(name: str) -> str:
    """`name`, if it is safe as a file name in the profile folder (it becomes one)."""
    if not _PROFILE_NAME.match(name):
        raise TrainingError(
            f"profile name {name!r} is not a plain file name",
            "use letters, digits, '.', '_' and '-' (--profile-name)",
        )
    return name


def check_installed_profile(name: str, run_id: str, *, overwrite: bool) -> None:
    """Refuse to replace an installed profile another run made, unless told to: checked before
    training so a long run does not fail at its end."""
    path = user_profile_dir() / f"{name}.safetensors"
    if not path.exists() or overwrite:
        return
    try:
        owner = read_profile_metadata(path).get("training", {}).get("run_id")
    except Raw2RgbError:
        owner = None
    if owner != run_id:
        raise TrainingError(
            f"a profile named {name!r} is already installed ({path})",
            "choose another --profile-name, or pass --overwrite to replace it",
        )


def profile_metadata(
    config: TrainConfig, run: Provenance, *, steps: int, epochs: int, history: list[dict],
    validation: dict | None, completed: bool, selected: dict | None = None,
) -> dict:
    """The profile's metadata; `selected` (epoch, step) marks weights chosen by validation."""
    losses = {"l1": config.lambda_l1, "attention": config.lambda_attn}
    if run.perceptual:
        losses["perceptual_vgg16_conv4_3"] = config.lambda_perc
    if config.uses_gan:
        losses["lsgan"] = config.lambda_gan
    # The per-shard list (source paths, crop boxes) stays in the dataset; counts, options,
    # cameras and saliency source travel with the profile.
    provenance = {k: v for k, v in run.manifest.items() if k != "shards"}
    named_width = config.width is None or config.width == VARIANT_WIDTHS.get(config.variant)
    meta = {
        "name": run.profile_name,
        "variant": config.variant if named_width else f"width{config.width}",
        "input_normalization": run.input_normalization,
        "output_color_space": run.manifest.get("output_color_space", "srgb"),
        "output": run.manifest.get("output", "display"),
        **({"network_space": "camera"} if run.manifest.get("network_space") == "camera" else {}),
        "description": f"trained by raw2rgb train on {Path(run.dataset_path).name if run.dataset_path else 'a dataset'}",
        "training": {
            "run_id": run.run_id,
            "dataset": {"path": run.dataset_path, "manifest": provenance},
            "losses": losses,
            "perceptual": run.perceptual,
            "vgg_weights": run.vgg_source,
            "steps": steps,
            "epochs_completed": epochs,
            "completed": completed,
            "validation": validation,
            "history": history,
            "init_profile": run.init_profile_name,
            "config": config.to_dict(),
            "world_size": run.world_size,
            "device": run.device,
            "command_line": run.command_line,
            "started": run.started,
            "finished": now(),
        },
    }
    if selected is not None:
        meta["training"]["selected"] = {"epoch": selected["epoch"], "step": selected["step"], "by": "validation PSNR"}
    return meta


@contextlib.contextmanager
def _evaluating(model: nn.Module) -> Iterator[None]:
    # Reading a spectral-norm weight in train mode would run a power-iteration step, changing
    # the model being saved.
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def export_profile(model: nn.Module, meta: dict, run_dir: Path, *, install: bool,
                   look: Look | None = None) -> tuple[Path, Path | None]:
    """Write `model` (and its `look` table) as the profile `meta["name"]` in `run_dir`, and install
    it if asked."""
    name = meta["name"]
    with _evaluating(model):
        path = save_profile(run_dir / f"{name}.safetensors", model, meta, look=look)
        installed = (save_profile(user_profile_dir() / f"{name}.safetensors", model, meta, look=look)
                     if install else None)
    return path, installed


def save_best(model: nn.Module, meta: dict, run_dir: Path) -> None:
    """Keep `model` as the best epoch so far (BEST_NAME in `run_dir`)."""
    with _evaluating(model):
        save_profile(run_dir / BEST_NAME, model, meta)


def best_record(history: list[dict], run_dir: Path) -> dict | None:
    """The history record with the best validation PSNR whose weights are in BEST_NAME."""
    scored = [r for r in history if r.get("validation")]
    if not scored or not (run_dir / BEST_NAME).is_file():
        return None
    return max(scored, key=lambda r: r["validation"]["psnr"])


def load_best(run_dir: Path) -> nn.Module:
    return load_profile(run_dir / BEST_NAME).model
