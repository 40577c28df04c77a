#!/usr/bin/env bash
# Sets up (scripts/setup.sh), configures and builds helix with the default preset:
# libhelix.a, helix_demo and the tests, in build/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/setup.sh"
export PATH="$root/.venv/bin:$PATH"  # the pinned cmake and ninja
cd "$root"
cmake --preset default
cmake --build --preset default
