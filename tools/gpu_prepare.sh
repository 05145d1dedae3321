#!/usr/bin/env bash
# Before a GPU call: put everything the GPU machine lacks into .gpudata/ (ignored by git; name it
# in the device tool's `carry`). The device tool copies 64 MiB of working tree; the repository is
# ~9 MB, so: the wheels the GPU image has no copy of (rawpy for Python 3.10-3.13, exifread,
# tifftools, platformdirs: ~13 MB), the scikit-image wheel the held-out report reads its
# photographs from (14 MB, read as a zip, never installed) and a 24 MiB pack of the corpus.
#
#   tools/gpu_prepare.sh [CORPUS]     # CORPUS: `raw2rgb dataset corpus` output (~/.cache/raw2rgb/corpus)
#
# Then on the GPU machine: `bash tools/gpu_session.sh` (one call, under ten minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS=${1:-$HOME/.cache/raw2rgb/corpus}
PACK_MIB=${RAW2RGB_PACK_MIB:-24}
mkdir -p .gpudata/wheels
for py in 3.10 3.11 3.12 3.13; do
    pip download -q --no-deps --only-binary=:all: --python-version "$py" --platform manylinux_2_28_x86_64 \
        -d .gpudata/wheels rawpy || echo "gpu_prepare: no rawpy wheel for Python $py" >&2
done
pip download -q --no-deps -d .gpudata/wheels exifread tifftools platformdirs
pip download -q --no-deps --only-binary=:all: --python-version 3.11 --platform manylinux_2_28_x86_64 \
    -d .gpudata "scikit-image==$(python -c 'import sys; sys.path.insert(0, "benchmarks"); import skimage_wheel; print(skimage_wheel.SKIMAGE_VERSION)')"
rm -rf .gpudata/corpus
python tools/pack_corpus.py "$CORPUS" .gpudata/corpus --max-mib "$PACK_MIB"
du -sh .gpudata
