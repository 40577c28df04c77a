# CMake functions that stamp helix kernels out of the generators: one place decides the
# names, parameters and targets of every library, so a variant is one call, not a copy.

# The storage types of the typed kernels (rotate_half, apply_rotary), one row each:
# <Halide type name>|<kernel name suffix>|<helix::DType>. This list alone decides which
# kernels are stamped and what each set's kernel table (runtime/kernel_set.cpp) holds.
# The arithmetic is float32 whatever the storage type; tables are always float32.
set(HELIX_ELEMENT_TYPE_ROWS "float32|f32|Float32" "float16|f16|Float16" "bfloat16|bf16|BFloat16")
# The pairings (SPEC section 2), one row each: <generator value>|<helix::Pairing>.
set(HELIX_PAIRING_ROWS "half_split|HalfSplit" "interleaved|Interleaved")
set(HELIX_PAIRINGS "")
foreach (row IN LISTS HELIX_PAIRING_ROWS)
    string(REPLACE "|" ";" row "${row}")
    list(GET row 0 pairing)
    list(GET row 1 HELIX_PAIRING_${pairing})
    list(APPEND HELIX_PAIRINGS ${pairing})
endforeach ()
# The table forms of apply_rotary (generators/rope_algorithm.h's TableForm), in the order of
# RotaryForms' kernel pointers (runtime/kernels.h): the kernel tables initialize them so.
set(HELIX_TABLE_FORMS angles cos_sin inv_freq)
# Combinations left out for a target family (the API then reports them as not built):
# <target regex>|<pairing or *>|<element type or *>.
# RISC-V interleaved: the vectorized kernels give wrong values in the tails (a pair count not
# a multiple of the vector) under qemu 7.2 and 10.0 alike, while the scalar baseline is
# right: not verified on hardware, so not offered. (With float16, LLVM itself aborts on
# them: "Scalarization of scalable vectors is not supported".)
set(HELIX_KERNEL_GAPS "^riscv|interleaved|*")
# 16-bit float types that a target family's backend cannot take, so its kernels hold them
# as their bits (UInt(16) buffers, converted by generators/rope_algorithm.h's codec; the
# runtime passes such tensors as uint16): <target regex>|<pairing or *>|<element type or *>.
#   CUDA bfloat16: Halide 21's PTX backend aborts LLVM on it ("Invalid cast!").
#   CUDA float16: its PTX stores a vector of float32 results as float16 without converting
#   them (the float32 bits, 16 at a time, some past the vector's own 8 bytes): wrong values
#   and CUDA_ERROR_ILLEGAL_ADDRESS on an H200; tests/check_ptx.cmake rejects such stores.
#   OpenCL float16 and bfloat16: Halide needs the cl_half feature (cl_khr_fp16) for both,
#   which PoCL lacks; with it Halide declares half helpers in every program, so no kernel
#   at all would build there.
set(HELIX_BITS_STORAGE "-cuda|*|float16" "-cuda|*|bfloat16" "-opencl|*|float16" "-opencl|*|bfloat16")
# The widest rotary part, in pairs (d / 2), that the decode kernels take (CPU sets built with
# DECODE): their per-row storage has this fixed size (generators/schedules.h,
# cpu::rotary_decode), and the runtime reads the limit from the kernel table.
set(HELIX_DECODE_MAX_PAIRS 256)
# A Halide target with one of these runs on a GPU.
set(HELIX_GPU_TARGET_REGEX "-(cuda|opencl|metal|vulkan|d3d12compute|webgpu)")

# helix_combination_listed(<out> <list> <pairing> <element type> <targets...>)
# <out> = true when an entry <target regex>|<pairing or *>|<element type or *> of the
# list variable <list> matches the combination on any of the targets.
function(helix_combination_listed OUT LIST pairing type)
    set(listed false)
    foreach (entry IN LISTS ${LIST})
        string(REPLACE "|" ";" entry "${entry}")
        list(GET entry 0 target_regex)
        list(GET entry 1 entry_pairing)
        list(GET entry 2 entry_type)
        foreach (target IN LISTS ARGN)
            if (target MATCHES "${target_regex}" AND (entry_pairing STREQUAL "*" OR entry_pairing STREQUAL pairing)
                AND (entry_type STREQUAL "*" OR entry_type STREQUAL type))
                set(listed true)
            endif ()
        endforeach ()
    endforeach ()
    set(${OUT} ${listed} PARENT_SCOPE)
endfunction()
set(HELIX_ELEMENT_TYPES "")
foreach (row IN LISTS HELIX_ELEMENT_TYPE_ROWS)
    string(REPLACE "|" ";" row "${row}")
    list(GET row 0 type)
    list(GET row 1 HELIX_TYPE_SUFFIX_${type})
    list(GET row 2 HELIX_DTYPE_${type})
    list(APPEND HELIX_ELEMENT_TYPES ${type})
endforeach ()

# helix_add_kernel(<lib> GENERATOR <name> TARGETS <halide targets...> [RUNTIME <runtime>]
#                  [PARAMS <generator params...>] [FEATURES <Halide target features...>]
#                  [AUTOSCHEDULER <plugin target>] [ASSEMBLY <var>] [DEVICE_CODE <var>])
# One Halide library whose C function is named <lib>. All helix kernels take a
# user_context: it carries the per-call error sink (runtime/error.cpp); FEATURES adds
# more to every target (no_asserts for the decode kernels). Without RUNTIME
# the library gets a Halide runtime of its own. ASSEMBLY / DEVICE_CODE <var> (single
# target only) set <var> to the generated .s / GPU source (PTX, OpenCL C) file.
function(helix_add_kernel LIB)
    cmake_parse_arguments(PARSE_ARGV 1 ARG "" "GENERATOR;RUNTIME;ASSEMBLY;DEVICE_CODE;AUTOSCHEDULER"
                          "TARGETS;PARAMS;FEATURES")
    set(extra "")
    if (ARG_AUTOSCHEDULER)
        list(APPEND extra AUTOSCHEDULER ${ARG_AUTOSCHEDULER})
    endif ()
    if (ARG_RUNTIME)
        list(APPEND extra USE_RUNTIME ${ARG_RUNTIME})
    endif ()
    if (ARG_ASSEMBLY)
        list(APPEND extra ASSEMBLY asm_file)
    endif ()
    if (ARG_DEVICE_CODE)
        list(APPEND extra DEVICE_CODE device_file)
    endif ()
    add_halide_library(
        ${LIB} FROM helix_generators
        GENERATOR ${ARG_GENERATOR}
        FUNCTION_NAME ${LIB}
        TARGETS ${ARG_TARGETS}
        FEATURES user_context ${ARG_FEATURES}
        PARAMS ${ARG_PARAMS}
        ${extra})
    if (ARG_ASSEMBLY)
        set(${ARG_ASSEMBLY} "${asm_file}" PARENT_SCOPE)
    endif ()
    if (ARG_DEVICE_CODE)
        set(${ARG_DEVICE_CODE} "${device_file}" PARENT_SCOPE)
    endif ()
endfunction()

# helix_add_kernel_set(<out_var> SET <name> SCHEDULE <tuned|baseline> TARGETS <...> [DECODE]
#                      [RUNTIME <runtime>] [DEVICE_CODE <var>] [ROTARY_PARAMS <apply_rotary params...>]
#                      [ROTARY_SCHEDULE <apply_rotary's own schedule, e.g. heads_outer>]
#                      [ELEMENT_TYPES <types...>] [PAIRINGS <pairings...>] [TABLE_FORMS <forms...>]
#                      [AUTOSCHEDULER <plugin target> [AUTOSCHEDULER_PARAMS <autoscheduler.x=y...>]])
# Every kernel the C++ API dispatches to, for one schedule and target list, one per
# operation x pairing (x element type for the typed ones): named
# helix_<op>[_<variant>]_<pairing>[_<type>]_<set>, plus their table kernels_<set>()
# (runtime/kernel_set.cpp, with the generated helix_kernel_set_<set>.h listing them).
# ELEMENT_TYPES, PAIRINGS and TABLE_FORMS default to all (HELIX_ELEMENT_TYPES,
# HELIX_PAIRINGS, HELIX_TABLE_FORMS). DECODE (CPU targets) adds apply_rotary's decode kernel
# of each form, helix_apply_rotary_<form>_decode_..., for the runtime's small outputs.
# <out_var> receives the object files of all of them, for an archive to carry;
# DEVICE_CODE <var> the kernels' GPU sources.
function(helix_add_kernel_set OUT)
    cmake_parse_arguments(PARSE_ARGV 1 ARG "DECODE" "SET;SCHEDULE;ROTARY_SCHEDULE;RUNTIME;DEVICE_CODE;AUTOSCHEDULER"
                          "TARGETS;AUTOSCHEDULER_PARAMS;ROTARY_PARAMS;ELEMENT_TYPES;PAIRINGS;TABLE_FORMS")
    if (NOT ARG_TABLE_FORMS)
        set(ARG_TABLE_FORMS ${HELIX_TABLE_FORMS})
    endif ()
    if (NOT ARG_ELEMENT_TYPES)
        set(ARG_ELEMENT_TYPES ${HELIX_ELEMENT_TYPES})
    endif ()
    if (NOT ARG_PAIRINGS)
        set(ARG_PAIRINGS ${HELIX_PAIRINGS})
    endif ()
    if (NOT ARG_ROTARY_SCHEDULE)
        set(ARG_ROTARY_SCHEDULE ${ARG_SCHEDULE})
    endif ()
    # The decode kernels are hand-scheduled CPU kernels without checks: never a GPU's or an
    # autoscheduler's (which could allocate, and would then write through a failed malloc).
    if (ARG_DECODE AND (ARG_TARGETS MATCHES "${HELIX_GPU_TARGET_REGEX}" OR ARG_AUTOSCHEDULER))
        message(FATAL_ERROR "helix_add_kernel_set: DECODE is for hand-scheduled CPU sets (${ARG_TARGETS})")
    endif ()
    set(set ${ARG_SET})
    set(common TARGETS ${ARG_TARGETS} RUNTIME ${ARG_RUNTIME})
    if (ARG_AUTOSCHEDULER)
        list(APPEND common AUTOSCHEDULER ${ARG_AUTOSCHEDULER})
    endif ()
    if (ARG_DEVICE_CODE)
        list(APPEND common DEVICE_CODE device_file)
    endif ()
    set(libs "")
    set(device_files "")
    macro(kernel lib)
        helix_add_kernel(${lib} ${common} ${ARGN})
        list(APPEND libs ${lib})
        list(APPEND device_files ${device_file})
    endmacro()

    set(s schedule=${ARG_SCHEDULE} ${ARG_AUTOSCHEDULER_PARAMS})
    set(includes "")
    set(tables "")
    set(typed "")
    foreach (pairing IN LISTS ARG_PAIRINGS)
        set(p ${s} pairing=${pairing})
        set(plain helix_sinusoidal_table_${pairing}_${set})
        set(xpos helix_sinusoidal_table_xpos_${pairing}_${set})
        kernel(${plain} GENERATOR sinusoidal_table PARAMS ${p} xpos=false)
        kernel(${xpos} GENERATOR sinusoidal_table PARAMS ${p} xpos=true)
        string(APPEND includes "#include \"${plain}.h\"\n#include \"${xpos}.h\"\n")
        string(APPEND tables "    TableKernels{Pairing::${HELIX_PAIRING_${pairing}}, ${plain}, ${xpos}}, \\\n")
        foreach (type IN LISTS ARG_ELEMENT_TYPES)
            helix_combination_listed(gap HELIX_KERNEL_GAPS ${pairing} ${type} ${ARG_TARGETS})
            if (gap)
                continue ()
            endif ()
            helix_combination_listed(bits HELIX_BITS_STORAGE ${pairing} ${type} ${ARG_TARGETS})
            set(t ${pairing}_${HELIX_TYPE_SUFFIX_${type}}_${set})
            set(r schedule=${ARG_ROTARY_SCHEDULE} ${ARG_AUTOSCHEDULER_PARAMS} pairing=${pairing} element_type=${type}
                  bits_storage=${bits} ${ARG_ROTARY_PARAMS})
            kernel(helix_rotate_half_${t} GENERATOR rotate_half PARAMS ${p} element_type=${type} bits_storage=${bits})
            string(APPEND includes "#include \"helix_rotate_half_${t}.h\"\n")
            # The apply_rotary kernels of each form, then the decode ones (or nullptr: the
            # form or the decode kernels not in this set; the API says so or does without).
            set(forms "")
            set(decode "")
            foreach (form IN LISTS HELIX_TABLE_FORMS)
                if (NOT form IN_LIST ARG_TABLE_FORMS)
                    list(APPEND forms nullptr)
                    list(APPEND decode nullptr)
                    continue ()
                endif ()
                kernel(helix_apply_rotary_${form}_${t} GENERATOR apply_rotary PARAMS ${r} table=${form})
                string(APPEND includes "#include \"helix_apply_rotary_${form}_${t}.h\"\n")
                list(APPEND forms helix_apply_rotary_${form}_${t})
                if (ARG_DECODE)
                    set(d helix_apply_rotary_${form}_decode_${t})
                    kernel(${d} GENERATOR apply_rotary FEATURES no_asserts
                           PARAMS schedule=decode pairing=${pairing} element_type=${type} bits_storage=${bits}
                                  table=${form} decode_max_pairs=${HELIX_DECODE_MAX_PAIRS})
                    string(APPEND includes "#include \"${d}.h\"\n")
                    list(APPEND decode ${d})
                else ()
                    list(APPEND decode nullptr)
                endif ()
            endforeach ()
            list(JOIN forms ", " forms)
            list(JOIN decode ", " decode)
            set(max_pairs 0)
            if (ARG_DECODE)
                set(max_pairs ${HELIX_DECODE_MAX_PAIRS})
            endif ()
            string(APPEND typed "    TypedKernels{DType::${HELIX_DTYPE_${type}}, Pairing::${HELIX_PAIRING_${pairing}}, ${bits}, "
                                "helix_rotate_half_${t}, {${forms}}, {${decode}}, ${max_pairs}}, \\\n")
        endforeach ()
    endforeach ()

    # The pass-through copies of partial rotary (CPU sets: a device uses its own copy).
    set(copies "nullptr, nullptr")
    if (NOT ARG_TARGETS MATCHES "${HELIX_GPU_TARGET_REGEX}")
        set(copies "")
        foreach (bits IN ITEMS 16 32)
            kernel(helix_copy_features_${bits}_${set} GENERATOR copy_features PARAMS ${s} bits=${bits})
            string(APPEND includes "#include \"helix_copy_features_${bits}_${set}.h\"\n")
            list(APPEND copies helix_copy_features_${bits}_${set})
        endforeach ()
        list(JOIN copies ", " copies)
    endif ()

    # The set's kernel table: its headers and entries, generated from the lists above.
    set(table helix_kernel_table_${set})
    set(header ${CMAKE_CURRENT_BINARY_DIR}/helix_kernel_set_${set}.h)
    file(CONFIGURE OUTPUT ${header} CONTENT "// Generated by helix_add_kernel_set (cmake/HelixKernels.cmake).
${includes}
#define HELIX_KERNEL_TABLE {\"${set}\", { \\
${tables}}, { \\
${typed}}, ${copies}}
")
    add_library(${table} OBJECT ${PROJECT_SOURCE_DIR}/runtime/kernel_set.cpp)
    target_compile_definitions(${table} PRIVATE HELIX_KERNEL_SET=${set} HELIX_KERNEL_SET_HEADER="${header}")
    target_include_directories(${table} PRIVATE ${PROJECT_SOURCE_DIR}/include)
    set_target_properties(${table} PROPERTIES POSITION_INDEPENDENT_CODE ON)
    target_link_libraries(${table} PRIVATE ${libs})  # their headers, built first

    helix_object_files(objects ${libs})
    set(${OUT} ${objects} $<TARGET_OBJECTS:${table}> PARENT_SCOPE)
    if (ARG_DEVICE_CODE)
        set(${ARG_DEVICE_CODE} ${device_files} PARENT_SCOPE)
    endif ()
endfunction()

# helix_add_api_library(<name> OBJECTS <kernel objects...> RUNTIME <halide runtime>
#                       [GPU <CUDA|OPENCL>] [SOURCES <extra sources...>])
# A self-contained archive: the C++ API, the given kernel sets and one Halide runtime.
# GPU names the backend the archive carries besides the CPU (runtime/backends.cpp).
function(helix_add_api_library NAME)
    cmake_parse_arguments(PARSE_ARGV 1 ARG "" "RUNTIME;GPU" "OBJECTS;SOURCES")
    helix_object_files(runtime_objects ${ARG_RUNTIME})
    set(api ${PROJECT_SOURCE_DIR}/runtime)
    add_library(${NAME} STATIC ${api}/backends.cpp ${api}/tensor.cpp $<TARGET_OBJECTS:helix_api_common>
                ${ARG_SOURCES} ${ARG_OBJECTS} ${runtime_objects})
    add_library(helix::${NAME} ALIAS ${NAME})
    if (ARG_GPU)
        target_compile_definitions(${NAME} PRIVATE HELIX_WITH_${ARG_GPU})
    endif ()
    set_target_properties(${NAME} PROPERTIES POSITION_INDEPENDENT_CODE ON)
    target_include_directories(
        ${NAME}
        PUBLIC $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
               $<BUILD_INTERFACE:${HELIX_DLPACK_BUILD_INCLUDE}>
               $<INSTALL_INTERFACE:include>
               $<INSTALL_INTERFACE:include/helix>          # dlpack/dlpack.h
               $<INSTALL_INTERFACE:include/helix/halide>)  # HalideBuffer.h, HalideRuntime.h
    find_package(Threads REQUIRED)
    target_link_libraries(${NAME} PUBLIC $<BUILD_INTERFACE:Halide::Runtime> Threads::Threads ${CMAKE_DL_LIBS})
endfunction()

# helix_object_files(<out_var> <halide library or runtime targets...>)
# The object files behind host Halide libraries (a multi-target library has one per
# target plus its dispatch wrapper), so that libhelix.a can carry them all.
function(helix_object_files OUT)
    set(objects "")
    foreach (lib IN LISTS ARGN)
        get_target_property(sources ${lib} SOURCES)
        get_target_property(dir ${lib} BINARY_DIR)
        foreach (src IN LISTS sources)
            if (src MATCHES "\\.o$")
                cmake_path(ABSOLUTE_PATH src BASE_DIRECTORY "${dir}")
                list(APPEND objects "${src}")
            endif ()
        endforeach ()
    endforeach ()
    set(${OUT} ${objects} PARENT_SCOPE)
endfunction()

# helix_runnable_target(<out_var> <target>...): the first x86-64 target whose features this
# machine's CPU has (/proc/cpuinfo), else the last (the baseline); non-x86 lists: the last.
function(helix_runnable_target OUT)
    set(targets ${ARGN})
    list(GET targets -1 chosen)
    set(cpuinfo "")
    if (EXISTS /proc/cpuinfo)
        file(STRINGS /proc/cpuinfo cpuinfo REGEX "^flags" LIMIT_COUNT 1)
    endif ()
    foreach (target IN LISTS targets)
        set(flags "")
        if (target MATCHES "avx512_skylake")
            set(flags avx512f avx512cd avx512vl avx512bw avx512dq)
        elseif (target MATCHES "avx2")
            set(flags avx2 fma f16c)
        elseif (target MATCHES "^x86-64.*sse41")
            set(flags sse4_1)
        else ()
            continue()
        endif ()
        set(has_all TRUE)
        foreach (flag IN LISTS flags)
            if (NOT cpuinfo MATCHES " ${flag}( |$)")
                set(has_all FALSE)
            endif ()
        endforeach ()
        if (has_all)
            set(chosen ${target})
            break()
        endif ()
    endforeach ()
    set(${OUT} ${chosen} PARENT_SCOPE)
endfunction()

# helix_dispatch_branches(<arch> <out_var>): the branches of the default HELIX_TARGETS
# of <arch> that the tests force one at a time (tests/test_main.cpp), best first; the
# last is the baseline.
function(helix_dispatch_branches ARCH OUT)
    if (ARCH MATCHES "^(x86_64|AMD64)$")
        set(${OUT} avx512 avx2 sse41 PARENT_SCOPE)
    elseif (ARCH MATCHES "^(aarch64|arm64)$")
        set(${OUT} arm_dot_prod neon PARENT_SCOPE)
    else ()
        set(${OUT} "" PARENT_SCOPE)
    endif ()
endfunction()

# helix_assembly_checks(<arch> <out_var>): <name>|<Halide target>|<element type>|<regex>
# entries, one per ISA and storage type whose tuned apply_rotary assembly the tests
# inspect: float32 kernels must have packed multiplies on the ISA's widest vectors (the
# rotation is strict_float, so not fused: generators/rope_algorithm.h), float16 ones the ISA's packed
# conversions (F16C on AVX2, AVX-512's on zmm, fcvtl on AArch64 with arm_fp16; Halide
# converts with integer operations on the plain NEON baseline), at least 8 each.
function(helix_assembly_checks ARCH OUT)
    if (ARCH MATCHES "^(x86_64|AMD64)$")
        set(${OUT} "avx512|x86-64-linux-avx512_skylake|float32|vmulps[ \t][-0-9a-z(),% \t]*%zmm"
                   "avx2|x86-64-linux-avx2-fma-f16c|float32|vmulps[ \t][-0-9a-z(),% \t]*%ymm"
                   "avx512_f16|x86-64-linux-avx512_skylake|float16|vcvtph2ps[ \t][-0-9a-z(),% \t]*%zmm"
                   "avx2_f16|x86-64-linux-avx2-fma-f16c|float16|vcvtph2ps[ \t][-0-9a-z(),% \t]*%ymm" PARENT_SCOPE)
    elseif (ARCH MATCHES "^(aarch64|arm64)$")
        set(${OUT} "neon|arm-64-linux|float32|fmul[ \t]+v[0-9]+\\.4s"
                   "arm_fp16_f16|arm-64-linux-arm_dot_prod-arm_fp16|float16|fcvtl2?[ \t]+v[0-9]+\\.4s" PARENT_SCOPE)
    else ()
        set(${OUT} "" PARENT_SCOPE)
    endif ()
endfunction()
