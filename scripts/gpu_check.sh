#!/usr/bin/env bash
# The ready GPU script: on a machine with an NVIDIA GPU, nvcc, CMake >= 3.28 and Ninja and
# no network, builds the CUDA archive's test suite and benchmark (nothing else), runs them
# and prints one summary; well under 5 minutes. Halide comes from .venv (scripts/setup.sh
# made it) or, offline, from the pinned wheel: HELIX_HALIDE_WHEEL=/path/halide-21.0.0-*.whl.
# With a CUDA-enabled torch on the machine, the PyTorch peers run in the same job.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${HELIX_GPU_BUILD:-$root/build-gpu}"
out="${OUT:-$build/results}"
mkdir -p "$out"
cd "$root"

if [[ ! -x .venv/bin/python ]] || ! .venv/bin/python -c "import halide" 2>/dev/null; then
    python3 -m venv .venv
    .venv/bin/python -m pip install -q --no-index --no-deps "${HELIX_HALIDE_WHEEL:?no .venv with Halide: set HELIX_HALIDE_WHEEL}"
fi
export PATH="$root/.venv/bin:$PATH"
start=$(date +%s)
cmake -G Ninja -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DHELIX_CROSS_ARCHS= -DHELIX_KERNEL_ONLY_TARGETS= \
    -DHELIX_BUILD_DEMO=OFF > "$out/configure.log"
cmake --build "$build" --target helix_cuda_tests helix_bench_cuda helix_ptx > "$out/build.log"
built=$(date +%s)

set +e
ctest --test-dir "$build" -R "^(helix_cuda_tests|ptxas_cuda_capability_.*)$" --output-on-failure > "$out/ctest.log" 2>&1
tests_rc=$?
"$build/bench/helix_bench_cuda" --benchmark_out="$out/helix.json" --benchmark_out_format=json > "$out/bench.log" 2>&1
bench_rc=$?
if python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    python3 bench/peers.py --device cuda --tag own_alloc --out "$out/peers_own_alloc.json" > "$out/peers.log" 2>&1
fi
set -e

echo "== helix GPU check on $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi')"
echo "build: $((built - start)) s; tests and benchmarks: $(($(date +%s) - built)) s"
grep -E "tests passed|Skipped|\[SKIP\]|FAILED" "$out/ctest.log" || true
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
    eager, comp = vs.get("torch_eager_own_alloc"), vs.get("torch_compile_own_alloc")
    extra = " / ".join(f"{p / ms:.2f}x" for p in (eager, comp) if p)
    print(f"{'/'.join((k, v, s, t)):60} {ms:9.3f} {b['bytes_per_second'] / 1e9:8.1f} {b.get('pct_of_copy', 0):6.1f}  {extra}")
PY
else
    tail -3 "$out/bench.log"
fi
exit $tests_rc
