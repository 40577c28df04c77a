// Argument checks of SPEC section 3, shared by the operations.
#include "checks.h"

#include "backends.h"
#include "overlap.h"

#include <limits>
#include <optional>
#include <utility>
#include <vector>

namespace helix::detail {

namespace {

std::string dtype_list(const Kernels &kernels, Pairing pairing) {
    std::string s;
    for (const TypedKernels &t : kernels.typed) {
        if (t.pairing == pairing) s += (s.empty() ? "" : " or ") + to_string(t.dtype);
    }
    return s.empty() ? "none" : s;
}

}  // namespace

void require_defined(const char *op, const char *name, const Tensor &t) {
    if (!t.defined()) reject(op, name, "a defined tensor", "an undefined tensor");
    // Halide would take a buffer with neither host nor device memory for a bounds query
    // and compute nothing.
    const halide_buffer_t &b = *t.to_halide().raw_buffer();
    if (t.numel() > 0 && !b.host && !b.device) {
        reject(op, name, "a tensor with memory (host or device)", "a tensor with no memory");
    }
}

void require_rank(const char *op, const char *name, const Tensor &t, int lo, int hi) {
    require_defined(op, name, t);
    if (t.rank() < lo || t.rank() > hi) {
        const std::string expected =
            lo == hi ? "rank " + str(lo) : "rank " + str(lo) + " to " + str(hi);
        reject(op, name, expected, "rank " + str(t.rank()) + " with shape " + t.shape_string());
    }
}

void require_dtype(const char *op, const char *name, const Tensor &t, DType dtype, const char *why) {
    if (t.dtype() != dtype) reject(op, name, "dtype " + to_string(dtype) + why, to_string(t.dtype()));
}

const TypedKernels &require_kernels(const char *op, const char *name, const Kernels &kernels, const Tensor &t,
                                    Pairing pairing) {
    const TypedKernels *typed = kernels.find(t.dtype(), pairing);
    if (!typed) {
        reject(op, name, "dtype " + dtype_list(kernels, pairing) + " (the element types helix was built for, " +
                             to_string(pairing) + " pairing)",
               to_string(t.dtype()));
    }
    return *typed;
}

void require_same_shape(const char *op, const char *name, const Tensor &t, const Tensor &like, const char *why) {
    require_defined(op, name, t);
    bool same = t.rank() == like.rank();
    for (int i = 0; same && i < t.rank(); i++) same = t.size(i) == like.size(i);
    if (!same) reject(op, name, "shape " + like.shape_string() + why, t.shape_string());
}

std::string strides_string(const Tensor &t) {
    std::string s = "(";
    for (int i = 0; i < t.rank(); i++) s += (i ? ", " : "") + str(t.stride(i));
    return s + (t.rank() == 1 ? ",)" : ")");
}

void require_unit_feature_stride(const char *op, const char *name, const Tensor &t) {
    if (t.size(-1) > 1 && t.stride(-1) != 1) {
        reject(op, name, "unit stride in the last dimension", "stride " + str(t.stride(-1)));
    }
}

void require_shape(const char *op, const char *name, const Tensor &t, const std::vector<int64_t> &shape,
                   const char *why) {
    require_defined(op, name, t);
    if (t.shape() != shape) {
        std::string expected = "(";
        for (size_t i = 0; i < shape.size(); i++) expected += (i ? ", " : "") + str(shape[i]);
        reject(op, name, "shape " + expected + (shape.size() == 1 ? ",)" : ")") + why, t.shape_string());
    }
}

// Whether two tensors are the same view of the same memory: same device and allocation,
// first element, dtype, shape and strides.
bool same_view(const Tensor &a, const Tensor &b) {
    if (a.device() != b.device() || a.dtype() != b.dtype() || a.rank() != b.rank()) return false;
    for (int i = 0; i < a.rank(); i++) {
        if (a.size(i) != b.size(i) || a.stride(i) != b.stride(i)) return false;
    }
    const Location x = locate(*a.to_halide().raw_buffer()), y = locate(*b.to_halide().raw_buffer());
    return x.allocation == y.allocation && x.address == y.address;
}

namespace {

// A tensor's bytes for the overlap checks: where its first element is (through its
// device's backend) and its strides in bytes.
MemoryLayout memory_layout(const Tensor &t) {
    const halide_buffer_t &b = *t.to_halide().raw_buffer();
    const Location at = locate(b);
    MemoryLayout m;
    m.allocation = at.allocation;
    m.base = at.address;
    m.bytes = b.type.bytes();
    for (int i = 0; i < t.rank(); i++) m.dims.push_back({t.size(i), t.stride(i) * m.bytes});
    return m;
}

// A tensor with its layout, built once per call for all the pairs it is checked in; no
// layout for a tensor without elements (it shares nothing).
struct Checked {
    const Named *named;
    std::optional<MemoryLayout> layout;
};

std::vector<Checked> with_layouts(std::initializer_list<Named> tensors) {
    std::vector<Checked> checked;
    for (const Named &n : tensors) {
        const Tensor &t = *n.tensor;
        checked.push_back({&n, t.defined() && t.numel() > 0 ? std::optional(memory_layout(t)) : std::nullopt});
    }
    return checked;
}

// Rejects `out` when it may share an element with `other` (Unknown counts as shared:
// a race is worse than a refused call).
void require_no_shared_element(const char *op, const Checked &out, const Checked &other, const std::string &why) {
    if (!out.layout || !other.layout || out.named->tensor->device() != other.named->tensor->device()) return;
    const Overlap o = shares_memory(*out.layout, *other.layout);
    if (o == Overlap::No) return;
    const char *name = other.named->name;
    reject(op, out.named->name, std::string("no element shared with ") + name + why,
           o == Overlap::Yes ? std::string("a tensor sharing elements with ") + name
                             : std::string("strides for which helix could not rule out a shared element with ") + name +
                                   " (within " + str(kOverlapWork) + " steps)");
}

// The bytes a tensor's elements may touch, [lo, hi] in its allocation.
struct Span {
    bool empty;
    uint64_t allocation;
    __int128 lo, hi;
};

Span span_of(const Tensor &t) {
    if (!t.defined() || t.numel() == 0) return {true, 0, 0, 0};
    const halide_buffer_t &b = *t.to_halide().raw_buffer();
    const Location at = locate(b);
    __int128 lo = at.address, hi = lo + b.type.bytes() - 1;
    for (int i = 0; i < t.rank(); i++) {
        const __int128 reach = static_cast<__int128>(t.size(i) - 1) * t.stride(i) * b.type.bytes();
        (reach < 0 ? lo : hi) += reach;
    }
    return {false, at.allocation, lo, hi};
}

bool may_meet(const Span &a, const Span &b) {
    return !a.empty && !b.empty && a.allocation == b.allocation && a.lo <= b.hi && b.lo <= a.hi;
}

// No two elements of t share a byte, by the sufficient test of dense and padded layouts:
// each dimension's stride (by size) steps past everything the smaller ones reach.
bool plainly_not_self_overlapping(const Tensor &t) {
    const int64_t bytes = t.element_size();
    int64_t stride[8], extent[8];
    int count = 0;
    for (int i = 0; i < t.rank(); i++) {
        if (t.size(i) <= 1) continue;
        if (count == 8) return false;
        stride[count] = (t.stride(i) < 0 ? -t.stride(i) : t.stride(i)) * bytes;
        extent[count++] = t.size(i);
    }
    __int128 reach = bytes;  // bytes covered by the dimensions so far, from the first element
    for (int done = 0; done < count; done++) {
        int next = done;  // the smallest stride left (selection: no allocation)
        for (int j = done + 1; j < count; j++) next = stride[j] < stride[next] ? j : next;
        std::swap(stride[done], stride[next]);
        std::swap(extent[done], extent[next]);
        if (stride[done] < reach) return false;
        reach += static_cast<__int128>(stride[done]) * (extent[done] - 1);
    }
    return true;
}

// require_disjoint's answer when it is plain without the exact (allocating) solver: the
// tensors of a call usually lie in separate allocations or byte ranges, in dense layouts.
bool plainly_disjoint(std::initializer_list<Named> outputs, std::initializer_list<Named> inputs) {
    constexpr size_t kMost = 8;  // spans computed once each, on the stack
    if (inputs.size() > kMost || outputs.size() > kMost) return false;
    Span in_spans[kMost], out_spans[kMost];
    size_t i = 0;
    for (const Named &in : inputs) in_spans[i++] = span_of(*in.tensor);
    size_t o = 0;
    for (auto out = outputs.begin(); out != outputs.end(); ++out, ++o) {
        const Tensor &t = *out->tensor;
        out_spans[o] = span_of(t);
        if (out_spans[o].empty) continue;
        if (t.numel() > 1 && !plainly_not_self_overlapping(t)) return false;
        i = 0;
        for (const Named &in : inputs) {
            const Span &in_span = in_spans[i++];
            if (out->in_place_of == in.tensor && same_view(t, *in.tensor)) continue;
            if (in.tensor->device() == t.device() && may_meet(out_spans[o], in_span)) return false;
        }
        for (size_t j = 0; j < o; j++) {
            const Tensor &other = *outputs.begin()[j].tensor;
            if (other.device() == t.device() && may_meet(out_spans[o], out_spans[j])) return false;
        }
    }
    return true;
}

}  // namespace

void require_int32_offsets(const char *op, std::initializer_list<Named> tensors) {
    constexpr int64_t kMost = std::numeric_limits<int32_t>::max();
    for (const Named &x : tensors) {
        const Tensor &t = *x.tensor;
        const Span span = span_of(t);
        if (span.empty) continue;
        // The farthest element's offset: (hi - lo + 1) / element_size - 1 <= kMost.
        bool fits = t.numel() <= kMost && span.hi - span.lo + 1 <= (static_cast<__int128>(kMost) + 1) * t.element_size();
        for (int i = 0; i < t.rank(); i++) fits &= t.size(i) * (t.stride(i) < 0 ? -t.stride(i) : t.stride(i)) <= kMost;
        if (!fits) {
            reject(op, x.name, "elements within 2^31 - 1 elements of its first (the kernels index in 32 bits)",
                   "shape " + t.shape_string() + ", strides " + strides_string(t));
        }
    }
}

// Outputs are written in parallel: none may share an element with an input or another
// output, and no two elements of one output may overlap (a stride-0 dimension, for
// example). Outputs that interleave without a common element are fine, and so is an output
// that is exactly its own input (in_place_of: same memory, same strides).
void require_disjoint(const char *op, std::initializer_list<Named> output_list, std::initializer_list<Named> input_list) {
    if (plainly_disjoint(output_list, input_list)) return;
    const std::vector<Checked> outputs = with_layouts(output_list), inputs = with_layouts(input_list);
    for (auto out = outputs.begin(); out != outputs.end(); ++out) {
        const Tensor &t = *out->named->tensor;
        if (out->layout && t.numel() > 1) {
            const Overlap o = overlaps_itself(*out->layout);
            if (o != Overlap::No) {
                reject(op, out->named->name, "an output whose elements do not overlap each other",
                       std::string(o == Overlap::Yes ? "" : "possibly ") + "overlapping elements: shape " +
                           t.shape_string() + ", strides " + strides_string(t));
            }
        }
        for (const Checked &in : inputs) {
            const Tensor &x = *in.named->tensor;
            const bool own_input = out->named->in_place_of == &x;
            if (own_input && out->layout && in.layout && same_view(t, x)) continue;
            require_no_shared_element(op, *out, in,
                                      own_input ? " (or exactly " + std::string(in.named->name) + ": in place)"
                                                : std::string(" (not in place)"));
        }
        for (auto other = outputs.begin(); other != out; ++other) require_no_shared_element(op, *out, *other, "");
    }
}

// Every tensor of a call lives on the device of the first one.
void require_same_device(const char *op, std::initializer_list<Named> tensors) {
    const Named &first = *tensors.begin();
    for (const Named &t : tensors) {
        if (t.tensor->defined() && t.tensor->device() != first.tensor->device()) {
            reject(op, t.name, "device " + to_string(first.tensor->device()) + " (the device of " + first.name + ")",
                   to_string(t.tensor->device()));
        }
    }
}

// The value of a one-element float32 tensor, on whichever device it lives.
float scalar_value(const Tensor &t) {
    const Tensor host = t.device() == Device::CPU ? t : t.to(Device::CPU);
    return *static_cast<const float *>(host.data());
}

int32_t require_int32(const char *op, const std::string &name, int64_t value, int64_t lo) {
    if (value < lo || value > std::numeric_limits<int32_t>::max()) {
        reject(op, name, "a value in [" + str(lo) + ", 2^31)", str(value));
    }
    return static_cast<int32_t>(value);
}

}  // namespace helix::detail
