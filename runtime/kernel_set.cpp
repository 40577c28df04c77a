// The table of one schedule's kernels. Compiled once per schedule with
// -DHELIX_SCHEDULE=<tuned|baseline|...> (cmake/HelixKernels.cmake), so every schedule's
// table is this one file: kernels_<schedule>() lists helix_<op>_<schedule>.
#include "kernels.h"

#define HELIX_PASTE_(a, b) a##_##b
#define HELIX_PASTE(a, b) HELIX_PASTE_(a, b)
#define HELIX_STRING_(x) #x
#define HELIX_STRING(x) HELIX_STRING_(x)
#define HELIX_KERNEL(op) HELIX_PASTE(op, HELIX_SCHEDULE)
#define HELIX_HEADER(op) HELIX_STRING(HELIX_KERNEL(op).h)

#include HELIX_HEADER(helix_apply_rotary_f32)
#include HELIX_HEADER(helix_apply_rotary_table_f32)
#include HELIX_HEADER(helix_rotate_half_f32)
#include HELIX_HEADER(helix_sinusoidal_table)
#include HELIX_HEADER(helix_sinusoidal_table_xpos)

namespace helix::detail {

const Kernels &HELIX_PASTE(kernels, HELIX_SCHEDULE)() {
    static const Kernels kernels{
        HELIX_STRING(HELIX_SCHEDULE),
        HELIX_KERNEL(helix_sinusoidal_table),
        HELIX_KERNEL(helix_sinusoidal_table_xpos),
        {TypedKernels{DType::Float32, HELIX_KERNEL(helix_rotate_half_f32), HELIX_KERNEL(helix_apply_rotary_f32),
                      HELIX_KERNEL(helix_apply_rotary_table_f32)}},
    };
    return kernels;
}

}  // namespace helix::detail
