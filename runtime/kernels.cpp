#include "kernels.h"

namespace helix::detail {

const TypedKernels *Kernels::find(DType dtype) const {
    for (const TypedKernels &t : typed) {
        if (t.dtype == dtype) return &t;
    }
    return nullptr;
}

}  // namespace helix::detail

namespace helix {

std::vector<DType> kernel_element_types() {
    std::vector<DType> types;
    for (const auto &t : detail::tuned_kernels().typed) types.push_back(t.dtype);
    return types;
}

}  // namespace helix
