"""`raw2rgb learn` from end to end: pairs → held-out split → validation split → curve + 3D LUT →
fine-tune through that LUT (weights chosen on the validation frames) → report → profile (the
network and its LUT), in a run folder that a rerun of the same command resumes.

The LUT comes first so a learned profile starts at the classical answer's score: the network
then learns only what a global colour map cannot do, and its weights are kept only where they
beat the start on frames neither saw (else the base's weights ship with the LUT).

Nothing is written beside the RAWs (the run folder may not be one of their folders) and the RAWs
and sidecars are only read. The profile is exported and installed last, once the fine-tune, the
LUT and the report are all done: an interrupted run installs nothing.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import uuid
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import cv2
import torch

from raw2rgb_plugin.errors import Raw2RgbError
from raw2rgb_plugin.io.files import write_json
from raw2rgb_plugin.profiles.store import load_profile
from raw2rgb_plugin.runtime.device import choose_device
from raw2rgb_plugin.training.config import TrainingError
from raw2rgb_plugin.training.export import check_installed_profile, checked_profile_name, export_profile
from raw2rgb_plugin.training.learn.finetune import Finetune
from raw2rgb_plugin.training.learn.fit_look import fitted_lut
from raw2rgb_plugin.training.learn.lut import CurveLut
from raw2rgb_plugin.training.learn.options import SOURCES, LearnOptions
from raw2rgb_plugin.training.learn.pairs import (
    LearnPair,
    PairSkipped,
    build_pair,
    load_pair,
    pair_name,
    save_pair,
    widened,
)
from raw2rgb_plugin.training.learn.patches import INPUT_NORMALIZATION
from raw2rgb_plugin.training.learn.report import score_frames, write_report
from raw2rgb_plugin.training.learn.targets import find_raws
from raw2rgb_plugin.training.run_log import now

RUN_FILE = "learn.json"
Event = Callable[[dict], None]


@dataclass
class LearnResult:
    completed: bool
    report: dict | None
    profile_path: Path | None
    installed_path: Path | None


def learn(inputs: list[Path], run_dir: Path, options: LearnOptions, *, on_event: Event | None = None,
          command_line: str | None = None, stop: Callable[[], bool] | None = None) -> LearnResult:
    """Learn the look of the RAWs in `inputs` into `run_dir` and install it (see the module doc)."""
    emit = on_event or (lambda event: None)
    raws = find_raws(inputs)
    if not raws:
        raise Raw2RgbError("no RAW files among the inputs", "pass RAW files or folders that hold them")
    run_dir = _checked_run_dir(Path(run_dir), raws)
    state = _open_run(run_dir, options, command_line)
    if options.install:
        check_installed_profile(options.profile_name, state["run_id"], overwrite=options.overwrite)
    seconds: dict[str, float] = {}
    pairs, skipped = _pairs(raws, run_dir, options, emit, seconds)
    if not pairs:
        raise Raw2RgbError("no RAW gave a usable pair", "see the skipped files above; add sidecar JPEGs or use --source")
    train, held = split_pairs(pairs, options.holdout)
    fit, validation = split_pairs(train, validation_count(len(train)))
    emit({"event": "split", "train": len(fit), "validation": len(validation), "held_out": len(held)})
    device = choose_device(options.device)
    base = _base_model(options.base_profile)
    # The curve + LUT first: the network starts from it and learns only what it leaves to do.
    t0 = time.perf_counter()
    lut = fitted_lut(run_dir, fit, validation, base, device, emit)
    seconds["curve + LUT fit"] = time.perf_counter() - t0
    finetune = _finetune(base, fit, run_dir, options, emit, device, stop, lut, validation)
    t0 = time.perf_counter()
    completed = finetune.run()
    seconds["fine-tune"] = seconds.get("fine-tune", 0.0) + time.perf_counter() - t0
    if not completed:
        emit({"event": "stopped", "step": finetune.step})
        return LearnResult(False, None, None, None)
    t0 = time.perf_counter()
    scores = score_frames(held or train, base, finetune.student, lut, run_dir, device)
    scores["held_out"] = bool(held)
    seconds["report"] = time.perf_counter() - t0
    document = _document(options, state, raws, pairs, skipped, train, held, scores, seconds, finetune, lut)
    write_report(run_dir, document)
    emit({"event": "report", "report": document})
    path, installed = export_profile(finetune.student, _model_card(options, state, document), run_dir,
                                     install=options.install, look=lut.as_look())
    emit({"event": "profile", "path": str(path), "installed": str(installed) if installed else None})
    return LearnResult(True, document, path, installed)


def _checked_run_dir(run_dir: Path, raws: list[Path]) -> Path:
    resolved = run_dir.expanduser().resolve()
    for folder in {raw.parent for raw in raws}:
        if resolved == folder or folder in resolved.parents:
            raise Raw2RgbError(f"the run folder {run_dir} is inside the RAWs' folder {folder}",
                               "nothing is written beside your RAWs: choose -o elsewhere (or leave the default)")
    return resolved


def _open_run(run_dir: Path, options: LearnOptions, command_line: str | None) -> dict:
    """The run's identity (new, or the saved one when resuming with the same options)."""
    checked_profile_name(options.profile_name)
    if options.source not in SOURCES:
        raise Raw2RgbError(f"unknown --source {options.source!r}", f"use one of {', '.join(SOURCES)}")
    path = run_dir / RUN_FILE
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("options") != json.loads(json.dumps(options.content())):
            raise TrainingError(f"{run_dir} holds a learn run with other settings",
                                "rerun it with the same options to resume, or choose another -o")
        return saved
    if run_dir.exists() and any(run_dir.iterdir()):
        raise TrainingError(f"{run_dir} exists and is not a learn run", "choose another -o")
    run_dir.mkdir(parents=True, exist_ok=True)
    state = {"run_id": uuid.uuid4().hex, "started": now(), "options": options.content(),
             "command_line": command_line if command_line is not None else " ".join(sys.argv)}
    write_json(path, state)
    return state


def _pairs(raws: list[Path], run_dir: Path, options: LearnOptions, emit: Event,
           seconds: dict) -> tuple[list[LearnPair], dict[str, str]]:
    """Every RAW's pair, from the run folder or built now (`_built`); the skipped ones with why.

    Pairs are held as stored (float16) until all are there: half the memory while RAWs are
    being decoded beside them.
    """
    emit({"event": "pairs", "total": len(raws)})
    t0 = time.perf_counter()
    stored = {raw: load_pair(run_dir, pair_name(raw), stored=True) for raw in raws}
    pairs: list[LearnPair] = []
    skipped: dict[str, str] = {}
    with closing(_built([raw for raw in raws if stored[raw] is None], run_dir, options)) as built:
        for raw in raws:
            found: LearnPair | str | None = stored[raw]
            resumed = found is not None
            if found is None:
                found = next(built)
            if isinstance(found, str):
                skipped[raw.name] = found
                emit({"event": "pair", "name": raw.name, "status": "skipped", "reason": found})
                continue
            pairs.append(found)
            emit({"event": "pair", "name": raw.name, "status": "kept", "kind": found.info["kind"], "resumed": resumed})
    for k, pair in enumerate(pairs):  # one at a time: never all pairs twice (0.85 + 1.7 GB at 100 × 24 MP)
        pairs[k] = widened(pair)
    seconds["pairs"] = time.perf_counter() - t0
    return pairs, skipped


#: RAWs decoded into pairs at once: each 24 MP one holds about 0.6 GB while it is built
MAX_PAIR_WORKERS = 2


def _built(raws: list[Path], run_dir: Path, options: LearnOptions) -> Generator[LearnPair | str, None, None]:
    """Each RAW's stored pair (or why it has none), in order, built on up to MAX_PAIR_WORKERS
    threads (no more than torch's) of one torch and one OpenCV thread each.

    Threads, not processes: decoding, demosaicking and aligning run in C without the GIL, and the
    threads share one copy of torch. Every pair is built single-threaded, however many workers,
    so the same RAW gives the same pair, bit for bit, in a fresh or a resumed run.
    """
    if not raws:
        return
    threads = torch.get_num_threads(), cv2.getNumThreads()
    pool = ThreadPoolExecutor(min(MAX_PAIR_WORKERS, threads[0], len(raws)), thread_name_prefix="raw2rgb-pair",
                              initializer=_single_threaded)
    try:
        futures = [pool.submit(_build_and_store, raw, run_dir, options) for raw in raws]
        for future in futures:
            yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(threads[0])  # the workers' setting is also torch's default for new threads
        cv2.setNumThreads(threads[1])


def _single_threaded() -> None:
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def _build_and_store(raw: Path, run_dir: Path, options: LearnOptions) -> LearnPair | str:
    try:
        return save_pair(run_dir, build_pair(raw, options.source, options.max_side))
    except PairSkipped as exc:
        return str(exc)


def split_pairs(pairs: list[LearnPair], holdout: int | None) -> tuple[list[LearnPair], list[LearnPair]]:
    """(train, held out): held-out frames ranked by a hash of their RAW's file name (stable as files come and go).

    The file name, not the pair name: that one carries a digest of the RAW's absolute path, so the
    same card in another folder (each pytest run's tmp folder) held out other frames and learned
    from others: the same 13 files scored a detail ratio of 1.02 in one folder and 0.89 in another,
    and the headline test's wandered between CI runs. The pair name only breaks ties (the same
    file name in two folders).
    """
    count = holdout if holdout is not None else (max(1, round(0.15 * len(pairs))) if len(pairs) >= 4 else 0)
    count = min(count, len(pairs) - 1)
    ranked = sorted(pairs, key=lambda p: (hashlib.sha256(Path(p.info["raw"]).name.encode()).hexdigest(), p.name))
    held = {p.name for p in ranked[:count]}
    return [p for p in pairs if p.name not in held], [p for p in pairs if p.name in held]


#: frames that choose the weights at most: each is rendered whole at every checkpoint interval
#: (14 of a 100-frame card cost 70 s of a 24 MP card's 159 s fine-tune)
MAX_VALIDATION_FRAMES = 3


def validation_count(train: int) -> int:
    """Training frames set aside to choose the fine-tune's weights: about one in six, at most
    MAX_VALIDATION_FRAMES, none under five (then the last weights are kept)."""
    return min(MAX_VALIDATION_FRAMES, max(1, round(train / 6))) if train >= 5 else 0


def _base_model(name: str) -> torch.nn.Module:
    profile = load_profile(name)
    if profile.input_normalization != INPUT_NORMALIZATION or profile.output != "display":
        raise TrainingError(f"base profile {profile.name} reads {profile.input_normalization!r} input"
                            f" and renders {profile.output!r}",
                            f"learn starts from a display profile with {INPUT_NORMALIZATION} input, e.g. default-lite")
    return profile.model.float().eval()


def _finetune(base: torch.nn.Module, train: list[LearnPair], run_dir: Path, options: LearnOptions, emit: Event,
              device: torch.device, stop: Callable[[], bool] | None, lut: CurveLut,
              validation: list[LearnPair]) -> Finetune:
    """The fine-tune from the base's own weights with the look table in the loop (so its start
    scores what the table scores), resumed from its checkpoint if there is one.

    Not from a least-squares refit of the output layer for the look (the start before the table
    was in the profile): that start is no longer the table's score, so the validation frames
    could hand back a profile below its own table (film look: 31.8 dB against the table's 32.6).
    """
    return Finetune(base, train, run_dir, options.finetune, on_event=emit, device=device, should_stop=stop,
                    look=lut.as_look(), validation=validation)


def _document(options: LearnOptions, state: dict, raws: list[Path], pairs: list[LearnPair], skipped: dict,
              train: list[LearnPair], held: list[LearnPair], scores: dict, seconds: dict, finetune: Finetune,
              lut: CurveLut) -> dict:
    cameras = sorted({p.info["camera"] for p in pairs if p.info.get("camera")})
    sources: dict[str, int] = {}
    for p in pairs:
        sources[p.info["kind"]] = sources.get(p.info["kind"], 0) + 1
    return {
        "profile": options.profile_name, "run_id": state["run_id"], "base_profile": options.base_profile,
        "camera": ", ".join(cameras) or None, "make": pairs[0].info.get("make"), "model": pairs[0].info.get("model"),
        "files": {"found": len(raws), "used": len(pairs), "train": [p.info["raw"] for p in train],
                  "held_out": [p.info["raw"] for p in held], "sources": sources, "skipped": skipped},
        "pair_scale": {"min": min(p.info["scale"] for p in pairs), "max": max(p.info["scale"] for p in pairs)},
        "scores": scores, "look_table": lut.to_dict(), "finetune": {**options.finetune.to_dict(), "steps_done": finetune.step,
                                       "seconds_per_step": finetune.seconds_per_step,
                                       # the weights the profile got, chosen on the validation frames
                                       # (0: the base, the look table alone did best)
                                       "chosen_step": finetune.chosen_step,
                                       "validation_frames": [p.info["raw"] for p in finetune.validation]},
        "seconds": {k: round(v, 2) for k, v in seconds.items()}, "finished": now(),
    }


def _model_card(options: LearnOptions, state: dict, document: dict) -> dict:
    """The profile's metadata: what `profiles show` prints about where the look came from."""
    mean = document["scores"]["mean"]
    return {
        "name": options.profile_name,
        "input_normalization": INPUT_NORMALIZATION,
        "output_color_space": "srgb",
        "output": "display",
        "description": f"the look of {document['camera'] or 'a camera'}, learned by raw2rgb learn from "
                       f"{document['files']['used']} files (base {options.base_profile})",
        "training": {
            "kind": "learn", "run_id": state["run_id"], "started": state["started"], "finished": document["finished"],
            "command_line": state["command_line"], "init_profile": options.base_profile,
            "camera": document["camera"], "make": document["make"], "model": document["model"],
            "files": {k: v for k, v in document["files"].items() if k not in ("train", "held_out")},
            "held_out_frames": len(document["files"]["held_out"]),
            "scores": {"on": "held-out frames" if document["scores"]["held_out"] else "training frames",
                       **mean, "detail_vs_base": document["scores"]["detail_vs_base"]},
            "losses": {"colour_lowpass_mse": 1.0, "colour_lowpass_oklab": options.finetune.oklab_weight,
                       "detail_vs_base_mse": options.finetune.detail_weight},
            "look_table": "tone curves + 3D LUT fitted first on the training frames; the network learned through it",
            "finetune": document["finetune"], "seconds": document["seconds"],
        },
    }
