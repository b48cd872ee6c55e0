#!/usr/bin/env bash
# Wheels for a GPU machine without a package registry (scripts/gpu_check.py installs them offline).
#
#   scripts/gpu_wheels.sh            # here, where pip reaches a registry: fills .gpu_wheels/
#   then the device tool's `run` with carry: [".gpu_wheels"], and there:
#   python3 scripts/gpu_check.py --out $OUT/gpu_check.json   # installs them when jsonargparse is missing
#
# The GPU machine has torch, lightning, torchmetrics, numpy, PyYAML and typing-extensions; LightningCLI
# (`charlm fit`) also needs jsonargparse with its signatures extra (docstring-parser, typeshed-client).
# All but PyYAML (already there) are pure Python. wandb, datasets and
# pooch are not needed: training on a local file with WANDB_MODE=disabled never imports them.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip download --only-binary=:all: --python-version "${PYTHON_VERSION:-3.12}" --no-cache-dir \
    --dest .gpu_wheels "jsonargparse[signatures]==4.53.*" "$@"
# the corpus too: the shared copy beside the checkout does not travel to the GPU machine
corpus=../shared/corpora/tinyshakespeare/input.txt
if [ -f "$corpus" ]; then cp "$corpus" .gpu_wheels/tinyshakespeare.txt; fi
ls -1 .gpu_wheels
