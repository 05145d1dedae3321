#!/usr/bin/env bash
# One GPU call (the device tool's limit is ten minutes a call): make raw2rgb runnable from the
# carried .gpudata/ (see tools/gpu_prepare.sh), then the CUDA tests and, in the rest of the budget,
# tools/train_default_gpu.sh on the packed corpus. Results go to $OUT (the device tool returns it).
#
#   bash tools/gpu_session.sh                       # on the GPU machine
#   RAW2RGB_GPU_STEPS="train" bash tools/gpu_session.sh   # or "tests", "bench", "ablate", "xtrans", any of them
#
# "xtrans" trains the GPU-width X-Trans profiles the same way (RAW2RGB_CFA=xtrans
# tools/train_default_gpu.sh), scored against LibRaw's X-Trans rendering or the shipped X-Trans lite ones.
# "ablate" runs benchmarks/ablate_formulation.py on the GPU (issue 20: which formulation lets a
# lite G1 demosaic), RAW2RGB_ABLATE_MINUTES of training (default 4), no CPU-side hard mining.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/gpu-out}
mkdir -p "$OUT" .gpudata/bin .gpudata/site
PY=${PYTHON:-python3}

# The image's Python has torch; the few wheels it lacks are carried. raw2rgb itself runs from
# the working tree: its two folder-named packages are linked in, and a shim stands for the
# console script (pip --target writes none into an existing bin/).
"$PY" -m pip install -q --no-index --no-deps --target .gpudata/site --find-links .gpudata/wheels \
    rawpy exifread tifftools platformdirs 2>&1 | tail -3
ln -sfn "$ROOT/cli" .gpudata/site/raw2rgb_cli
ln -sfn "$ROOT/host_integrations" .gpudata/site/raw2rgb_host_integrations
export PYTHONPATH="$ROOT:$ROOT/.gpudata/site${PYTHONPATH:+:$PYTHONPATH}"
printf '#!/usr/bin/env bash\nexec %s -m raw2rgb_cli.main "$@"\n' "$PY" > .gpudata/bin/raw2rgb
chmod +x .gpudata/bin/raw2rgb
export PATH="$ROOT/.gpudata/bin:$PATH" PYTHON="$PY"
raw2rgb --help > /dev/null || { echo "gpu_session: raw2rgb does not run" >&2; exit 2; }
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())' | tee "$OUT/gpu.txt"

steps=" ${RAW2RGB_GPU_STEPS:-tests train} "
status=0
if [[ $steps == *" tests "* ]]; then
    timeout 150 "$PY" -m pytest -q -m cuda -rs -p no:cacheprovider tests/ > "$OUT/cuda-tests.txt" 2>&1 || status=1
    tail -3 "$OUT/cuda-tests.txt"
fi
if [[ $steps == *" train "* ]]; then
    RAW2RGB_SKIMAGE_WHEEL=$(ls .gpudata/scikit_image-*.whl 2>/dev/null | head -1) \
        timeout "${RAW2RGB_TRAIN_TIMEOUT:-480}" bash tools/train_default_gpu.sh "${RAW2RGB_CORPUS:-.gpudata/corpus}" "$OUT/train" \
        > "$OUT/train.log" 2>&1 || status=1
    tail -12 "$OUT/train.log"
    cp raw2rgb_plugin/profiles/shipped/*.safetensors "$OUT/" 2>/dev/null || true
fi
if [[ $steps == *" xtrans "* ]]; then
    RAW2RGB_CFA=xtrans RAW2RGB_SKIMAGE_WHEEL=$(ls .gpudata/scikit_image-*.whl 2>/dev/null | head -1) \
        timeout "${RAW2RGB_TRAIN_TIMEOUT:-480}" bash tools/train_default_gpu.sh "${RAW2RGB_CORPUS:-.gpudata/corpus}" \
        "$OUT/train-xtrans" > "$OUT/train-xtrans.log" 2>&1 || status=1
    tail -12 "$OUT/train-xtrans.log"
    cp raw2rgb_plugin/profiles/shipped/xtrans*.safetensors "$OUT/" 2>/dev/null || true
fi
if [[ $steps == *" ablate "* ]]; then
    timeout 420 "$PY" benchmarks/ablate_formulation.py --device cuda --corpus "${RAW2RGB_CORPUS:-.gpudata/corpus}" \
        --steps 100000 --max-minutes "${RAW2RGB_ABLATE_MINUTES:-4}" --batch-size 32 --hard-fraction 0 \
        --validate-every 1000 --json "$OUT/ablation.json" > "$OUT/ablation.md" 2> "$OUT/ablation.log" || status=1
    cat "$OUT/ablation.md"
fi
if [[ $steps == *" bench "* ]]; then
    bash benchmarks/gpu_check.sh "$OUT/check" > "$OUT/gpu-check.log" 2>&1 || status=1
fi
exit $status
