// The table of one kernel set's kernels. Compiled once per set with
// -DHELIX_KERNEL_SET=<tuned|baseline|cuda|opencl|...> and HELIX_KERNEL_SET_HEADER, the
// header helix_add_kernel_set (cmake/HelixKernels.cmake) generates from its lists of
// pairings and element types: the kernels' own headers and HELIX_KERNEL_TABLE, the
// table's initializer.
#include "kernels.h"

#include HELIX_KERNEL_SET_HEADER

#define HELIX_PASTE_(a, b) a##_##b
#define HELIX_PASTE(a, b) HELIX_PASTE_(a, b)

namespace helix::detail {

const Kernels &HELIX_PASTE(kernels, HELIX_KERNEL_SET)() {
    static const Kernels kernels HELIX_KERNEL_TABLE;
    return kernels;
}

}  // namespace helix::detail
