// Argument checks of SPEC section 3, shared by the operations: each throws helix::Error
// naming the operation, the argument, what was expected and what was given.
#pragma once

#include "error.h"
#include "kernels.h"

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace helix::detail {

// A named argument; for an output, in_place_of is the input it may be exactly.
struct Named {
    const char *name;
    const Tensor *tensor;
    const Tensor *in_place_of = nullptr;
};

std::string strides_string(const Tensor &t);
void require_defined(const char *op, const char *name, const Tensor &t);
void require_rank(const char *op, const char *name, const Tensor &t, int lo, int hi);
void require_dtype(const char *op, const char *name, const Tensor &t, DType dtype, const char *why);
// The kernels of t's dtype and this pairing, or an error listing those the set has.
const TypedKernels &require_kernels(const char *op, const char *name, const Kernels &kernels, const Tensor &t,
                                    Pairing pairing);
void require_unit_feature_stride(const char *op, const char *name, const Tensor &t);
void require_shape(const char *op, const char *name, const Tensor &t, const std::vector<int64_t> &shape,
                   const char *why);
// t has the shape of `like` (compared without allocating: on every call's path).
void require_same_shape(const char *op, const char *name, const Tensor &t, const Tensor &like, const char *why);
// Whether two tensors are the same view of the same memory (device, allocation, first
// element, dtype, shape and strides).
bool same_view(const Tensor &a, const Tensor &b);
// Outputs are written in parallel: none may share an element with an input or another
// output, and no output may overlap itself; an output that is exactly its in_place_of
// input is fine (on the CPU). Decided on elements (runtime/overlap.h).
void require_disjoint(const char *op, std::initializer_list<Named> outputs, std::initializer_list<Named> inputs);
// Halide's kernels index in 32 bits: every (defined) tensor's elements must be reachable so,
// each dimension's extent times its stride, the element count and the farthest element's
// offset below 2^31 (Halide's own checks miss the last: its offsets would wrap).
void require_int32_offsets(const char *op, std::initializer_list<Named> tensors);
// Every (defined) tensor lives on the device of the first one.
void require_same_device(const char *op, std::initializer_list<Named> tensors);
// The value of a one-element float32 tensor, on whichever device it lives.
float scalar_value(const Tensor &t);
int32_t require_int32(const char *op, const std::string &name, int64_t value, int64_t lo);

}  // namespace helix::detail
