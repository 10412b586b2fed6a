#!/usr/bin/env bash
# One short call on the GPU device: the `gpu`-marked tests, the model's speed, the scoring
# throughput benchmark and a short run of the study's training recipe, on SYNTHETIC data generated
# there.
#
#   run(command="bash bench/gpu_check.sh", carry=["wheels"], timeout_s=560)
#
# Every part runs even when an earlier one fails; the failures are listed at the end (exit
# 1). It took 343 s on an H100 machine (2026-11-27), about 35 s more for the machine's start.
# The device has Python 3.12 with torch, numpy, scipy, pandas, pyarrow, pillow, pytest and tqdm
# but no pydicom, DuckDB, pylibjpeg, SimpleITK or Streamlit, and no network; at most
# 64 MiB travels with a call, the working tree (~18 MB) included. vfrisk's scoring path and
# its generator need no SimpleITK (imported lazily, for NIfTI input only). Put these
# cp312 wheels (~32 MB) into ./wheels/ (git-ignored) before the call:
#   pip download --only-binary=:all: --python-version 3.12 --no-deps -d wheels \
#       --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
#       --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 \
#       pydicom==3.0.2 duckdb==2.0.1 pylibjpeg==2.1.0 pylibjpeg-openjpeg pylibjpeg-libjpeg \
#       pylibjpeg-rle
# (the generator writes some sites JPEG 2000 / JPEG-LS / RLE compressed).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; \
print('torch', torch.__version__, torch.cuda.get_device_name(0))"
if [ -d wheels ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/vfrisk-site wheels/*.whl
    export PYTHONPATH="/tmp/vfrisk-site"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"   # no editable install: no network
python3 -c "import numpy, scipy, pandas, pyarrow, pydicom, duckdb; \
print('numpy', numpy.__version__, 'scipy', scipy.__version__, 'pandas', pandas.__version__, \
'pyarrow', pyarrow.__version__, 'pydicom', pydicom.__version__, 'duckdb', duckdb.__version__)"
failed=()
section() {  # run one part; a failure is reported at the end and the other parts still run
    local name=$1; shift
    echo "== $name"
    local t0=$SECONDS
    "$@" || failed+=("$name")
    echo "   ($name: $((SECONDS - t0)) s)"
}
work=/tmp/vfrisk-gpu-check   # archives stay on the device; only stdout comes back
mkdir -p "$work"
# (tests/engine/anatomy/test_muscle_net.py's CUDA test reads truth NIfTI through SimpleITK,
# which does not travel: it runs where SimpleITK is installed)
section "gpu-marked tests (CUDA bf16 against CPU float32; training and scoring on CUDA)" \
    python3 -m pytest -q -p no:cacheprovider -m gpu tests/models/test_inference.py \
    tests/models/test_network.py tests/models/test_train_command.py \
    tests/engine/score/test_score_gpu.py
section "throughput: decode floor vs vfrisk score on the GPU ($(nproc) workers)" \
    python3 bench/score_throughput.py --patients 20 --memory-patients 80 --resolution full \
    --workers "$(nproc)" --device cuda --out "$work/score"
printf '[score]\nanatomy_device = "auto"\n' > "$work/anatomy_auto.toml"
section "the same 80 series with the workers' muscle network on CUDA ([score] anatomy_device)" \
    env VFRISK_CONFIG="$work/anatomy_auto.toml" python3 bench/score_throughput.py --patients 80 \
    --memory-patients 0 --resolution full --workers "$(nproc)" --device cuda --out "$work/score"
section "model speed: default network (bf16, channels_last)" python3 bench/model_speed.py
train_recipe() {
    local cohort="$work/train"
    python3 -m engine.cli synth "$cohort" --patients 96 --sites dev:1 --seed 77 \
        --resolution low --workers "$(nproc)" > /dev/null 2>&1
    python3 -m engine.cli index "$cohort/archive" --db "$work/train.duckdb" --no-progress \
        --workers "$(nproc)" > /dev/null
    python3 -m engine.cli import-clinical "$cohort/clinical.csv" --db "$work/train.duckdb" \
        > /dev/null
    python3 -m engine.cli train --db "$work/train.duckdb" --out "$work/convnext.pt" \
        --recipe convnext_tiny --epochs 2 --folds 2 --device cuda --workers "$(nproc)" 2>&1 \
        | grep -v "it/s\|patient/s"
}
section "the study's recipe (ConvNeXt-Tiny) for 2 epochs, 2 folds, on 96 development patients" \
    train_recipe
if ((${#failed[@]})); then
    printf 'FAILED: %s\n' "${failed[@]}"
    exit 1
fi
echo "gpu_check: all parts passed"
