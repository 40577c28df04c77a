# cmake -DASM=<file.s> -DFMA=<regex> -P check_assembly.cmake
# Fails unless the generated assembly has packed FMAs (FMA regex, e.g. on %zmm or v.4s)
# and no calls to scalar libm sin/cos (helix's cos/sin are vector polynomials).
file(READ "${ASM}" text)
string(REGEX MATCHALL "${FMA}" fmas "${text}")
list(LENGTH fmas fma_count)
string(REGEX MATCHALL "[ \t](call|bl|jal)[^\n]*(sinf|cosf|sincosf)" libm_calls "${text}")
list(LENGTH libm_calls libm_count)
message(STATUS "${ASM}: ${fma_count} packed FMAs matching '${FMA}', ${libm_count} libm sin/cos calls")
if (fma_count LESS 8 OR libm_count GREATER 0)
    message(FATAL_ERROR "the kernel is not vectorized as expected")
endif ()
