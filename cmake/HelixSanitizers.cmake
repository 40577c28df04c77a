# From the host build, the same project built with clang and a sanitizer, by the presets
# asan and tsan (CMakePresets.json) but reusing this build's generator, like the cross
# builds. Their suites appear in this build's ctest as sanitize/<kind>/<test>:
#   address - AddressSanitizer (with its leak checker) + UndefinedBehaviorSanitizer, the
#             kernels compiled with Halide's asan feature: the whole CPU suite
#             (helix_tests), fault injection, concurrency, the demo, the libFuzzer target
#             and the C ABI's suite;
#   thread  - ThreadSanitizer: the concurrency suite and the CUDA context hooks.
# They are not part of `cmake --build` (the demo's build stays quick): ctest builds them
# itself, in the fixture test sanitize/<kind>/build, before their suites run.
include(ExternalProject)

find_program(HELIX_CLANG clang)
find_program(HELIX_CLANGXX clang++)
if (NOT HELIX_CLANG OR NOT HELIX_CLANGXX)
    add_test(NAME sanitize/unavailable COMMAND ${CMAKE_COMMAND} -E echo
             "[SKIP] clang/clang++ missing (scripts/setup.sh installs clang and libclang-rt-14-dev)")
    set_tests_properties(sanitize/unavailable PROPERTIES SKIP_REGULAR_EXPRESSION "\\[SKIP\\]")
    return()
endif ()

# <kind>|<its CMake preset (CMakePresets.json)>|<its tests>
set(HELIX_SANITIZER_BUILDS
    "address|asan|helix_tests,helix_fault_tests,helix_concurrency_tests,helix_demo,helix_fuzz_api,helix_c_api_tests"
    "thread|tsan|helix_concurrency_tests,helix_cuda_context_tests")

foreach (build IN LISTS HELIX_SANITIZER_BUILDS)
    string(REPLACE "|" ";" build "${build}")
    list(GET build 0 kind)
    list(GET build 1 preset)
    list(GET build 2 tests)
    string(REPLACE "," ";" tests "${tests}")
    set(dir ${PROJECT_BINARY_DIR}/sanitize/${kind})
    ExternalProject_Add(
        helix_sanitize_${kind}
        SOURCE_DIR ${PROJECT_SOURCE_DIR}
        BINARY_DIR ${dir}
        CONFIGURE_COMMAND ${CMAKE_COMMAND} --preset ${preset} -S ${PROJECT_SOURCE_DIR} -B ${dir}
                          -DCMAKE_C_COMPILER=${HELIX_CLANG} -DCMAKE_CXX_COMPILER=${HELIX_CLANGXX}
                          -DCMAKE_MAKE_PROGRAM=${CMAKE_MAKE_PROGRAM}
                          -DHalideHelpers_DIR=${HalideHelpers_DIR}
                          -Dhelix-halide_generators_DIR=${PROJECT_BINARY_DIR}/cmake
        BUILD_ALWAYS ON
        INSTALL_COMMAND ""
        EXCLUDE_FROM_ALL TRUE
        DEPENDS helix_generators)
    # One ninja at a time in this build tree: the build fixtures share a lock.
    add_test(NAME sanitize/${kind}/build
             COMMAND ${CMAKE_COMMAND} --build ${PROJECT_BINARY_DIR} --target helix_sanitize_${kind})
    set_tests_properties(sanitize/${kind}/build PROPERTIES FIXTURES_SETUP sanitize_${kind}
                         RESOURCE_LOCK helix_build_tree)
    foreach (test IN LISTS tests)
        add_test(NAME sanitize/${kind}/${test}
                 COMMAND ${CMAKE_CTEST_COMMAND} --test-dir ${dir} -R "^${test}$" --output-on-failure --no-tests=error)
        set_tests_properties(sanitize/${kind}/${test} PROPERTIES FIXTURES_REQUIRED sanitize_${kind})
    endforeach ()
endforeach ()
