# cmake -DDIR=<dir> -DAR=<ar> -DTARGET=<halide target> -DLIBS=<lib;...> -P check_kernel_archives.cmake
# Each kernel library of a target built as kernels only: its C header declares the
# kernel's function, and its archive (.a, or .lib for Windows) holds object files.
foreach (lib IN LISTS LIBS)
    file(GLOB archive "${DIR}/${lib}.a" "${DIR}/${lib}.lib")
    if (NOT archive OR NOT EXISTS "${DIR}/${lib}.h")
        message(FATAL_ERROR "${TARGET}: ${lib}: archive or header missing in ${DIR}")
    endif ()
    file(READ "${DIR}/${lib}.h" header)
    if (NOT header MATCHES "int ${lib}\\(")
        message(FATAL_ERROR "${TARGET}: ${lib}.h does not declare ${lib}()")
    endif ()
    execute_process(COMMAND "${AR}" t "${archive}" OUTPUT_VARIABLE members RESULT_VARIABLE rc)
    if (rc OR NOT members MATCHES "\\.(o|obj)")
        message(FATAL_ERROR "${TARGET}: ${archive} holds no object files (${rc}): ${members}")
    endif ()
    string(REPLACE "\n" " " members "${members}")
    message(STATUS "${TARGET}: ${archive}: ${members}")
endforeach ()
