"""Where a run starts from (a checkpoint, an `--init` profile or scratch) and its checkpoint file.

Exact resume. A checkpoint holds every piece of state that decides what happens next: weights
and buffers of the three networks (spectral-norm vectors and BatchNorm statistics included),
optimiser and scheduler states, AMP scaler states, the torch/CUDA/numpy/python RNG states and the
position (stage, epoch, batch within the epoch, step). Its layout (CHECKPOINT_FORMAT 1):
`format`, `config` and `progress` (JSON strings), `g1`, `g2`, `d` (state dicts), `opt_g`,
`opt_d`, `sched_g`, `sched_d` (state dicts or None), `scaler_g`, `scaler_d`, `rng`.
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from raw2rgb_plugin.io.files import atomic_output
from raw2rgb_plugin.models.blocks import GATED_BASES, RESIDUAL_BASE_INPUT
from raw2rgb_plugin.models.g1 import (
    G1,
    G1Config,
    adapt_plain_state,
    add_fine_blocks,
    add_noise_channels,
    load_plain_state_dict,
)
from raw2rgb_plugin.profiles.store import load_profile
from raw2rgb_plugin.training.config import TrainConfig, TrainingError
from raw2rgb_plugin.vocabulary import VARIANT_WIDTHS

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = 1

#: settings a resumed run may change: they steer the run, not what it computes.
#: the residual base a new G1 (or `auto`) gets for each input normalisation: the gates over the
#: demosaic fitted to photographs (pipeline/bayer_lsq_demosaic.py), 1.6 dB above Malvar–He–Cutler
#: on clean corpus crops; with the base swapped under unchanged networks, +0.7 to +1.1 dB on clean
#: held-out photographs.
AUTO_RESIDUAL_BASE = {"linear-srgb": "lsq-srgb-gated", "wb-headroom": "lsq-linear-gated"}
#: the same for an X-Trans G1: the gate over the linear X-Trans demosaic (pipeline/xtrans_demosaic.py)
XTRANS_AUTO_RESIDUAL_BASE = {"linear-srgb": "xtrans-srgb-gated", "wb-headroom": "xtrans-linear-gated"}


def auto_residual_base(input_normalization: str, cfa: str = "bayer") -> str:
    """The gated base a new G1 of `cfa` gets for its input (`--residual-base auto`), or none."""
    table = XTRANS_AUTO_RESIDUAL_BASE if cfa == "xtrans" else AUTO_RESIDUAL_BASE
    return table.get(input_normalization, "none")

RUN_CONTROL_FIELDS = ("max_steps", "device", "workers", "checkpoint_every", "log_every")


# --------------------------------------------------------------------------------------------
# The file


def open_run(run_dir: Path, resume: bool) -> dict | None:
    """The checkpoint to resume (None for a new run); refuses to start over an existing run."""
    checkpoint = read_checkpoint(run_dir) if resume else None
    if checkpoint is None and (run_dir / CHECKPOINT_NAME).exists():
        raise TrainingError(
            f"{run_dir} already holds a training run",
            "pass --resume to continue it, or choose another -o directory",
        )
    return checkpoint


def read_checkpoint(run_dir: Path) -> dict:
    path = run_dir / CHECKPOINT_NAME
    if not path.is_file():
        raise TrainingError(f"no checkpoint to resume in {run_dir}", "check -o, or start without --resume")
    try:
        # Our own format: tensors, numbers, strings and containers only; nothing is unpickled into code.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TrainingError(
            f"cannot read the checkpoint {path} ({type(exc).__name__})",
            "it is damaged; start a new run in another -o directory",
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path} is not a raw2rgb checkpoint of a known format", "start a new run")
    return state


def pack_checkpoint(config: TrainConfig, progress: dict, networks: dict[str, nn.Module], optimisation: dict) -> dict:
    """The checkpoint of the layout above; `optimisation` is `GanStep.state_dict()`."""
    return {
        "format": CHECKPOINT_FORMAT,
        "config": json.dumps(config.to_dict()),
        "progress": json.dumps(progress),
        **{name: network.state_dict() for name, network in networks.items()},
        **optimisation,
        "rng": rng_state(),
    }


def write_checkpoint(run_dir: Path, state: dict, name: str = CHECKPOINT_NAME) -> Path:
    """Write atomically: an interrupted save leaves the previous checkpoint intact."""
    path = run_dir / name
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, overwrite=True) as out:
        torch.save(state, out)
    return path


# --------------------------------------------------------------------------------------------
# Where the run starts


def run_config(config: TrainConfig, checkpoint: dict | None) -> TrainConfig:
    """The run's own (validated) copy of its settings: a resumed run keeps its saved ones except
    RUN_CONTROL_FIELDS, which come from `config`."""
    config = dataclasses.replace(config)  # the run may fill in fields (width from --init)
    if checkpoint is not None:
        saved = TrainConfig.from_dict(json.loads(checkpoint["config"]))
        for name in RUN_CONTROL_FIELDS:
            setattr(saved, name, getattr(config, name))
        config = saved
    config.validate()
    return config


@dataclass
class StartingPoint:
    """G1's architecture, and the profile (name and adapted weights) an `--init` run starts from."""

    g1_config: G1Config
    init_profile_name: str | None = None
    init_state: dict | None = None


def starting_point(config: TrainConfig, input_normalization: str, progress: dict | None) -> StartingPoint:
    """G1 as the checkpoint's `progress` saved it, else from `config.init_profile`, else new.

    An `--init` profile's width (and named variant) win over the config's: they are written
    into `config`. Call this after seeding torch: loading a profile builds a model.
    """
    if progress is not None:
        start = StartingPoint(G1Config(**progress["g1_config"]), progress.get("init_profile_name"))
    elif config.init_profile:
        start = _from_profile(config, input_normalization)
    else:
        auto = auto_residual_base(input_normalization, config.cfa)
        start = StartingPoint(config.g1_config(auto if config.residual_base == "auto" else config.residual_base))
    base = start.g1_config.residual_base
    if base != "none" and input_normalization != RESIDUAL_BASE_INPUT[base]:
        raise TrainingError(
            f"the {base} residual base renders {RESIDUAL_BASE_INPUT[base]} input, this run's is {input_normalization!r}",
            f"use --input-normalization {RESIDUAL_BASE_INPUT[base]} or --residual-base none",
        )
    return start


def _sibling_base(base: str, input_normalization: str) -> str | None:
    """The gated base over the same classical demosaic for another input (mhc-srgb-gated →
    mhc-linear-gated, lsq-… → lsq-…), so a display profile's gate keeps the image it learned on."""
    family = base.split("-")[0]
    return next((b for b in GATED_BASES if b.split("-")[0] == family and RESIDUAL_BASE_INPUT[b] == input_normalization),
                None)


def _from_profile(config: TrainConfig, input_normalization: str) -> StartingPoint:
    assert config.init_profile is not None
    profile = load_profile(config.init_profile)
    if profile.cfa != config.cfa:  # a G1 packs one sensor's period: its weights fit no other
        raise TrainingError(f"--init profile {profile.name} renders {profile.cfa} sensors, this run trains {config.cfa}",
                            f"pass --cfa {profile.cfa} to fine-tune it, or start the {config.cfa} run without --init")
    # A profile trained on other input is still a starting point (its features, not its colour)
    # when the run asks for its input explicitly: a scene-linear profile starts from the display one.
    # The same for its network space (camera-space display vs srgb), which a run names explicitly.
    if profile.network_space != config.space and config.network_space is None:
        raise TrainingError(
            f"--init profile {profile.name} works in {profile.network_space} space, this run in {config.space}",
            f"pass --network-space {profile.network_space} to continue it, or --network-space {config.space} "
            "to start that space from its features")
    if (profile.input_normalization != input_normalization and config.input_normalization is None
            and config.network_space is None):
        raise TrainingError(
            f"--init profile {profile.name} expects {profile.input_normalization!r} input, "
            f"the dataset holds {input_normalization!r}",
            "rebuild the dataset with that normalisation or start from scratch",
        )
    old = cast(G1Config, profile.model.config)  # --init profiles are G1s (the registry's only architecture)
    base = old.residual_base if config.residual_base == "auto" else config.residual_base
    if config.residual_base == "auto" and RESIDUAL_BASE_INPUT.get(old.residual_base, input_normalization) != input_normalization:
        # the gated base of the run's input, over the same classical demosaic as the profile's
        base = _sibling_base(old.residual_base, input_normalization) or auto_residual_base(input_normalization, config.cfa)
    # A profile that reads a noise map keeps it; one that does not gains one when the run's
    # data carries noise levels (its new input weights start at zero: it renders as before).
    config.noise_map = config.noise_map or bool(old.noise_channels)
    noise_channels = old.period * old.period if config.noise_map else 0  # one channel per site
    # More fine blocks than the profile has may be asked for (they start with zero gain: it renders
    # as before); fewer would drop trained weights.
    fine_blocks = old.fine_blocks if config.fine_blocks is None else config.fine_blocks
    if fine_blocks < old.fine_blocks:
        raise TrainingError(f"--init profile {profile.name} has {old.fine_blocks} fine blocks, the run asks for {fine_blocks}",
                            f"use --fine-blocks {old.fine_blocks} or more")
    config.fine_blocks = fine_blocks
    g1_config = dataclasses.replace(old, spectral_norm=True, residual_base=base, noise_channels=noise_channels,
                                    fine_blocks=fine_blocks)
    config.width = g1_config.width
    if profile.variant in VARIANT_WIDTHS:
        config.variant = profile.variant
    state = adapt_plain_state(profile.model.state_dict(), old.residual_base, base, old.out_channels)
    if noise_channels > old.noise_channels:
        state = add_noise_channels(state, noise_channels - old.noise_channels)
    if fine_blocks > old.fine_blocks:
        state = add_fine_blocks(state, g1_config, seed=config.seed)
    return StartingPoint(g1_config, profile.name, state)


def initial_g1(start: StartingPoint) -> tuple[G1, list[str]]:
    """G1 with the starting point's weights, and notes for the user about them."""
    g1 = G1(start.g1_config)
    notes: list[str] = []
    if start.init_state is not None:
        load_plain_state_dict(g1, start.init_state)
        deviation = _spectral_norm_deviation(g1)
        if deviation > 0.01:
            notes.append(
                f"--init profile {start.init_profile_name}: its weights were not trained under spectral norm "
                f"(largest singular value off 1 by {deviation:.2f}), so training starts from their normalised version"
            )
    return g1, notes


@torch.no_grad()
def _spectral_norm_deviation(model: nn.Module) -> float:
    """max |σ(W) − 1| over spectrally normalised convs, from their converged power iteration."""
    worst = 0.0
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and parametrize.is_parametrized(module, "weight"):
            weight: Any = cast(Any, module).parametrizations.weight  # torch types it as Tensor | Module
            sn = weight[0]
            matrix = sn._reshape_weight_to_matrix(weight.original)
            sigma = torch.dot(sn._u, torch.mv(matrix, sn._v)).item()
            worst = max(worst, abs(sigma - 1.0))
    return worst


# --------------------------------------------------------------------------------------------
# RNG state


def rng_state() -> dict:
    """torch, numpy, python (and CUDA, once used) RNG states, as tensors and plain values only:
    the checkpoint must load with `weights_only=True`."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": name, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
