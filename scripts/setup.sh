#!/usr/bin/env bash
# Installs what helix needs to build and test: Debian packages (as root; otherwise it says
# which are missing) and a project-local virtual environment (.venv) with the pinned
# toolchain of requirements.txt. Safe to run again; needs the network only when something
# is missing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# g++ builds everything; python3-dev and nanobind (.venv) the Python package; DLPack's header
# is the C ABI's tensor type; GoogleTest (googletest: its sources, built for cross targets) and
# Google Benchmark are Debian's; python3-venv makes .venv; the cross compilers and qemu-user
# build and run the AArch64 and RISC-V suites; PoCL runs the OpenCL kernels on the CPU;
# clang with its sanitizer and libFuzzer runtimes (libclang-rt-14-dev) and llvm's
# symbolizer build and report the sanitizer builds (cmake/HelixSanitizers.cmake).
packages=(g++ python3 python3-venv python3-dev libdlpack-dev libgtest-dev googletest libbenchmark-dev
          g++-aarch64-linux-gnu g++-riscv64-linux-gnu qemu-user pocl-opencl-icd ocl-icd-libopencl1
          clang libclang-rt-14-dev llvm)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]]; then
        echo "setup: installing Debian packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    else
        echo "setup: missing Debian packages: ${missing[*]}" >&2
        echo "setup: run as root, or: sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
fi

# qemu 7.2 (bookworm's own) aborts translating RVV code whose floating-point rounding mode
# changes inside a translation block (decode_save_opc assertion), depending on where the
# code happens to lie: the RISC-V suite then crashes on some builds and not others.
# bookworm-backports has a qemu without it; cmake/HelixCross.cmake refuses older ones.
qemu_major() { qemu-riscv64 --version 2>/dev/null | sed -n 's/^qemu-riscv64 version \([0-9]*\).*/\1/p'; }
if [[ $(qemu_major) -lt 8 ]]; then
    if [[ $(id -u) -eq 0 ]] && grep -q bookworm /etc/os-release; then
        echo "setup: installing qemu-user from bookworm-backports (qemu $(qemu_major) is too old)"
        echo "deb http://deb.debian.org/debian bookworm-backports main" >/etc/apt/sources.list.d/bookworm-backports.list
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -t bookworm-backports qemu-user
    else
        echo "setup: qemu-user $(qemu_major) is older than 8: the AArch64 and RISC-V suites will be skipped" >&2
    fi
fi

venv="$root/.venv"
if [[ ! -x "$venv/bin/python" ]]; then
    echo "setup: creating $venv"
    python3 -m venv "$venv"
fi
# With every pin already satisfied pip does not touch the network.
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$root/requirements.txt" \
    -r "$root/tests/python/requirements.txt"
echo "setup: Halide $("$venv/bin/python" -m pip show halide | sed -n 's/^Version: //p') at $("$venv/bin/python" -c 'import halide; print(halide.install_dir())')"
