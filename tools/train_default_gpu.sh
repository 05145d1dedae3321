#!/usr/bin/env bash
# One GPU call, at most ten minutes on one H100/H200: train the GPU `default` (display) and
# `develop` (scene-linear, for `convert --format dng`) profiles — `slim` G1s (width 32, 5.9 M
# parameters), noise-aware — on pairs made on the GPU from a corpus, score each against the shipped
# lite profile on the held-out set in the same call, and ship only what wins at every noise level
# (training 3 + 1.5 minutes, the rest scoring: the whole call fits the device tool's ten).
#
#   tools/train_default_gpu.sh CORPUS [OUT]                  # on the GPU machine
#   RAW2RGB_SMOKE=1 tools/train_default_gpu.sh CORPUS OUT    # the same commands, tiny, on a CPU
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
if [[ -n "${RAW2RGB_SMOKE:-}" ]]; then
    DEVICE=cpu VARIANT=lite BATCH=2 PATCH=64 PER_IMAGE=1 MINUTES=0.2 DEV_MINUTES=0.2 EPOCHS=1 SUFFIX=-smoke
    SCORE=(--tile 64 --tiles-per-image 1 --images "$CORPUS")  # the smoke's own images: only the plumbing is tested
else
    DEVICE=cuda VARIANT=slim BATCH=32 PATCH=256 PER_IMAGE=32 MINUTES=${RAW2RGB_MINUTES:-3}
    DEV_MINUTES=${RAW2RGB_DEVELOP_MINUTES:-1.5} EPOCHS=40 SUFFIX=
    SCORE=()
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
        --keep-best --max-minutes "$minutes" --checkpoint-every 500 "$@" --json > "$OUT/train-$name.json"
    echo "trained $name: $("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["steps"], "steps, validation", d["validation"])' "$OUT/train-$name.json")"
}

train default display "$MINUTES"
train develop scene-linear "$DEV_MINUTES" --init "$OUT/run-default/default$SUFFIX.safetensors"

# Score each against the shipped lite profile in one report, and ship only a winner.
cp "$OUT/run-default/default$SUFFIX.safetensors" "$OUT/run-develop/develop$SUFFIX.safetensors" "$RAW2RGB_PROFILE_DIR/"
"$PY" benchmarks/quality_report.py --profiles "default$SUFFIX,default-lite" --device "$DEVICE" --no-demosaicnet --no-literature \
    "${SCORE[@]}" "${WHEEL[@]}" --out "$OUT/QUALITY-default.md" --json "$OUT/quality-default.json" > /dev/null
"$PY" benchmarks/develop_report.py --profiles "develop$SUFFIX,develop-lite" "${SCORE[@]}" "${WHEEL[@]}" \
    --out "$OUT/QUALITY-develop.md" --json "$OUT/quality-develop.json" > /dev/null
for pair in "default:default-lite" "develop:develop-lite"; do
    name=${pair%%:*} baseline=${pair##*:}
    if "$PY" tools/pick_winner.py "$OUT/quality-$name.json" "$name$SUFFIX" "$baseline" | tee "$OUT/pick-$name.txt"; then
        if [[ -z "$SUFFIX" ]]; then
            "$PY" tools/ship_profile.py "$OUT/run-$name/$name.safetensors" "$name"
        fi
    fi
done
raw2rgb convert examples/astronaut.dng -o "$OUT/check" --profile "default$SUFFIX" --device "$DEVICE" --json -q > "$OUT/convert.json"
