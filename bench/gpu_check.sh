#!/usr/bin/env bash
# One short call on the GPU device: the `gpu`-marked tests and the scoring throughput
# benchmark, on a SYNTHETIC archive generated there.
#
#   run(command="bash bench/gpu_check.sh", carry=["wheels"], timeout_s=540)
#
# The device has Python 3.12 with torch and numpy only, no network, and at most 64 MiB
# travels with a call. The scoring hot path imports numpy, torch, pydicom, duckdb and
# scipy (the built-in segmenter's ndimage is imported eagerly by engine.anatomy._spine);
# pandas, Pillow (QA pictures) and tqdm are needed by the generator, the store's query()
# and the CLI. SimpleITK (~50 MB) is imported lazily (NIfTI only) and is NOT needed.
# Put these cp312 manylinux wheels into ./wheels/ (git-ignored) before the call, e.g.
#   pip download --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
#       --no-deps -d wheels pydicom duckdb scipy pandas pillow tqdm pytest pluggy \
#       iniconfig packaging python-dateutil pytz tzdata six
# (about 60 MB together: scipy ~37, duckdb ~20 and pandas ~12 dominate; check the total
# with `du -sh wheels` and drop pandas' tzdata/pytz extras first if it is over 64 MiB).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; \
print('torch', torch.__version__, torch.cuda.get_device_name(0))"
if [ -d wheels ]; then
    python3 -m pip install -q --no-index --find-links wheels --no-deps wheels/*.whl
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"   # no editable install: no network
echo "== gpu-marked tests (CPU vs CUDA bf16)"
python3 -m pytest -q -p no:cacheprovider -m gpu tests/models/test_inference.py \
    tests/engine/score/test_score_gpu.py
echo "== throughput: decode floor vs vfrisk score on the GPU (16 workers)"
out=/tmp/score_bench   # the archive stays on the device; only stdout comes back
python3 bench/score_throughput.py --patients 20 --memory-patients 80 --resolution full \
    --workers "$(nproc)" --device cuda --out "$out"
