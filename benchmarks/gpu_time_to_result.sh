#!/usr/bin/env bash
# Time to result on a GPU: the quickstart and the MNIST-1D CNN, jaxnas against NePS + PyTorch
# on the same GPU, as one prepared command for a lent GPU machine (issue 13).
#
# Usage, from the repository root of a machine with a CUDA GPU, JAX with CUDA and PyTorch:
#     OUT=/some/folder bash benchmarks/gpu_time_to_result.sh [wheel folder]
# The optional wheel folder holds what the machine lacks and cannot download; they are
# installed into /tmp/site, first on PYTHONPATH. For the lent H200 image (jax 0.11.2, torch
# 2.11, botorch 0.18, no NePS), fetched here with `pip download --no-deps --only-binary=:all:
# --python-version 3.12 --platform manylinux_2_17_x86_64 -d .whl ...`:
#     neural-pipeline-search==0.17.0 ifbo==0.4.1 submitit==1.5.4 more-itertools==11.2.1
#     botorch==0.12.0 gpytorch==1.13 pyro-ppl==1.9.2 pyro-api==0.1.2 mnist1d==0.0.2.post1
# (NePS 0.17 imports botorch at import time, and botorch 0.12 needs pyro.) Each step has its own time limit, so a step that fails or hangs leaves the
# others' figures. Writes, under $OUT: the two time_to_result JSONs, their logs, a cProfile
# of a cold jaxnas quickstart with JAX's compilation log, and a second quickstart seed when time is left.
set -uo pipefail
OUT=${OUT:?set OUT to a folder for the results}
export PYTHONUNBUFFERED=1
if [ -n "${1:-}" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$1"/*.whl || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

step() {  # step NAME SECONDS COMMAND...: runs, logs to $OUT/NAME.log, times
    local name=$1 limit=$2; shift 2
    echo "=== $name (limit ${limit} s) ==="
    local start=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log" | grep -vE "^\s*$|Warning|warn\(|^WARNING:jax" | tail -25
    echo "=== $name: exit ${PIPESTATUS[0]} after $((SECONDS - start)) s ==="
}

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv
python3 - <<'EOF'
import jax, torch, flax, optax, orbax.checkpoint as ocp
print("jax", jax.__version__, jax.devices(), "| flax", flax.__version__, "| optax",
      optax.__version__, "| torch", torch.__version__, torch.cuda.is_available())
import neps, mnist1d  # noqa: F401  the peers' side is importable
print("neps importable; cpus", __import__("os").cpu_count())
EOF
[ $? -eq 0 ] || { echo "a package is missing: nothing timed"; exit 3; }

DEVICE=${NEPS_DEVICE:-cuda}  # NEPS_DEVICE=cpu and BUDGET="--max-fidelity-spent 27": a dry run
step quickstart 200 python3 benchmarks/time_to_result.py --neps-device "$DEVICE" \
    --torch-threads 8 --seeds 0 ${BUDGET:-} --out "$OUT/time_to_result_gpu.json"
step mnist1d 180 python3 benchmarks/time_to_result.py --example mnist1d --neps-device "$DEVICE" \
    --torch-threads 8 --seeds 0 ${BUDGET:-} --out "$OUT/time_to_result_mnist1d_gpu.json"
# Where a cold jaxnas run spends its time on the GPU: host profile and every compilation.
rm -rf /tmp/profile_cache
step profile 80 env JAXNAS_COMPILATION_CACHE=/tmp/profile_cache JAX_LOG_COMPILES=1 \
    PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" \
    python3 -m cProfile -o "$OUT/quickstart_cold_gpu.prof" examples/quickstart.py ${BUDGET:-}
step quickstart_seed1 200 python3 benchmarks/time_to_result.py --neps-device "$DEVICE" \
    --torch-threads 8 --seeds 1 ${BUDGET:-} --out "$OUT/time_to_result_gpu_seed1.json"
