# Cross toolchain for Debian's <arch>-linux-gnu compilers, running programs under
# qemu-user. Pass -DHELIX_CROSS_ARCH=aarch64 (or riscv64, ...) with this file.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR ${HELIX_CROSS_ARCH})
set(triple ${HELIX_CROSS_ARCH}-linux-gnu)

set(CMAKE_C_COMPILER ${triple}-gcc)
set(CMAKE_CXX_COMPILER ${triple}-g++)
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-${HELIX_CROSS_ARCH} -L /usr/${triple})
if (HELIX_CROSS_ARCH STREQUAL "riscv64")
    # The RISC-V kernels use RVV with 128-bit vectors (HELIX_TARGETS): emulate a CPU with it.
    list(APPEND CMAKE_CROSSCOMPILING_EMULATOR -cpu rv64,v=true,vlen=128,vext_spec=v1.0)
endif ()

set(CMAKE_FIND_ROOT_PATH /usr/${triple})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
# Keep HELIX_CROSS_ARCH visible to try_compile projects.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES HELIX_CROSS_ARCH)
