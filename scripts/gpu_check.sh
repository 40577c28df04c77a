#!/usr/bin/env bash
# The ready GPU script. On a machine with an NVIDIA GPU and no network it runs the CUDA
# test suite and the CUDA benchmarks (helix_bench_cuda: tuned and Anderson2021 kernels,
# with the PyTorch peers when python3's torch sees the GPU), compute-sanitizer's memcheck,
# and prints one summary. Two ways to get the binaries there:
#   scripts/gpu_check.sh                 builds them there: needs CMake >= 3.28, a C++
#                                        compiler, GoogleTest and Google Benchmark, and
#                                        Halide (.venv from scripts/setup.sh, or offline
#                                        HELIX_HALIDE_WHEEL=/path/halide-21.0.0-*.whl);
#   scripts/gpu_check.sh --pack DIR      (here) builds and packs them, self-contained, into
#                                        DIR (binaries, libbenchmark, libstdc++, golden
#                                        arrays, PTX);
#   scripts/gpu_check.sh --prebuilt DIR  (there) runs a packed DIR: needs only the driver.
# Results go to $OUT (or <build>/results): logs, tests.json, helix.json, peers_*.json and
# summary.txt (the table and the verdicts). Exit status: the suite's, else 1 when ptxas or
# memcheck failed or the benchmark crashed.
# Each stage has a time limit (seconds, overridable) so that the whole check ends inside
# a lease: HELIX_GPU_LIMITS="tests bench eager compile sanitize" (default 120 200 60 80 60:
# at most 520 s, 358 s on an H200; 0 skips a stage). torch.compile runs on
# HELIX_GPU_COMPILE_FILTER's rows only.
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
    # A build folder already configured (HELIX_GPU_BUILD=build, say) is used as it is.
    [[ -f "$build/CMakeCache.txt" ]] || cmake "${gen[@]}" -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DHELIX_CROSS_ARCHS= -DHELIX_KERNEL_ONLY_TARGETS= \
        -DHELIX_BUILD_DEMO=OFF > "$out/configure.log"
    cmake --build "$build" --parallel --target helix_cuda_tests helix_bench_cuda helix_ptx > "$out/build.log"
}

runner=(env)  # what runs the binaries (--prebuilt: with the bundle's libraries)
case "$mode" in
--pack)
    pack="${2:?usage: scripts/gpu_check.sh --pack DIR}"
    out="$build/results" && mkdir -p "$out" "$pack"
    build_binaries
    cp "$build/tests/helix_cuda_tests" "$build/bench/helix_bench_cuda" "$pack/"
    strip "$pack/helix_cuda_tests" "$pack/helix_bench_cuda"
    cp -r tests/golden "$pack/golden"
    cp "$build"/runtime/helix_*_cuda.device_code "$pack/"
    # Google Benchmark and this compiler's C++ runtime travel with the binaries.
    cp $(ldd "$build/bench/helix_bench_cuda" | awk '/libbenchmark|libstdc\+\+/ {print $3}') "$pack/"
    echo "packed into $pack: $(ls "$pack" | tr '\n' ' ')"
    exit 0
    ;;
--prebuilt)
    bin="$(cd "${2:?usage: scripts/gpu_check.sh --prebuilt DIR}" && pwd)"
    out="${OUT:-$bin/results}" && mkdir -p "$out"
    tests=("$bin/helix_cuda_tests")
    bench="$bin/helix_bench_cuda"
    export HELIX_GOLDEN_DIR="$bin/golden"
    # The bundle's libraries for its binaries only (not for python3 and torch).
    runner=(env "LD_LIBRARY_PATH=$bin:${LD_LIBRARY_PATH:-}")
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
read -r t_tests t_bench t_eager t_compile t_sanitize <<< "${HELIX_GPU_LIMITS:-}"
t_tests=${t_tests:-120} t_bench=${t_bench:-200} t_eager=${t_eager:-60} t_compile=${t_compile:-80}
t_sanitize=${t_sanitize:-60}
compile_filter="${HELIX_GPU_COMPILE_FILTER:-prefill_4096/|decode_1_of_4096/|b1_|b64_|mixed_}"
# limited SECONDS LOG CMD...: CMD under a time limit (0: not run), its output in LOG.
limited() {
    local limit=$1 log=$2
    shift 2
    if [[ $limit == 0 ]]; then echo "not run" > "$log"; return 0; fi
    timeout --kill-after=5 "$limit" "$@" > "$log" 2>&1
}

set +e
limited "$t_tests" "$out/tests.log" "${runner[@]}" "${tests[0]}" --gtest_output="json:$out/tests.json"
tests_rc=$?
ptxas_status="no ptxas"
if ptxas=$(command -v ptxas || ls /usr/local/cuda/bin/ptxas 2>/dev/null); then
    ptxas_status="ptxas sm_90: ok"
    for f in "${ptx[@]}"; do "$ptxas" --gpu-name sm_90 "$f" -o /dev/null || ptxas_status="ptxas sm_90: FAILED on $f"; done
fi
limited "$t_bench" "$out/bench.log" "${runner[@]}" "$bench" --benchmark_out="$out/helix.json" --benchmark_out_format=json
bench_rc=$?
peers_status="no torch with CUDA"
if python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    limited "$t_eager" "$out/peers_eager.log" python3 bench/peers.py --device cuda --no-compile --tag own_alloc \
        --out "$out/peers_eager.json"
    eager_rc=$?
    limited "$t_compile" "$out/peers_compile.log" python3 bench/peers.py --device cuda --tag own_alloc \
        --filter "torch_compile.*($compile_filter)" --out "$out/peers_compile.json"
    peers_status="torch eager exit $eager_rc, torch.compile exit $? (124: its time limit)"
fi
# compute-sanitizer's memcheck on in-place rows of every storage type, on the tests that
# put positions at the table's edges and beyond, and on every table form and position
# mode: no access outside any buffer.
sanitize_status="no compute-sanitizer"
if sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null); then
    limited "$t_sanitize" "$out/memcheck.log" "${runner[@]}" "$sanitizer" --tool memcheck --error-exitcode 3 "${tests[0]}" \
        --gtest_filter='*EveryPositionModeTableFormAndDirection*:*InPlaceEqualsOutOfPlace*:*PositionsOutsideTheTable*:*BadPositionsLeaveOutputsUntouched*:*Varlen*'
    memcheck_rc=$?
    sanitize_status="memcheck exit $memcheck_rc ($(grep -m1 -E 'ERROR SUMMARY|^not run' "$out/memcheck.log" || echo 'no summary'))"
fi
set -e

if [[ -s "$out/helix.json" ]]; then
    python3 - "$out" <<'PY' | tee "$out/summary.txt" || echo "(the summary table failed: see helix.json)"
import json, pathlib, re, sys
out = pathlib.Path(sys.argv[1])
try:
    rows = json.loads((out / "helix.json").read_text())["benchmarks"]
except ValueError:  # the bench stopped at its time limit: its console rows are in bench.log
    sys.exit(print("".join((out / "bench.log").read_text().splitlines(True)[-40:])))
# The peers' rows as they printed them ("name: 1.234 ms"), so that a stage stopped at its
# time limit still counts. Keyed by (kind, form, shape, dtype): form "" is the plain rotation.
peers = {}
for log in ("peers_eager.log", "peers_compile.log"):
    f = out / log
    for m in re.finditer(r"^(\S+): ([0-9.]+) ms$", f.read_text() if f.exists() else "", re.M):
        k, v, s, t = m.group(1).split("/")[:4]
        peer = "compile" if v.startswith("torch_compile") else "eager"
        form = re.sub(r"^torch_(eager|compile)_?|_?own_alloc$", "", v)
        peers.setdefault((k, form, s, t), {})[peer] = float(m.group(2))
print(f"{'benchmark':64} {'ms':>9} {'GB/s':>8} {'%copy':>6}  torch eager / compile time over helix's")
for b in rows:
    if b.get("error_occurred"):
        print(f"{b['name'][:64]:64} error: {b.get('error_message', '')[:60]}")
        continue
    k, v, s, t = b["name"].split("/")[:4]
    ms = b["real_time"] * {"s": 1e3, "us": 1e-3, "ns": 1e-6}.get(b.get("time_unit"), 1)
    form = re.sub(r"^cuda(_anderson2021)?_?", "", v)
    vs = peers.get((k, form, s, t), {})
    extra = " / ".join(f"{vs[p] / ms:.2f}x" if p in vs else "-" for p in ("eager", "compile"))
    print(f"{'/'.join((k, v, s, t)):64} {ms:9.4f} {b['bytes_per_second'] / 1e9:8.1f} {b.get('pct_of_copy', 0):6.1f}  {extra}")
PY
else
    tail -3 "$out/bench.log"
fi
# The verdicts last (the end of the output is what a lease's reply carries), kept in
# summary.txt with the table.
{
    echo "== helix GPU check on $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi')"
    echo "tests and benchmarks: $(($(date +%s) - start)) s; $ptxas_status; bench exit $bench_rc; $peers_status"
    echo "$sanitize_status"
    echo "CUDA suite (exit $tests_rc): $(grep -E '^\[  (PASSED|FAILED|SKIPPED) +\]|^\[SKIP\]' "$out/tests.log" | tr '\n' ' ')"
    grep -B3 -A12 -m6 -E '^\[  FAILED  \]|Failure$' "$out/tests.log" | cut -c1-200 | head -60 || true
} | tee -a "$out/summary.txt"
if [[ $tests_rc != 0 ]]; then exit $tests_rc; fi
[[ $ptxas_status == *FAILED* || ${memcheck_rc:-0} != 0 || ($bench_rc != 0 && $bench_rc != 124) ]] && exit 1
exit 0
