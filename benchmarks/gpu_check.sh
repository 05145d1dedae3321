#!/usr/bin/env bash
# The GPU check, in one go and under ten minutes on one GPU:
#   1. the CUDA tests (pytest -m cuda: the optimised runtime against eager, tiles, the engine on the
#      shipped profiles against the CPU, GAN training + resume, `learn` on a synthetic card),
#   2. the conversion benchmark on CUDA: slim (the GPU `default`) and lite G1, eager and optimised,
#      bf16, 12 and 24 MP,
# writing everything to OUT_DIR (default ./gpu-check): cuda-tests.txt, bench.txt (the table),
# bench.json, gpu.txt.
#
#   benchmarks/gpu_check.sh [OUT_DIR]
#   RAW2RGB_GPU_CHECK_DRY=1 benchmarks/gpu_check.sh OUT_DIR   # the same steps on the CPU, tiny frame
#
# PYTHON picks the interpreter (default: python); RAW2RGB_GPU_CHECK_STEPS="tests" or "bench" runs one
# step (e.g. the tests beside a training run, the benchmark once the GPU is free). Each step has its own timeout, so a hung step
# cannot eat the GPU time of the others; the script exits non-zero if either step failed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-gpu-check}"
PYTHON="${PYTHON:-python}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
cd "$ROOT"

if [[ "${RAW2RGB_GPU_CHECK_DRY:-0}" == "1" ]]; then
    echo "dry run: CPU, tiny frame (the CUDA tests skip)"
    device=cpu sizes=tiny variants=lite runtimes=optimized-bf16 batch=1 repeat=1
    echo "dry run on $(uname -m), no GPU" > "$OUT/gpu.txt"
else
    device=cuda sizes=12MP,24MP variants=slim,lite runtimes=eager-bf16,optimized-bf16 batch=3 repeat=3
    if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
        echo "no CUDA GPU visible to $PYTHON (set RAW2RGB_GPU_CHECK_DRY=1 for the CPU dry run)" >&2
        exit 2
    fi
    { nvidia-smi -L 2>/dev/null; "$PYTHON" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)'; } \
        > "$OUT/gpu.txt"
fi

status=0
start=$SECONDS
steps="${RAW2RGB_GPU_CHECK_STEPS:-tests bench}"
if [[ " $steps " == *" tests "* ]]; then
    echo "== CUDA tests"
    timeout 300 "$PYTHON" -m pytest -q -m cuda -rs -p no:cacheprovider tests/ 2>&1 | tee "$OUT/cuda-tests.txt"
    [[ ${PIPESTATUS[0]} -eq 0 ]] || { echo "CUDA tests FAILED" >&2; status=1; }
fi

if [[ " $steps " == *" bench "* ]]; then
    echo "== benchmark ($device: $variants, $sizes, $runtimes)"
    timeout ${RAW2RGB_BENCH_TIMEOUT:-420} "$PYTHON" benchmarks/bench_convert.py --device "$device" --variants "$variants" --sizes "$sizes" \
        --runtimes "$runtimes" --batch "$batch" --repeat "$repeat" --train-steps 0 --output "$OUT/bench.txt" \
        > "$OUT/bench.log" 2>&1
    [[ $? -eq 0 ]] || { echo "benchmark FAILED (see $OUT/bench.log)" >&2; status=1; }
    [[ -f "$OUT/bench.txt" ]] && cat "$OUT/bench.txt"
fi

echo "== done in $((SECONDS - start)) s; results in $OUT"
exit $status
