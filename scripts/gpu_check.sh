#!/usr/bin/env bash
# The ready GPU script. On a machine with an NVIDIA GPU and no network it runs the CUDA
# test suite and the CUDA benchmarks (helix_bench_cuda: tuned and Anderson2021 kernels,
# with the PyTorch peers when python3's torch sees the GPU) and prints one summary; well
# under 5 minutes. Two ways to get the binaries there:
#   scripts/gpu_check.sh                 builds them there: needs CMake >= 3.28, a C++
#                                        compiler, GoogleTest and Google Benchmark, and
#                                        Halide (.venv from scripts/setup.sh, or offline
#                                        HELIX_HALIDE_WHEEL=/path/halide-21.0.0-*.whl);
#   scripts/gpu_check.sh --pack DIR      (here) builds and packs them, self-contained, into
#                                        DIR (binaries, libbenchmark, golden arrays, PTX);
#   scripts/gpu_check.sh --prebuilt DIR  (there) runs a packed DIR: needs only the driver.
# Results go to $OUT (or <build>/results): logs, helix.json, peers_own_alloc.json.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${HELIX_GPU_BUILD:-$root/build-gpu}"
mode="${1:-build}"
cd "$root"

build_binaries() {
    if [[ ! -x .venv/bin/python ]] || ! .venv/bin/python -c "import halide" 2>/dev/null; then
        python3 -m venv .venv
        .venv/bin/python -m pip install -q --no-index --no-deps "${HELIX_HALIDE_WHEEL:?no .venv with Halide: set HELIX_HALIDE_WHEEL}"
    fi
    export PATH="$root/.venv/bin:$PATH"  # the venv's cmake and ninja, when it has them
    local gen=()
    command -v ninja > /dev/null && gen=(-G Ninja)
    cmake "${gen[@]}" -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DHELIX_CROSS_ARCHS= -DHELIX_KERNEL_ONLY_TARGETS= \
        -DHELIX_BUILD_DEMO=OFF > "$out/configure.log"
    cmake --build "$build" --parallel --target helix_cuda_tests helix_bench_cuda helix_ptx > "$out/build.log"
}

case "$mode" in
--pack)
    pack="${2:?usage: scripts/gpu_check.sh --pack DIR}"
    out="$build/results" && mkdir -p "$out" "$pack"
    build_binaries
    cp "$build/tests/helix_cuda_tests" "$build/bench/helix_bench_cuda" "$pack/"
    cp -r tests/golden "$pack/golden"
    cp "$build"/runtime/helix_*_cuda.device_code "$pack/"
    cp "$(ldd "$build/bench/helix_bench_cuda" | awk '/libbenchmark/ {print $3}')" "$pack/"
    echo "packed into $pack: $(ls "$pack" | tr '\n' ' ')"
    exit 0
    ;;
--prebuilt)
    bin="$(cd "${2:?usage: scripts/gpu_check.sh --prebuilt DIR}" && pwd)"
    out="${OUT:-$bin/results}" && mkdir -p "$out"
    tests=("$bin/helix_cuda_tests")
    bench="$bin/helix_bench_cuda"
    export HELIX_GOLDEN_DIR="$bin/golden" LD_LIBRARY_PATH="$bin:${LD_LIBRARY_PATH:-}"
    ptx=("$bin"/*.device_code)
    ;;
*)
    out="${OUT:-$build/results}" && mkdir -p "$out"
    build_binaries
    tests=("$build/tests/helix_cuda_tests")
    bench="$build/bench/helix_bench_cuda"
    ptx=("$build"/runtime/helix_*_cuda.device_code)
    ;;
esac
start=$(date +%s)

set +e
"${tests[0]}" > "$out/tests.log" 2>&1
tests_rc=$?
ptxas_status="no ptxas"
if ptxas=$(command -v ptxas || ls /usr/local/cuda/bin/ptxas 2>/dev/null); then
    ptxas_status="ptxas sm_90: ok"
    for f in "${ptx[@]}"; do "$ptxas" --gpu-name sm_90 "$f" -o /dev/null || ptxas_status="ptxas sm_90: FAILED on $f"; done
fi
"$bench" --benchmark_out="$out/helix.json" --benchmark_out_format=json > "$out/bench.log" 2>&1
bench_rc=$?
if python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    python3 bench/peers.py --device cuda --tag own_alloc --out "$out/peers_own_alloc.json" > "$out/peers.log" 2>&1
fi
set -e

echo "== helix GPU check on $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi')"
echo "tests and benchmarks: $(($(date +%s) - start)) s; $ptxas_status"
echo "CUDA suite (exit $tests_rc): $(grep -E '^\[  (PASSED|FAILED)  \]|^\[SKIP\]' "$out/tests.log" | tr '\n' ' ')"
if [[ -s "$out/helix.json" ]]; then
    python3 - "$out" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
rows = json.loads((out / "helix.json").read_text())["benchmarks"]
peers = {}
p = out / "peers_own_alloc.json"
if p.exists():
    for b in json.loads(p.read_text())["benchmarks"]:
        k, v, s, t = b["name"].split("/")[:4]
        peers.setdefault((k, s), {})[v] = b["real_time"]
print(f"{'benchmark':60} {'ms':>9} {'GB/s':>8} {'%copy':>6}  vs torch eager / compile")
for b in rows:
    if b.get("error_occurred"):
        print(f"{b['name'][:60]:60} error: {b.get('error_message', '')[:60]}")
        continue
    k, v, s, t = b["name"].split("/")[:4]
    ms = b["real_time"]
    vs = peers.get((k, s), {})
    extra = " / ".join(f"{vs[p] / ms:.2f}x" for p in ("torch_eager_own_alloc", "torch_compile_own_alloc") if p in vs)
    print(f"{'/'.join((k, v, s, t)):60} {ms:9.3f} {b['bytes_per_second'] / 1e9:8.1f} {b.get('pct_of_copy', 0):6.1f}  {extra}")
PY
else
    tail -3 "$out/bench.log"
fi
exit $tests_rc
