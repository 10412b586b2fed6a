#!/usr/bin/env bash
# One short call on the GPU device: the `gpu`-marked tests, the model's speed, the scoring
# throughput benchmark and a short run of the study's training recipe, on SYNTHETIC data generated
# there.
#
#   run(command="bash bench/gpu_check.sh", carry=["wheels"], timeout_s=560)
#
# The device has Python 3.12 with torch, numpy, scipy, pandas, pillow, pytest and tqdm
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
python3 -c "import numpy, scipy, pandas, pydicom, duckdb; \
print('numpy', numpy.__version__, 'scipy', scipy.__version__, 'pandas', pandas.__version__, \
'pydicom', pydicom.__version__, 'duckdb', duckdb.__version__)"
echo "== gpu-marked tests (CUDA bf16 against CPU float32; training on CUDA)"
# (tests/engine/anatomy/test_muscle_net.py's CUDA test reads truth NIfTI through SimpleITK,
# which does not travel: it runs where SimpleITK is installed)
python3 -m pytest -q -p no:cacheprovider -m gpu tests/models/test_inference.py \
    tests/models/test_network.py tests/models/test_train_command.py \
    tests/engine/score/test_score_gpu.py
echo "== model speed: default network and ConvNeXt-Tiny (bf16, channels_last)"
python3 bench/model_speed.py
python3 bench/model_speed.py --convnext-tiny --cpu-batch 4
echo "== throughput: decode floor vs vfrisk score on the GPU ($(nproc) workers)"
work=/tmp/vfrisk-gpu-check   # archives stay on the device; only stdout comes back
python3 bench/score_throughput.py --patients 20 --memory-patients 80 --resolution full \
    --workers "$(nproc)" --device cuda --out "$work/score"
echo "== the same 80 series with the workers' muscle network on the CPU ([score] anatomy_device)"
printf '[score]\nanatomy_device = "cpu"\n' > "$work/anatomy_cpu.toml"
VFRISK_CONFIG="$work/anatomy_cpu.toml" python3 bench/score_throughput.py --patients 80 \
    --memory-patients 0 --resolution full --workers "$(nproc)" --device cuda --out "$work/score"
echo "== the study's recipe (ConvNeXt-Tiny) for 2 epochs, 2 folds, on 96 development patients"
cohort="$work/train"
python3 -m engine.cli synth "$cohort" --patients 96 --sites dev:1 --seed 77 \
    --resolution low --workers "$(nproc)" > /dev/null
python3 -m engine.cli index "$cohort/archive" --db "$work/train.duckdb" --no-progress \
    --workers "$(nproc)" > /dev/null
python3 -m engine.cli import-clinical "$cohort/clinical.csv" --db "$work/train.duckdb" \
    > /dev/null
python3 -m engine.cli train --db "$work/train.duckdb" --out "$work/convnext.pt" \
    --recipe convnext_tiny --epochs 2 --folds 2 --device cuda --workers "$(nproc)"
