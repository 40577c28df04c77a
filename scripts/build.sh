#!/usr/bin/env bash
# Sets up (scripts/setup.sh), configures and builds helix with the default preset:
# libhelix.a, helix_demo, the tests and the Python package, in build/; then installs the
# Python package into .venv with pip (pyproject.toml), reusing that build (nothing rebuilt).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
export PATH="$root/.venv/bin:$PATH"  # the pinned cmake and ninja
cd "$root"
cmake --preset default
cmake --build --preset default
.venv/bin/python -m pip install -q --disable-pip-version-check --no-build-isolation --no-deps -C build-dir=build .
