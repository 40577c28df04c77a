// The table of one kernel set's kernels. Compiled once per set with
// -DHELIX_KERNEL_SET=<tuned|baseline|cuda|opencl|...> (cmake/HelixKernels.cmake), so
// every set's table is this one file: kernels_<set>() lists helix_<op>_<set>.
#include "kernels.h"

#define HELIX_PASTE_(a, b) a##_##b
#define HELIX_PASTE(a, b) HELIX_PASTE_(a, b)
#define HELIX_STRING_(x) #x
#define HELIX_STRING(x) HELIX_STRING_(x)
#define HELIX_KERNEL(op) HELIX_PASTE(op, HELIX_KERNEL_SET)
#define HELIX_HEADER(op) HELIX_STRING(HELIX_KERNEL(op).h)

#include HELIX_HEADER(helix_apply_rotary_f32)
#include HELIX_HEADER(helix_apply_rotary_table_f32)
#include HELIX_HEADER(helix_rotate_half_f32)
#include HELIX_HEADER(helix_sinusoidal_table)
#include HELIX_HEADER(helix_sinusoidal_table_xpos)

namespace helix::detail {

const Kernels &HELIX_PASTE(kernels, HELIX_KERNEL_SET)() {
    static const Kernels kernels{
        HELIX_STRING(HELIX_KERNEL_SET),
        HELIX_KERNEL(helix_sinusoidal_table),
        HELIX_KERNEL(helix_sinusoidal_table_xpos),
        {TypedKernels{DType::Float32, HELIX_KERNEL(helix_rotate_half_f32), HELIX_KERNEL(helix_apply_rotary_f32),
                      HELIX_KERNEL(helix_apply_rotary_table_f32)}},
    };
    return kernels;
}

}  // namespace helix::detail
