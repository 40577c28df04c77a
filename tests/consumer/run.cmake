# Installs the helix build into a fresh prefix, builds tests/consumer against it (with
# only that prefix on the search path) and runs the consumers; then the same for each
# cross architecture's package under <prefix>/<arch>-linux-gnu, run under qemu.
file(REMOVE_RECURSE "${WORK}")
function(run)
    execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
    if (rc)
        message(FATAL_ERROR "failed (${rc}): ${ARGN}")
    endif ()
endfunction()
set(prefix "${WORK}/prefix")
run(${CMAKE_COMMAND} --install "${HELIX_BUILD}" --prefix "${prefix}")
run(${CMAKE_COMMAND} -G "${GENERATOR}" -S "${CONSUMER_SOURCE}" -B "${WORK}/build"
    -DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM} -DCMAKE_C_COMPILER=${CC} -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_BUILD_TYPE=Release
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_FIND_USE_SYSTEM_ENVIRONMENT_PATH=OFF)
run(${CMAKE_COMMAND} --build "${WORK}/build")
run(${CMAKE_CTEST_COMMAND} --test-dir "${WORK}/build" -V)
foreach (arch IN LISTS CROSS_ARCHS)
    set(package "${prefix}/${arch}-linux-gnu/lib/cmake/helix")
    if (NOT EXISTS "${package}/helixConfig.cmake")
        message(FATAL_ERROR "no ${arch} package at ${package}")
    endif ()
    run(${CMAKE_COMMAND} -G "${GENERATOR}" -S "${CONSUMER_SOURCE}" -B "${WORK}/build-${arch}"
        -DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM} --toolchain ${TOOLCHAIN} -DHELIX_CROSS_ARCH=${arch}
        -DCMAKE_BUILD_TYPE=Release -Dhelix_DIR=${package})
    run(${CMAKE_COMMAND} --build "${WORK}/build-${arch}")
    run(${CMAKE_CTEST_COMMAND} --test-dir "${WORK}/build-${arch}" -V)
endforeach ()
