#!/usr/bin/env bash
# Builds helix (scripts/build.sh) and runs the whole test suite with ctest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/build.sh"
export PATH="$root/.venv/bin:$PATH"
cd "$root"
ctest --preset default
