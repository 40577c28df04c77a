#!/usr/bin/env bash
# One command for the benchmark report: builds helix (scripts/build.sh) and helix_bench with
# ggml's rope as a peer (the pinned ggml-python sdist, downloaded once into build/_deps),
# installs the peers' environment (.venv-bench: bench/requirements.txt), runs helix_bench,
# the PyTorch peers and helix from Python (bench/python_peers.py) with the same thread
# count, and writes bench/results/<date>/report.md, report.png and variants.png (plus the
# raw JSON). Usage:
# bench/run.sh [regex on the row names, for helix_bench and the peers alike]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
filter="${1:-.}"
"$root/scripts/build.sh"
# ggml's rope as a peer of helix_bench (bench/CMakeLists.txt: HELIX_GGML_SOURCE_DIR): the
# ggml sources vendored by this exact ggml-python sdist, checked against its sha256. pip
# prepares the sdist's metadata with .venv's scikit-build-core (no build isolation: nothing
# more to download).
ggml_version=0.0.45
ggml_sha256=10aac52075cf3c7ef2b00d6c35b1c23f7b018dbeff8ae8df67339b4be1166f05
ggml_cache="$root/build/_deps/ggml-python-$ggml_version"
ggml_src="$ggml_cache/ggml_python-$ggml_version"
if [[ ! -d "$ggml_src" ]]; then
    mkdir -p "$ggml_cache"
    rm -f "$ggml_src.tar.gz"
    "$root/.venv/bin/python" -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
        --no-build-isolation "ggml-python==$ggml_version" -d "$ggml_cache"
    echo "$ggml_sha256  $ggml_src.tar.gz" | sha256sum --check --quiet
    extract="$(mktemp -d "$ggml_cache/extract.XXXXXX")"  # moved into place whole
    tar -xzf "$ggml_src.tar.gz" -C "$extract"
    mv "$extract/ggml_python-$ggml_version" "$ggml_src"
    rmdir "$extract"
fi
PATH="$root/.venv/bin:$PATH" cmake -S "$root" -B "$root/build" -DHELIX_GGML_SOURCE_DIR="$ggml_src" >/dev/null
PATH="$root/.venv/bin:$PATH" cmake --build "$root/build" --target helix_bench
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
