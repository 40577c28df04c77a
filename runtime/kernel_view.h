// The views the kernels take of the callers' tensors: the tensor's own halide_buffer_t
// (host pointer, device handle and flags alike) with other dimensions, no copy.
#pragma once

#include "backends.h"

#include <HalideRuntime.h>

#include <algorithm>
#include <array>
#include <utility>

namespace helix::detail {

constexpr int kTensorDims = 5;  // (jj, half, n, h, b)
constexpr int kTableDims = 3;   // (jj, half, n)

// The strides of a row's (jj, half) dimensions, H pairs of features `feature` apart:
// feature j = jj + half * H (half-split) or 2 jj + half (interleaved).
inline std::pair<int64_t, int64_t> pair_strides(int64_t half_width, int64_t feature, Pairing pairing) {
    if (pairing == Pairing::HalfSplit) return {feature, half_width * feature};
    return {2 * feature, feature};
}

class KernelView {
public:
    KernelView(const halide_buffer_t &buffer, int dims, const halide_dimension_t *shape) : buf_(buffer) {
        std::copy(shape, shape + dims, dims_);
        buf_.dimensions = dims;
        buf_.dim = dims_;
    }
    KernelView(const Tensor &t, int dims, const halide_dimension_t *shape)
        : KernelView(*t.to_halide().raw_buffer(), dims, shape) {}
    // The kernels' view of a (..., n, d) tensor: (jj, half, n, h, b, ...) with the d
    // features as H = d/2 pairs (generators/rope_algorithm.h): feature j = jj + half * H
    // (half-split) or 2 jj + half (interleaved); missing leading dimensions of extent 1.
    KernelView(const Tensor &t, int dims, Pairing pairing)
        : KernelView(t, dims, pair_shape(t, dims, pairing).data()) {}
    // The plain view of a (..., n, d) tensor: (features, n, h, b, ...), missing leading
    // dimensions of extent 1.
    KernelView(const Tensor &t, int dims) : KernelView(t, dims, row_shape(t, dims, 0).data()) {}
    KernelView(const KernelView &) = delete;
    KernelView &operator=(const KernelView &) = delete;

    halide_buffer_t *raw() { return &buf_; }
    // The same memory typed as the bits of its elements (uint16 for 16-bit floats), for
    // kernels that take them so (TypedKernels::bits).
    KernelView &as_bits(bool bits) {
        if (bits) buf_.type = halide_type_t(halide_type_uint, buf_.type.bits);
        return *this;
    }
    // Whether the view starts 16-byte aligned (host, device address or cl_mem offset).
    bool start_aligned() const { return locate(buf_).address % 16 == 0; }
    // An output's flags (device copy newer than the host's) back onto its tensor.
    void mark_written(const Tensor &t) const {
        const_cast<halide_buffer_t *>(t.to_halide().raw_buffer())->flags = buf_.flags;
    }

private:
    using Shape = std::array<halide_dimension_t, kTensorDims>;  // no heap: views are made on every call

    static Shape pair_shape(const Tensor &t, int dims, Pairing pairing) {
        const int32_t half_width = static_cast<int32_t>(t.size(-1) / 2);
        const auto [pair, member] = pair_strides(half_width, t.stride(-1), pairing);
        Shape shape = row_shape(t, dims, 1);  // (jj, half) from the features
        shape[0] = halide_dimension_t(0, half_width, static_cast<int32_t>(pair));
        shape[1] = halide_dimension_t(0, 2, static_cast<int32_t>(member));
        return shape;
    }
    // Dimension i (i >= first) is the tensor's dimension rank - 1 - (i - first), innermost
    // first, or of extent 1 past its rank; dimensions below first are left to the caller.
    static Shape row_shape(const Tensor &t, int dims, int first) {
        Shape shape;
        shape.fill(halide_dimension_t(0, 1, 0));
        for (int i = first; i < dims; i++) {
            const int dim = t.rank() - 1 - (i - first);
            if (dim >= 0) {
                shape[i] = halide_dimension_t(0, static_cast<int32_t>(t.size(dim)), static_cast<int32_t>(t.stride(dim)));
            }
        }
        return shape;
    }

    halide_buffer_t buf_;
    halide_dimension_t dims_[kTensorDims];
};

}  // namespace helix::detail
