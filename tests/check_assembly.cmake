# cmake -DASM=<file.s> -DREGISTER=<ymm|zmm> -P check_assembly.cmake
# Fails unless the generated assembly has packed FMAs on REGISTER-wide vectors and no
# calls to scalar libm sin/cos (helix's cos/sin are vector polynomials).
file(READ "${ASM}" text)
string(REGEX MATCHALL "vfmadd[0-9]+ps[^\n]*%${REGISTER}" fmas "${text}")
list(LENGTH fmas fma_count)
string(REGEX MATCHALL "[ \t]call[^\n]*(sinf|cosf|sincosf)" libm_calls "${text}")
list(LENGTH libm_calls libm_count)
string(REGEX MATCHALL "vmovups[^\n]*%${REGISTER}" moves "${text}")
list(LENGTH moves move_count)
message(STATUS "${ASM}: ${fma_count} packed FMAs on %${REGISTER}, ${move_count} packed moves, ${libm_count} libm sin/cos calls")
if (fma_count LESS 8 OR move_count LESS 4 OR libm_count GREATER 0)
    message(FATAL_ERROR "the kernel is not vectorized for %${REGISTER} as expected")
endif ()
