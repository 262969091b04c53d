#!/usr/bin/env bash
# One call on the GPU machine (at most 9 minutes: GPU_CHECK_BUDGET=540 s): install what travels, run the CUDA test
# layer (and say whether it passed), then the benchmarks on CUDA in fp32 and bf16/fp16 (issue 19: the raw-forward
# ceiling and the ratio to it, model FLOP utilisation, extract-dataset images/s, the 10-image applications with
# the device refinement); every table goes under $OUT.
#
#   bash bench/gpu_check.sh             # on the GPU machine (python3 = its Python 3.12 + torch)
#   bash bench/gpu_check.sh --dry-run   # anywhere, on the CPU, quickly: proves the script works
#
# What travels (bench/README.md "GPU check"): the repository and the ignored folder .gpu/ (carry it),
# built here by bench/gpu_prepare.sh: .gpu/wheels (timm 1.0.31, platformdirs, Cython 0.29.36 for the
# CRF build), .gpu/sdist (pydensecrf2 1.1), .gpu/weights (the bundled model in fp16). The CUDA path needs
# no pydensecrf (its CRF is vitdense/ops/refine.py's, in torch): the 73 s build runs last, only when at least
# GPU_CHECK_CRF_S (default 150) seconds are left, for one CPU-refinement comparison row.
# Files back: at most 8 under $OUT (summary.md, tests.txt, targets.md, extract.md, apps.md,
# selection.md, log.txt).
set -u -o pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
OUT=${OUT:-$REPO/out/gpu-check}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
LOG=$OUT/log.txt
: >"$LOG"
SUMMARY=$OUT/summary.md
T0=$(date +%s)
STEP_RC=none
# the whole call must end inside the device tool's 600 s per command: every step gets at most what
# is left of this budget (GPU_CHECK_BUDGET seconds), and a step that would start too late is skipped
DEADLINE=$((T0 + ${GPU_CHECK_BUDGET:-540}))
step() {  # step NAME TIMEOUT_S OUTFILE CMD...: run, append stdout to OUTFILE, stderr to the log
    local name=$1 limit=$2 out=$3; shift 3
    local left=$((DEADLINE - $(date +%s)))
    if [ "$left" -lt 20 ]; then
        echo "- $name: skipped (the time budget is spent)" >>"$SUMMARY"
        STEP_RC=skipped
        return 0
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "== $name ($(($(date +%s) - T0)) s, limit $limit s)" | tee -a "$LOG" >&2
    timeout "$limit" "$@" >>"$out" 2>>"$LOG"
    local rc=$?
    STEP_RC=$rc
    echo "- $name: exit $rc ($(($(date +%s) - T0)) s)" >>"$SUMMARY"
    return 0
}

# 1. install what travels (no package index there); the wheels go to a private target
SITE=${TMPDIR:-/tmp}/vitdense-site
echo "# vitdense GPU check $(date -u +%FT%TZ)$([ $DRY = 1 ] && echo ' (DRY RUN on the CPU)')" >"$SUMMARY"
if compgen -G ".gpu/wheels/*.whl" >/dev/null; then
    # one wheel at a time: one that does not fit this Python (pillow's is cp312) costs only itself
    for wheel in .gpu/wheels/*.whl; do
        if $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
                "$wheel" >>"$LOG" 2>&1; then
            echo "- wheel installed: $(basename "$wheel")" >>"$SUMMARY"
        else
            echo "- wheel NOT installed (see log.txt): $(basename "$wheel")" >>"$SUMMARY"
        fi
    done
    export PYTHONPATH=$SITE:$REPO
else
    echo "- no .gpu/wheels (run bench/gpu_prepare.sh here, then carry .gpu): using installed packages" >>"$SUMMARY"
    export PYTHONPATH=$REPO
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
[ $DRY = 1 ] && export OMP_NUM_THREADS=1  # tiny CPU work: one thread (no thrashing on busy machines)
CKPT=$(ls .gpu/weights/*.safetensors 2>/dev/null | head -1)
[ -n "$CKPT" ] && export VITDENSE_TEST_CHECKPOINT=$REPO/$CKPT

$PY - >>"$SUMMARY" 2>>"$LOG" <<'EOF'
import importlib, platform, torch
print(f"- python {platform.python_version()}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"GPU: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
from importlib.metadata import PackageNotFoundError, version
# pillow >= 11.2: PIL images are read as their memory (Arrow export); older ones are copied (tobytes)
for name in ("timm", "numpy", "pillow", "torchvision", "scikit-learn", "opencv-python-headless", "pydensecrf2",
             "scikit-image", "platformdirs", "gradio"):
    try:
        print(f"  - {name} {version(name)}")
    except PackageNotFoundError:
        print(f"  - {name}: missing")
EOF

# 2. the CUDA test layer
TESTS="tests/test_device.py tests/features/test_extractor_oom.py tests/web/serving/test_zerogpu.py tests/features/test_rope.py tests/ops/test_refine.py tests/features/test_images_pixels.py
       tests/ops/test_host.py tests/scale/test_store.py::test_a_shard_from_the_device_is_read_back"
if [ $DRY = 1 ]; then
    step "tests (CPU, dry run: collect the layer, run tests/features/test_rope.py)" 300 "$OUT/tests.txt" \
        env VITDENSE_TEST_DEVICE=cpu $PY -m pytest -q -p no:cacheprovider --co $TESTS
    step "tests/features/test_rope.py" 300 "$OUT/tests.txt" env VITDENSE_TEST_DEVICE=cpu \
        $PY -m pytest -q -p no:cacheprovider -rs tests/features/test_rope.py
else
    step "CUDA test layer" 240 "$OUT/tests.txt" env VITDENSE_TEST_DEVICE=cuda \
        $PY -m pytest -q -p no:cacheprovider -rs --durations=10 $TESTS
fi
# one line on whether the layer passed: pytest's exit status and its own last line
LAST=$(grep -E "[0-9]+ (passed|failed|error)" "$OUT/tests.txt" 2>/dev/null | tail -1)
LAYER=$([ $DRY = 1 ] && echo "CPU dry run of the test layer" || echo "CUDA test layer")
if [ "$STEP_RC" = 0 ]; then
    echo "- **$LAYER: PASSED** ($LAST)" >>"$SUMMARY"
else
    echo "- **$LAYER: FAILED** (exit $STEP_RC; ${LAST:-no pytest summary}; see tests.txt)" >>"$SUMMARY"
fi

# 3. benchmarks: the issue's targets, extraction, applications, pair selection
if [ $DRY = 1 ]; then
    step "bench_gpu.py --dry-run" 300 "$OUT/targets.md" $PY bench/bench_gpu.py --device cpu --dry-run --refiner torch \
        --profile 5
    for s in bench_extract bench_apps bench_selection bench_host_prep; do  # arguments and imports only
        step "$s.py --help" 60 "$OUT/extract.md" $PY bench/$s.py --help
    done
else
    # targets: one image, batch, pair, the raw-forward ceiling + ratio + FLOP utilisation, extract-dataset,
    # co-segmentation and parts of 10 images with the torch refinement (refiner auto on CUDA)
    step "targets fp32" 150 "$OUT/targets.md" $PY bench/bench_gpu.py --device cuda --dtype fp32 --repeats 5
    # bf16 also profiles one run of each application: where their "other" time goes
    step "targets bf16" 120 "$OUT/targets.md" $PY bench/bench_gpu.py --device cuda --dtype bf16 --repeats 5 \
        --profile 20
    step "ceiling fp16" 45 "$OUT/targets.md" $PY bench/bench_gpu.py --device cuda --dtype fp16 --repeats 5 \
        --only one,ceiling
    step "extract fp32" 75 "$OUT/extract.md" $PY bench/bench_extract.py --device cuda --dtype fp32 \
        --no-baseline --repeats 10 --rows forward,key9bin,saliency,key9bin+sal
    step "extract bf16" 45 "$OUT/extract.md" $PY bench/bench_extract.py --device cuda --dtype bf16 \
        --no-baseline --repeats 10 --rows key9bin,key9bin+sal
    # the PIL-free input path: host preparation (PIL / arrays / tensors / JPEG decode on the device) and
    # extract / raw forward for array, tensor and JPEG inputs, 256 images in bf16
    step "host preparation bf16" 40 "$OUT/extract.md" $PY bench/bench_host_prep.py --device cuda --dtype bf16 \
        --extract-images 256 --repeats 3
    step "apps fp32" 100 "$OUT/apps.md" $PY bench/bench_apps.py --device cuda --dtype fp32 --repeats 3
    step "pair selection" 60 "$OUT/selection.md" $PY bench/bench_selection.py --device cuda \
        ${CKPT:+--checkpoint "$CKPT"}
    # last, when time is left: the CPU refinements (GrabCut, pydensecrf: built here) beside the torch one
    if compgen -G ".gpu/sdist/pydensecrf2-*.tar.gz" >/dev/null \
            && [ $((DEADLINE - $(date +%s))) -ge "${GPU_CHECK_CRF_S:-150}" ]; then
        step "build pydensecrf2 (CRF)" 100 "$LOG" $PY -m pip install -q --no-index --no-deps \
            --no-build-isolation --no-cache-dir --target "$SITE" .gpu/sdist/pydensecrf2-*.tar.gz
        step "apps, CPU refinement (comparison)" 60 "$OUT/targets.md" $PY bench/bench_gpu.py --device cuda \
            --dtype bf16 --repeats 3 --only apps --refiner cpu
    else
        echo "- CPU-refinement comparison: skipped (pydensecrf2 build needs ${GPU_CHECK_CRF_S:-150} s)" >>"$SUMMARY"
    fi
fi
echo "- total $(($(date +%s) - T0)) s; files: $(ls "$OUT" | tr '\n' ' ')" >>"$SUMMARY"
cat "$SUMMARY"
tail -3 "$OUT/tests.txt" 2>/dev/null
