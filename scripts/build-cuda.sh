#!/usr/bin/env bash
# Builds the CUDA-enabled binary (candle-core/cuda, CUDA 13.0, sm_90) on a
# CPU-only Debian 12 box using only PyPI wheels. No GPU / driver / CUDA toolkit needed.
# (From shared/tools/cuda, kept here so `just build-cuda` works from a clone.)
# usage: scripts/build-cuda.sh [cargo arguments]   (default: build --release --features cuda)
set -euo pipefail
ROOT=${ROOT:-$(pwd)}
VENV=${CUDA_VENV:-$ROOT/target/cuda-venv}
if [ ! -x "$VENV/bin/nvcc-ok" ]; then
  python3 -m venv "$VENV"
  # --no-deps + exact pins: nvidia-cuda-nvcc otherwise pulls the *latest* nvidia-nvvm
  # (13.5 -> PTX ISA 9.5, which ptxas 13.0 and driver 580 reject).
  "$VENV/bin/pip" install -q --no-deps \
    nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 \
    nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 nvidia-cuda-nvrtc==13.0.88 \
    nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35
  touch "$VENV/bin/nvcc-ok"
fi
CU=$("$VENV/bin/python" -c 'import sysconfig;print(sysconfig.get_paths()["purelib"])')/nvidia/cu13
# wheels ship only versioned sonames: add the dev symlinks the linker needs
for l in cublas cublasLt cudart nvrtc; do ln -sf "lib$l.so.13" "$CU/lib/lib$l.so"; done
ln -sf libcurand.so.10 "$CU/lib/libcurand.so"
# no wheel ships libcuda: generate a link stub (all entry points return CUDA_ERROR_NO_DEVICE)
CUDARC_SRC=$(cargo metadata --format-version 1 | python3 -c 'import json,sys,os;print(next(os.path.dirname(p["manifest_path"]) for p in json.load(sys.stdin)["packages"] if p["name"]=="cudarc"))')
bash "$(dirname "$0")/gen-cuda-stub.sh" "$CUDARC_SRC" "$CU/lib/stubs"
export CUDA_HOME=$CU CUDA_PATH=$CU PATH=$CU/bin:$PATH
export CUDA_COMPUTE_CAP=90 CUDARC_CUDA_VERSION=13000 CUDAFORGE_THREADS=${CUDAFORGE_THREADS:-$(nproc)}
if [ $# -eq 0 ]; then set -- build --release --features cuda; fi
cargo "$@"
# smoke test on the CPU box: stub driver + wheel libs -> must start and fall back to CPU
echo "LD_LIBRARY_PATH=$CU/lib/stubs:$CU/lib to run here"
