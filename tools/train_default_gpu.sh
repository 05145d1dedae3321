#!/usr/bin/env bash
# One GPU call, at most ten minutes on one H100/H200: train the GPU `default` (display) and
# `develop` (scene-linear, for `convert --format dng`) profiles — `slim` G1s (width 32, 5.9 M
# parameters), noise-aware — on pairs made on the GPU from a corpus, score each against the shipped
# lite profile on the held-out set in the same call, and ship only what wins at every noise level
# (training 3 + 1.5 minutes, the rest scoring: the whole call fits the device tool's ten).
#
#   tools/train_default_gpu.sh CORPUS [OUT]                  # on the GPU machine
#   RAW2RGB_SMOKE=1 tools/train_default_gpu.sh CORPUS OUT    # the same commands, tiny, on a CPU
#   RAW2RGB_CFA=xtrans tools/train_default_gpu.sh CORPUS OUT # `xtrans` and `xtrans-develop` instead
#
# X-Trans: the same two runs with `--cfa xtrans` (patches a multiple of 48), scored in the quality
# report's X-Trans section against the shipped X-Trans lite profiles, or, where none ships, against
# LibRaw's own X-Trans rendering (tools/pick_winner.py --xtrans).
#
# CORPUS: a folder of training photographs: `python tools/pack_corpus.py` packs a carry-sized
# share of `raw2rgb dataset corpus` (the device tool copies 64 MiB of working tree; name the pack
# in `carry`). Never Kodak24/McMaster18 or the held-out scikit-image photographs.
# Pairs are made on the GPU (`--pairs-on-device`): the last run, with pairs from 12 CPU workers,
# managed 16 steps/s at batch 32 and waited 72 s for the first step.
# Why `slim` and not the seed's `base` (width 64, 23.6 M): its fp16 file is 12 MB where base's is
# 47 MB, and the repository and the wheel carry it.
# Budgets: RAW2RGB_MINUTES (default 3) for `default`, RAW2RGB_DEVELOP_MINUTES (default 1.5) for
# `develop`; each run stops with a checkpoint, and rerunning with the same OUT resumes it.
# Held-out scoring needs the scikit-image wheel (RAW2RGB_SKIMAGE_WHEEL; carry it: no network there).
# Every training choice is made on the run's own validation split (--keep-best); the held-out set
# only decides whether to ship.
set -euo pipefail
cd "$(dirname "$0")/.."

CORPUS=${1:?usage: tools/train_default_gpu.sh CORPUS [OUT]}
OUT=${2:-runs/default-gpu}
PY=${PYTHON:-python}
CFA=${RAW2RGB_CFA:-bayer}
if [[ -n "${RAW2RGB_SMOKE:-}" ]]; then
    DEVICE=cpu VARIANT=lite BATCH=2 PATCH=64 PER_IMAGE=1 MINUTES=0.2 DEV_MINUTES=0.2 EPOCHS=1 SUFFIX=-smoke
    SCORE=(--tile 64 --tiles-per-image 1 --images "$CORPUS")  # the smoke's own images: only the plumbing is tested
else
    DEVICE=cuda VARIANT=slim BATCH=32 PATCH=256 PER_IMAGE=32 MINUTES=${RAW2RGB_MINUTES:-3}
    DEV_MINUTES=${RAW2RGB_DEVELOP_MINUTES:-1.5} EPOCHS=40 SUFFIX=
    SCORE=()
fi
if [[ $CFA == xtrans ]]; then
    DISPLAY_NAME=xtrans DEVELOP_NAME=xtrans-develop DISPLAY_LITE=xtrans-lite DEVELOP_LITE=xtrans-develop-lite
    CFA_OPTIONS=(--cfa xtrans)
    PATCH=$(( PATCH / 48 * 48 ))  # the X-Trans packing period times G1's stride
    (( PATCH < 96 )) && PATCH=96
else
    DISPLAY_NAME=default DEVELOP_NAME=develop DISPLAY_LITE=default-lite DEVELOP_LITE=develop-lite
    CFA_OPTIONS=()
fi
WHEEL=()
[[ -n "${RAW2RGB_SKIMAGE_WHEEL:-}" ]] && WHEEL=(--skimage-wheel "$RAW2RGB_SKIMAGE_WHEEL")
mkdir -p "$OUT"
export RAW2RGB_PROFILE_DIR="$OUT/profiles"  # never the user's own profile folder

# train NAME TARGET MINUTES [extra options]
train() {
    local name=$1 target=$2 minutes=$3 run="$OUT/run-$1"
    shift 3
    local resume=()
    [[ -f "$run/checkpoint.pt" ]] && resume=(--resume)
    raw2rgb train --synthetic "$CORPUS" -o "$run" "${resume[@]}" --profile-name "$name$SUFFIX" --overwrite \
        --target "$target" --variant "$VARIANT" --device "$DEVICE" --batch-size "$BATCH" --patch-size "$PATCH" \
        --patches-per-image "$PER_IMAGE" --pairs-on-device --no-perceptual --clean-fraction 0.2 \
        --stage1-epochs "$EPOCHS" --stage2-epochs 0 --lr-stage1 0.0002 --lr-decay-every 12 \
        --keep-best --max-minutes "$minutes" --checkpoint-every 500 "${CFA_OPTIONS[@]}" "$@" --json > "$OUT/train-$name.json"
    echo "trained $name: $("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["steps"], "steps, validation", d["validation"])' "$OUT/train-$name.json")"
}

D=$DISPLAY_NAME V=$DEVELOP_NAME
train "$D" display "$MINUTES"
train "$V" scene-linear "$DEV_MINUTES" --init "$OUT/run-$D/$D$SUFFIX.safetensors"

# Score each against the shipped lite profile in one report, and ship only a winner.
cp "$OUT/run-$D/$D$SUFFIX.safetensors" "$OUT/run-$V/$V$SUFFIX.safetensors" "$RAW2RGB_PROFILE_DIR/"
if [[ $CFA == xtrans ]]; then
    profiles="$D$SUFFIX,$V$SUFFIX"
    for lite in "$DISPLAY_LITE" "$DEVELOP_LITE"; do
        raw2rgb profiles show "$lite" > /dev/null 2>&1 && profiles="$profiles,$lite"
    done
    "$PY" benchmarks/quality_report.py --profiles none --xtrans-profiles "$profiles" --device "$DEVICE" --no-demosaicnet \
        --no-literature "${SCORE[@]}" "${WHEEL[@]}" --out "$OUT/QUALITY-xtrans.md" --json "$OUT/quality-xtrans.json" > /dev/null
    PICK=(--xtrans) REPORT_D="$OUT/quality-xtrans.json" REPORT_V="$OUT/quality-xtrans.json"
else
    "$PY" benchmarks/quality_report.py --profiles "$D$SUFFIX,$DISPLAY_LITE" --device "$DEVICE" --no-demosaicnet --no-literature \
        "${SCORE[@]}" "${WHEEL[@]}" --out "$OUT/QUALITY-default.md" --json "$OUT/quality-default.json" > /dev/null
    "$PY" benchmarks/develop_report.py --profiles "$V$SUFFIX,$DEVELOP_LITE" "${SCORE[@]}" "${WHEEL[@]}" \
        --out "$OUT/QUALITY-develop.md" --json "$OUT/quality-develop.json" > /dev/null
    PICK=() REPORT_D="$OUT/quality-default.json" REPORT_V="$OUT/quality-develop.json"
fi
for pair in "$D:$DISPLAY_LITE:$REPORT_D" "$V:$DEVELOP_LITE:$REPORT_V"; do
    IFS=: read -r name baseline report <<< "$pair"
    if "$PY" tools/pick_winner.py "${PICK[@]}" "$report" "$name$SUFFIX" "$baseline" | tee "$OUT/pick-$name.txt"; then
        if [[ -z "$SUFFIX" ]]; then
            "$PY" tools/ship_profile.py "$OUT/run-$name/$name.safetensors" "$name"
        fi
    fi
done
if [[ $CFA == bayer ]]; then
    raw2rgb convert examples/astronaut.dng -o "$OUT/check" --profile "$D$SUFFIX" --device "$DEVICE" --json -q > "$OUT/convert.json"
fi
