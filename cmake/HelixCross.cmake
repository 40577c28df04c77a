# From the host build, the same project for other targets, with no file edited:
#  - HELIX_CROSS_ARCHS: whole builds (library, tests) with Debian's <arch>-linux-gnu
#    cross compilers (cmake/toolchains/linux-gnu-cross.cmake), reusing this build's
#    generator; their tests run under qemu-user and appear in this build's ctest as
#    <arch>/<test>. HELIX_TARGETS_<arch> overrides that build's HELIX_TARGETS.
#  - HELIX_KERNEL_ONLY_TARGETS: Halide targets with no toolchain here (Android, Windows):
#    each kernel's archive and header, checked by ctest.
include(ExternalProject)

set(HELIX_CROSS_ARCHS "aarch64;riscv64" CACHE STRING "Architectures built and tested under qemu")
set(HELIX_KERNEL_ONLY_TARGETS "arm-64-android;x86-64-windows" CACHE STRING "Halide targets built as kernels only")

set(HELIX_BUILT_CROSS_ARCHS "")
foreach (arch IN LISTS HELIX_CROSS_ARCHS)
    find_program(HELIX_${arch}_CXX ${arch}-linux-gnu-g++)
    find_program(HELIX_${arch}_QEMU qemu-${arch})
    # qemu 7.2 aborts on some RVV code depending on its address (scripts/setup.sh says why).
    set(qemu_version 0)
    if (HELIX_${arch}_QEMU)
        execute_process(COMMAND ${HELIX_${arch}_QEMU} --version OUTPUT_VARIABLE qemu_version)
        string(REGEX MATCH "version ([0-9.]+)" qemu_version "${qemu_version}")
        set(qemu_version "${CMAKE_MATCH_1}")
    endif ()
    if (NOT HELIX_${arch}_CXX OR NOT HELIX_${arch}_QEMU OR qemu_version VERSION_LESS 8)
        add_test(NAME ${arch}/unavailable COMMAND ${CMAKE_COMMAND} -E echo
                 "[SKIP] ${arch}-linux-gnu-g++ or qemu-${arch} >= 8 missing (scripts/setup.sh installs them)")
        set_tests_properties(${arch}/unavailable PROPERTIES SKIP_REGULAR_EXPRESSION "\\[SKIP\\]")
        continue ()
    endif ()
    list(APPEND HELIX_BUILT_CROSS_ARCHS ${arch})
    set(targets_arg "")
    if (DEFINED HELIX_TARGETS_${arch})
        set(targets_arg "-DHELIX_TARGETS=${HELIX_TARGETS_${arch}}")
    endif ()
    set(cross_dir ${PROJECT_BINARY_DIR}/cross/${arch})
    ExternalProject_Add(
        helix_${arch}
        SOURCE_DIR ${PROJECT_SOURCE_DIR}
        BINARY_DIR ${cross_dir}
        CMAKE_ARGS --toolchain ${PROJECT_SOURCE_DIR}/cmake/toolchains/linux-gnu-cross.cmake
                   -DHELIX_CROSS_ARCH=${arch}
                   -DCMAKE_BUILD_TYPE=${CMAKE_BUILD_TYPE}
                   -DCMAKE_MAKE_PROGRAM=${CMAKE_MAKE_PROGRAM}
                   -DHalideHelpers_DIR=${HalideHelpers_DIR}
                   -Dhelix-halide_generators_DIR=${PROJECT_BINARY_DIR}/cmake
                   -DHELIX_BUILD_TESTS=${HELIX_BUILD_TESTS}
                   -DHELIX_BUILD_DEMO=OFF
                   "${targets_arg}"
        BUILD_ALWAYS ON
        INSTALL_COMMAND ""
        DEPENDS helix_generators)
    install(CODE "execute_process(COMMAND \"${CMAKE_COMMAND}\" --install \"${cross_dir}\"
                                  --prefix \"\${CMAKE_INSTALL_PREFIX}/${arch}-linux-gnu\" COMMAND_ERROR_IS_FATAL ANY)")

    # The cross build's own tests (run through its qemu emulator), one by one.
    helix_dispatch_branches(${arch} branches)
    helix_assembly_checks(${arch} checks)
    list(TRANSFORM branches PREPEND helix_tests_)
    list(TRANSFORM checks REPLACE "\\|.*" "")
    list(TRANSFORM checks PREPEND assembly_apply_rotary_)
    if (HELIX_BUILD_TESTS)
        foreach (test IN ITEMS helix_tests ${branches} ${checks} decode_kernels_call_no_runtime)
            add_test(NAME ${arch}/${test}
                     COMMAND ${CMAKE_CTEST_COMMAND} --test-dir ${cross_dir} -R "^${test}$" --output-on-failure
                             --no-tests=error)
        endforeach ()
    endif ()
endforeach ()

# Kernels only: every kernel of the tuned set with its own runtime, as the target's
# archive (.a, or .lib for Windows) and C header.
foreach (target IN LISTS HELIX_KERNEL_ONLY_TARGETS)
    string(MAKE_C_IDENTIFIER "${target}" id)
    helix_add_kernel(helix_apply_rotary_angles_f32_${id} GENERATOR apply_rotary TARGETS ${target}
                     PARAMS schedule=tuned element_type=float32 table=angles)
    helix_add_kernel(helix_sinusoidal_table_xpos_${id} GENERATOR sinusoidal_table TARGETS ${target}
                     PARAMS schedule=tuned xpos=true)
    add_custom_target(helix_kernels_${id} ALL DEPENDS helix_apply_rotary_angles_f32_${id} helix_sinusoidal_table_xpos_${id})
    if (HELIX_BUILD_TESTS)
        add_test(NAME kernels_only/${target}
                 COMMAND ${CMAKE_COMMAND} -DDIR=${PROJECT_BINARY_DIR} -DAR=${CMAKE_AR} "-DTARGET=${target}"
                         "-DLIBS=helix_apply_rotary_angles_f32_${id};helix_sinusoidal_table_xpos_${id}"
                         -P ${PROJECT_SOURCE_DIR}/tests/check_kernel_archives.cmake)
    endif ()
endforeach ()
