#!/usr/bin/env bash
# Train the GPU `default` profile — a `slim` G1 (width 32, 5.9 M parameters), noise-aware, on
# pairs made on the fly from sRGB images — in minutes on one H100/H200, then ship it (fp16) as
# raw2rgb_plugin/profiles/shipped/default.safetensors. Why `slim` and not the seed's `base`
# (width 64, 23.6 M): its fp16 file is 12 MB where base's is 47 MB (the repository and the wheel
# carry it), and in a few GPU minutes the run is bound by making pairs on the CPU workers, not by G1.
#
#   tools/train_default_gpu.sh RGB_DIR [OUT]            # on the GPU machine
#   RAW2RGB_SMOKE=1 tools/train_default_gpu.sh RGB_DIR OUT   # the same commands, tiny, on a CPU
#
# RGB_DIR: the training images (../shared/data/rgb: Kodak24 + McMaster). The device tool copies
# the working tree only, so a GPU session copies them into an ignored folder of the checkout and
# names it in `carry`. The time budget is --max-minutes (training stops with a checkpoint and a
# profile; rerun with the same OUT to --resume). Data are made in DataLoader workers (unprocess,
# noise, normalisation: ~10 ms per 256-px patch on one core), so WORKERS cores keep the GPU fed.
# Every choice is made on the run's own validation split (--keep-best), never on the held-out set.
set -euo pipefail
cd "$(dirname "$0")/.."

RGB_DIR=${1:?usage: tools/train_default_gpu.sh RGB_DIR [OUT]}
OUT=${2:-runs/default-gpu}
if [[ -n "${RAW2RGB_SMOKE:-}" ]]; then
    DEVICE=cpu VARIANT=lite BATCH=2 PATCH=64 PER_IMAGE=1 WORKERS=2 MINUTES=0.2 EPOCHS=1 NAME=default-smoke
else
    DEVICE=cuda VARIANT=slim BATCH=32 PATCH=256 PER_IMAGE=128 WORKERS=${RAW2RGB_WORKERS:-12} MINUTES=${RAW2RGB_MINUTES:-8} EPOCHS=40 NAME=default
fi
mkdir -p "$OUT"
export RAW2RGB_PROFILE_DIR="$OUT/profiles"  # never the user's own profile folder
RESUME=()
[[ -f "$OUT/run/checkpoint.pt" ]] && RESUME=(--resume)

raw2rgb train --synthetic "$RGB_DIR" -o "$OUT/run" "${RESUME[@]}" --profile-name "$NAME" --overwrite \
    --variant "$VARIANT" --device "$DEVICE" --batch-size "$BATCH" --patch-size "$PATCH" \
    --patches-per-image "$PER_IMAGE" --workers "$WORKERS" --no-perceptual \
    --clean-fraction 0.2 --stage1-epochs "$EPOCHS" --stage2-epochs 0 --lr-stage1 0.0002 --lr-decay-every 12 \
    --keep-best --max-minutes "$MINUTES" --checkpoint-every 500 --json > "$OUT/train.json"

BEST="$OUT/run/$NAME.safetensors"  # with --keep-best: the best validated epoch's weights
if [[ -n "${RAW2RGB_SMOKE:-}" ]]; then
    raw2rgb convert examples/astronaut.dng -o "$OUT/check" --profile "$BEST" --device "$DEVICE" --json -q > "$OUT/convert.json"
else
    "${PYTHON:-python}" tools/ship_profile.py "$BEST" "$NAME"
    raw2rgb convert examples/astronaut.dng -o "$OUT/check" --profile "$NAME" --device "$DEVICE" --json -q > "$OUT/convert.json"
fi
echo "trained: $("${PYTHON:-python}" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["steps"], "steps, validation", d["validation"])' "$OUT/train.json")"
