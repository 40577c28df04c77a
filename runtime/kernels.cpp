#include "kernels.h"

namespace helix::detail {

const TableKernels *Kernels::find(Pairing pairing) const {
    for (const TableKernels &t : tables) {
        if (t.pairing == pairing) return &t;
    }
    return nullptr;
}

const TypedKernels *Kernels::find(DType dtype, Pairing pairing) const {
    for (const TypedKernels &t : typed) {
        if (t.dtype == dtype && t.pairing == pairing) return &t;
    }
    return nullptr;
}

}  // namespace helix::detail

namespace helix {

std::vector<DType> kernel_element_types() {
    std::vector<DType> types;
    for (const auto &t : detail::tuned_kernels().typed) {
        if (t.pairing == Pairing::HalfSplit) types.push_back(t.dtype);
    }
    return types;
}

}  // namespace helix
