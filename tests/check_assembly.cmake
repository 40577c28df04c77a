# cmake -DASM=<file.s> -DPATTERN=<regex> -P check_assembly.cmake
# Fails unless the generated assembly has at least 8 vector instructions matching PATTERN
# (packed multiplies on %zmm or v.4s, packed float16 conversions, ...) and no calls to scalar
# libm sin/cos (helix's cos/sin are vector polynomials).
file(READ "${ASM}" text)
string(REGEX MATCHALL "${PATTERN}" matches "${text}")
list(LENGTH matches count)
string(REGEX MATCHALL "[ \t](call|bl|jal)[^\n]*(sinf|cosf|sincosf)" libm_calls "${text}")
list(LENGTH libm_calls libm_count)
message(STATUS "${ASM}: ${count} vector instructions matching '${PATTERN}', ${libm_count} libm sin/cos calls")
if (count LESS 8 OR libm_count GREATER 0)
    message(FATAL_ERROR "the kernel is not vectorized as expected")
endif ()
