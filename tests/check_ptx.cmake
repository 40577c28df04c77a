# cmake -DPTXAS=<ptxas> -DFILES=<ptx;...> -DGPUS=<sm_80,...> -P check_ptx.cmake
# No kernel stores 16 bits from a 64-bit register, and the rotations keep their values in
# registers (below).
# The half-split float32 rotation kernels' PTX uses 16-byte global loads and stores
# (ld/st.global.v4) on their aligned path (interleaved ones take the scalar path so far;
# the 16-bit ones, held as bits, 2-byte accesses); then each PTX file is assembled for each
# GPU (prints [SKIP] when there is no ptxas).
find_program(NM nm)
if (NOT NM)
    message(FATAL_ERROR "nm (binutils) not found: it reads the kernels' host objects")
endif ()
foreach (file IN LISTS FILES)
    get_filename_component(name "${file}" NAME)
    file(READ "${file}" ptx)
    # A 16-bit store from a 64-bit register is how Halide 21's PTX stored float32 results
    # as float16 without converting them (seen wrong on an H200): no kernel may have one.
    # (Scalar or vector stores, of any 16-bit type name.)
    string(REGEX MATCH "st\\.global[.a-z0-9]*\\.[bsuf]16[ \t]+\\[[^]]*\\],[ \t]*{?[^;]*%rd[0-9]+" unconverted "${ptx}")
    if (unconverted)
        message(FATAL_ERROR "${name}: a 16-bit store of a 64-bit register (${unconverted})")
    endif ()
    # The rotations keep their per-thread values (coef, pair) in registers: no local memory,
    # and no scratch buffer that the host allocates on the device at every call (a global
    # buffer per call is what a footprint Halide cannot bound at compile time gets). The
    # kernels link helix's separate GPU runtime, so such a call is an undefined symbol of
    # the object beside the PTX.
    if (name MATCHES "^helix_(apply_rotary|rotate_half)")
        string(REGEX MATCH "(ld|st)\\.local" local "${ptx}")
        string(REGEX REPLACE "\\.device_code$" ".o" object "${file}")
        execute_process(COMMAND "${NM}" -u "${object}" OUTPUT_VARIABLE undefined RESULT_VARIABLE rc
                        ERROR_VARIABLE nm_error)
        string(REGEX MATCH "halide_device(_and_host)?_malloc" allocation "${undefined}")
        if (local OR rc OR allocation)
            message(FATAL_ERROR "${name}: per-thread values outside registers (${local}) or a device "
                                "allocation per call (${allocation}; nm ${object}: exit ${rc} ${nm_error})")
        endif ()
    endif ()
    if (name MATCHES "(apply_rotary|rotate_half).*half_split_f32")
        string(REGEX MATCHALL "ld\\.global(\\.nc)?\\.v4" wide_loads "${ptx}")
        string(REGEX MATCHALL "st\\.global\\.v4" wide_stores "${ptx}")
        list(LENGTH wide_loads loads)
        list(LENGTH wide_stores stores)
        message(STATUS "${name}: ${loads} 16-byte loads, ${stores} 16-byte stores")
        if (loads EQUAL 0 OR stores EQUAL 0)
            message(FATAL_ERROR "${name}: no 16-byte global accesses")
        endif ()
    endif ()
endforeach ()
if (NOT EXISTS "${PTXAS}")
    message("[SKIP] no ptxas (the CUDA toolkit is not installed under /usr/local/cuda)")
    return()
endif ()
string(REPLACE "," ";" GPUS "${GPUS}")
foreach (file IN LISTS FILES)
    get_filename_component(name "${file}" NAME)
    file(READ "${file}" ptx)
    string(REGEX MATCH "\\.target[ \t]+sm_[0-9]+" target "${ptx}")
    foreach (gpu IN LISTS GPUS)
        execute_process(COMMAND "${PTXAS}" --gpu-name ${gpu} "${file}" -o "${file}.${gpu}.cubin"
                        RESULT_VARIABLE rc ERROR_VARIABLE err)
        if (rc)
            message(FATAL_ERROR "ptxas --gpu-name ${gpu} ${name} (${target}) failed: ${err}")
        endif ()
        message(STATUS "${name} (${target}): assembled for ${gpu}")
    endforeach ()
endforeach ()
