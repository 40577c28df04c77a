# Installs the helix build into a fresh prefix, builds tests/consumer against it (with
# only that prefix on the search path) and runs the consumer.
file(REMOVE_RECURSE "${WORK}")
function(run)
    execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
    if (rc)
        message(FATAL_ERROR "failed (${rc}): ${ARGN}")
    endif ()
endfunction()
run(${CMAKE_COMMAND} --install "${HELIX_BUILD}" --prefix "${WORK}/prefix")
run(${CMAKE_COMMAND} -G "${GENERATOR}" -S "${CONSUMER_SOURCE}" -B "${WORK}/build"
    -DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM} -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_BUILD_TYPE=Release
    -DCMAKE_PREFIX_PATH=${WORK}/prefix -DCMAKE_FIND_USE_SYSTEM_ENVIRONMENT_PATH=OFF)
run(${CMAKE_COMMAND} --build "${WORK}/build")
run("${WORK}/build/consumer")
