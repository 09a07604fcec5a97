#!/usr/bin/env bash
# The GPU checks of nos in one go: the CUDA tests, then tools/bench_step.py and
# tools/bench_gpu.py on CUDA. Logs and figures go to $OUT (default: gpu-check-out/).
#
#   tools/gpu_check.sh prepare   # where a package index is reachable: wheels of the
#                                # dependencies a GPU image may lack, into .gpu-wheels/
#   tools/gpu_check.sh           # on the GPU machine (with .gpu-wheels/ beside it if it
#                                # has no package index)
#
# The machine's own torch (a CUDA build) is used: the virtual environment sees the image's
# packages, only what the image lacks is installed into it, and nos runs from this checkout
# (PYTHONPATH), so setup.cfg's CPU torch pin does not apply. Each phase has its own time limit (seconds, overridable) and writes as it
# goes, so a phase cut short keeps what it measured; the whole script fits in ~9 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=${WHEELS:-.gpu-wheels}
DEPS="deap moocore cffi pycparser platformdirs multiprocess dill"  # not in the CUDA image

if [ "${1:-}" = prepare ]; then
    exec "$PY" -m pip download -q --only-binary=:all: --python-version "${GPU_PYTHON:-3.12}" \
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux_2_28_x86_64 --platform any --no-deps -d "$WHEELS" $DEPS
fi

OUT=${OUT:-gpu-check-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

"$PY" -m venv --system-site-packages .venv-gpu
V=.venv-gpu/bin/python
# The image's python3 may itself be a virtual environment, whose packages (torch) a venv
# made from it would not see: a .pth file puts them on the path.
"$PY" -c 'import site; print("\n".join(site.getsitepackages()))' \
    >"$($V -c 'import site; print(site.getsitepackages()[0])')/image-packages.pth"
if [ -d "$WHEELS" ]; then
    $V -m pip install -q --no-index --no-deps --find-links "$WHEELS" $DEPS
else
    $V -m pip install -q $DEPS
fi

{
    nvidia-smi || true
    $V -c "import torch, nos; print('torch', torch.__version__, 'cuda', torch.version.cuda,
 'gpus', torch.cuda.device_count(), torch.cuda.get_device_name(0)); print('nos', nos.__file__)"
} 2>&1 | tee "$OUT/env.txt"

# 1. the tests that touch the device (the CUDA ones skip nowhere here)
timeout "${TESTS_S:-150}" $V -m pytest -q -p no:cacheprovider -rs \
    -W ignore::DeprecationWarning -W ignore::FutureWarning -W ignore::UserWarning \
    tests/test_fast.py tests/test_device.py tests/test_torch_backend.py tests/test_images.py \
    tests/test_pinning.py 2>&1 | tee "$OUT/tests.log"

# 2. the candidate step at 5M parameters against torch.optim.Adam(fused=True) (goal <= 1.2x)
timeout "${STEP_S:-90}" $V tools/bench_step.py --devices cuda --sizes 5000000 --steps 20 \
    2>&1 | tee "$OUT/bench_step.log"

# 3. step rate and one paper-preset evaluation per step path (cold, warm), determinism's cost
DATA=$(mktemp -d)
timeout "${LATENCY_S:-200}" $V tools/bench_gpu.py --only rate,latency --data-dir "$DATA" \
    --paths "${PATHS:-eager,fast,fast-bf16,fast-compiled}" --json "$OUT/latency.json" \
    2>&1 | tee "$OUT/latency.log"

# 4. evaluations per GPU-hour with K packed workers (shorter final runs, extrapolated)
timeout "${PACK_S:-110}" $V tools/bench_gpu.py --only packing --data-dir "$DATA" \
    --ks "${KS:-1,4,8}" --pack-paths "${PACK_PATHS:-fast,eager}" --pack-evals 1 \
    --pack-final-epochs "${PACK_EPOCHS:-4}" --json "$OUT/packing.json" 2>&1 | tee "$OUT/packing.log"
rm -rf "$DATA"
echo "figures in $OUT"
