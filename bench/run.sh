#!/usr/bin/env bash
# One command for the benchmark report: builds helix (scripts/build.sh), installs the
# peers' environment (.venv-bench: bench/requirements.txt), runs helix_bench, the PyTorch
# peers and helix from Python (bench/python_peers.py) with the same thread count, and
# writes bench/results/<date>/report.md and report.png (plus the raw JSON). Usage:
# bench/run.sh [regex on the row names, for helix_bench and the peers alike]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
filter="${1:-.}"
"$root/scripts/build.sh"
venv="$root/.venv-bench"
[[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$root/bench/requirements.txt"

out="$root/bench/results/$(date -u +%Y-%m-%d)"
mkdir -p "$out"
threads=$(nproc)
"$root/build/bench/helix_bench" --benchmark_filter="$filter" --benchmark_out="$out/helix.json" \
    --benchmark_out_format=json
"$venv/bin/python" "$root/bench/peers.py" --threads "$threads" --filter "$filter" --tag own_alloc --out "$out/peers_own_alloc.json"
# glibc keeps freed blocks instead of unmapping them: no page faults on re-allocation.
MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=1073741824 \
    "$venv/bin/python" "$root/bench/peers.py" --threads "$threads" --filter "$filter" --tag reused_memory \
    --out "$out/peers_reused_memory.json"
# helix from Python (.venv: the package scripts/build.sh installed, and the peers of
# tests/python/requirements.txt): the binding's cost and the HF / rotary-embedding-torch peers.
if [[ "$filter" == "." || "python" =~ $filter ]]; then
    "$root/.venv/bin/python" "$root/bench/python_peers.py" --threads "$threads" --out "$out" --helix-json "$out/helix.json"
fi
"$venv/bin/python" "$root/bench/report.py" "$out"
