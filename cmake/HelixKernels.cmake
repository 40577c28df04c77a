# CMake functions that stamp helix kernels out of the generators: one place decides the
# names, parameters and targets of every library, so a variant is one call, not a copy.

# Element types the typed kernels (rotate_half, apply_rotary) are built for, as
# Halide type names; each maps to a short suffix below. Tables are always float32.
set(HELIX_ELEMENT_TYPES float32)
set(HELIX_TYPE_SUFFIX_float32 f32)

# helix_add_kernel(<lib> GENERATOR <name> TARGETS <halide targets...> [RUNTIME <runtime>]
#                  [PARAMS <generator params...>] [ASSEMBLY <var>])
# One Halide library whose C function is named <lib>. All helix kernels take a
# user_context: it carries the per-call error sink (runtime/error.cpp). Without RUNTIME
# the library gets a Halide runtime of its own.
# ASSEMBLY <var> (single target only) sets <var> to the generated .s file.
function(helix_add_kernel LIB)
    cmake_parse_arguments(PARSE_ARGV 1 ARG "" "GENERATOR;RUNTIME;ASSEMBLY" "TARGETS;PARAMS")
    set(extra_outputs "")
    if (ARG_ASSEMBLY)
        set(extra_outputs ASSEMBLY asm_file)
    endif ()
    set(runtime "")
    if (ARG_RUNTIME)
        set(runtime USE_RUNTIME ${ARG_RUNTIME})
    endif ()
    add_halide_library(
        ${LIB} FROM helix_generators
        GENERATOR ${ARG_GENERATOR}
        FUNCTION_NAME ${LIB}
        TARGETS ${ARG_TARGETS}
        FEATURES user_context
        ${runtime}
        PARAMS ${ARG_PARAMS}
        ${extra_outputs})
    if (ARG_ASSEMBLY)
        set(${ARG_ASSEMBLY} "${asm_file}" PARENT_SCOPE)
    endif ()
endfunction()

# helix_add_kernel_set(<out_var> SCHEDULE <tuned|baseline> TARGETS <...> RUNTIME <runtime>)
# Every kernel the C++ API dispatches to, for one schedule: named
# helix_<op>[_<variant>][_<type>]_<schedule>, plus their table kernels_<schedule>()
# (runtime/kernel_set.cpp). <out_var> receives the object files of all of them, for an
# archive to carry.
function(helix_add_kernel_set OUT)
    cmake_parse_arguments(PARSE_ARGV 1 ARG "" "SCHEDULE;RUNTIME" "TARGETS")
    set(s ${ARG_SCHEDULE})
    set(common TARGETS ${ARG_TARGETS} RUNTIME ${ARG_RUNTIME})
    set(libs "")

    foreach (xpos IN ITEMS false true)
        set(lib helix_sinusoidal_table_${s})
        if (xpos)
            set(lib helix_sinusoidal_table_xpos_${s})
        endif ()
        helix_add_kernel(${lib} GENERATOR sinusoidal_table ${common} PARAMS schedule=${s} xpos=${xpos})
        list(APPEND libs ${lib})
    endforeach ()

    foreach (type IN LISTS HELIX_ELEMENT_TYPES)
        set(t ${HELIX_TYPE_SUFFIX_${type}})
        helix_add_kernel(helix_rotate_half_${t}_${s} GENERATOR rotate_half ${common}
                         PARAMS schedule=${s} element_type=${type})
        helix_add_kernel(helix_apply_rotary_${t}_${s} GENERATOR apply_rotary ${common}
                         PARAMS schedule=${s} element_type=${type} scale_table=false)
        helix_add_kernel(helix_apply_rotary_table_${t}_${s} GENERATOR apply_rotary ${common}
                         PARAMS schedule=${s} element_type=${type} scale_table=true)
        list(APPEND libs helix_rotate_half_${t}_${s} helix_apply_rotary_${t}_${s}
             helix_apply_rotary_table_${t}_${s})
    endforeach ()

    set(table helix_kernel_table_${s})
    add_library(${table} OBJECT ${PROJECT_SOURCE_DIR}/runtime/kernel_set.cpp)
    target_compile_definitions(${table} PRIVATE HELIX_SCHEDULE=${s})
    target_include_directories(${table} PRIVATE ${PROJECT_SOURCE_DIR}/include)
    set_target_properties(${table} PROPERTIES POSITION_INDEPENDENT_CODE ON)
    target_link_libraries(${table} PRIVATE ${libs})  # their headers, built first

    helix_object_files(objects ${libs})
    set(${OUT} ${objects} $<TARGET_OBJECTS:${table}> PARENT_SCOPE)
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

# helix_assembly_checks(<arch> <out_var>): <name>|<Halide target>|<packed FMA regex>
# entries, one per ISA whose tuned apply_rotary assembly the tests inspect.
function(helix_assembly_checks ARCH OUT)
    if (ARCH MATCHES "^(x86_64|AMD64)$")
        set(${OUT} "avx512|x86-64-linux-avx512_skylake|vfmadd[0-9]+ps[ \t][-0-9a-z(),% \t]*%zmm"
                   "avx2|x86-64-linux-avx2-fma-f16c|vfmadd[0-9]+ps[ \t][-0-9a-z(),% \t]*%ymm" PARENT_SCOPE)
    elseif (ARCH MATCHES "^(aarch64|arm64)$")
        set(${OUT} "neon|arm-64-linux|fmla[ \t]+v[0-9]+\\.4s" PARENT_SCOPE)
    else ()
        set(${OUT} "" PARENT_SCOPE)
    endif ()
endfunction()
