# cmake -DDIR=<dir> -DNM=<nm> -P check_decode_objects.cmake
# The decode kernels (DIR/libhelix_apply_rotary_*_decode_*.a, every form, pairing, storage
# type and ISA branch) are built without Halide's checks, which is safe only because they
# can fail nowhere: none may call into the Halide runtime (its allocator, thread pool, error
# reports) but for the multi-target wrapper's CPU feature query.
file(GLOB archives "${DIR}/libhelix_apply_rotary_*_decode_*.a")
list(LENGTH archives count)
if (count EQUAL 0)
    message(FATAL_ERROR "no decode kernel archives in ${DIR}")
endif ()
foreach (archive IN LISTS archives)
    execute_process(COMMAND "${NM}" -u "${archive}" OUTPUT_VARIABLE undefined RESULT_VARIABLE rc)
    if (rc)
        message(FATAL_ERROR "${NM} -u ${archive} failed (${rc})")
    endif ()
    string(REGEX MATCHALL "[ \t]U[ \t]+halide_[a-z0-9_]+" calls "${undefined}")
    list(FILTER calls EXCLUDE REGEX "halide_can_use_target_features$")
    if (calls)
        message(FATAL_ERROR "${archive} calls into the Halide runtime: ${calls}")
    endif ()
endforeach ()
message(STATUS "${count} decode kernel archives call into the Halide runtime only for the CPU feature query")
