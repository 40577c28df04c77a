// The operations of helix.h: argument checks (SPEC section 3), the zero-copy views the
// kernels take, and the kernel calls.
#include "backends.h"
#include "error.h"
#include "kernels.h"
#include "overlap.h"

#include <HalideRuntime.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace helix {
namespace detail {
namespace {

// ---- views --------------------------------------------------------------------------

constexpr int kMaxViewDims = 5;

// A kernel's view of a tensor's memory: the tensor's halide_buffer_t (host pointer,
// device handle and flags alike) with other dimensions. Built in place, not copied: it
// points into itself.
class KernelView {
public:
    KernelView(const Tensor &t, int dims, const halide_dimension_t *shape) : buf_(*t.to_halide().raw_buffer()) {
        std::copy(shape, shape + dims, dims_);
        buf_.dimensions = dims;
        buf_.dim = dims_;
    }
    // The kernels' view of a (..., n, d) tensor: (jj, half, n, h, b, ...) with d = 2H
    // split into halves (feature j = jj + half * H), missing leading dimensions of
    // extent 1.
    KernelView(const Tensor &t, int dims) : KernelView(t, dims, pair_shape(t, dims).data()) {}
    KernelView(const KernelView &) = delete;
    KernelView &operator=(const KernelView &) = delete;

    halide_buffer_t *raw() { return &buf_; }
    // Whether the view starts 16-byte aligned (host, device address or cl_mem offset).
    bool start_aligned() const {
        return locate(buf_).address % 16 == 0;
    }
    // An output's flags (device copy newer than the host's) back onto its tensor.
    void mark_written(const Tensor &t) const {
        const_cast<halide_buffer_t *>(t.to_halide().raw_buffer())->flags = buf_.flags;
    }

private:
    static std::vector<halide_dimension_t> pair_shape(const Tensor &t, int dims) {
        const int rank = t.rank();
        const int32_t half_width = static_cast<int32_t>(t.size(-1) / 2);
        const int32_t feature_stride = static_cast<int32_t>(t.stride(-1));
        std::vector<halide_dimension_t> shape(dims);
        shape[0] = halide_dimension_t(0, half_width, feature_stride);
        shape[1] = halide_dimension_t(0, 2, half_width * feature_stride);
        for (int i = 2; i < dims; i++) {
            const int dim = rank - i;  // i = 2 is the row dimension n, then h, b
            shape[i] = dim >= 0 ? halide_dimension_t(0, static_cast<int32_t>(t.size(dim)),
                                                      static_cast<int32_t>(t.stride(dim)))
                                : halide_dimension_t(0, 1, 0);
        }
        return shape;
    }

    halide_buffer_t buf_;
    halide_dimension_t dims_[kMaxViewDims];
};

constexpr int kTensorDims = 5;  // (jj, half, n, h, b)
constexpr int kTableDims = 3;   // (jj, half, n)

// ---- checks -------------------------------------------------------------------------

std::string dtype_list(const Kernels &kernels) {
    std::string s;
    for (const TypedKernels &t : kernels.typed) s += (s.empty() ? "" : " or ") + to_string(t.dtype);
    return s;
}

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

void require_dtype(const char *op, const char *name, const Tensor &t, DType dtype, const std::string &why) {
    if (t.dtype() != dtype) reject(op, name, "dtype " + to_string(dtype) + why, to_string(t.dtype()));
}

const TypedKernels &require_kernels(const char *op, const char *name, const Kernels &kernels, const Tensor &t) {
    const TypedKernels *typed = kernels.find(t.dtype());
    if (!typed) {
        reject(op, name, "dtype " + dtype_list(kernels) + " (the element types helix was built for)",
               to_string(t.dtype()));
    }
    return *typed;
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
                   const std::string &why) {
    require_defined(op, name, t);
    if (t.shape() != shape) {
        std::string expected = "(";
        for (size_t i = 0; i < shape.size(); i++) expected += (i ? ", " : "") + str(shape[i]);
        reject(op, name, "shape " + expected + (shape.size() == 1 ? ",)" : ")") + why, t.shape_string());
    }
}

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

struct Named {
    const char *name;
    const Tensor *tensor;
    const Tensor *in_place_of = nullptr;  // an output: the input it may be exactly (in place)
};

// Whether two tensors are the same view of the same memory: same device and allocation,
// first element, dtype, shape and strides.
bool same_view(const Tensor &a, const Tensor &b) {
    if (a.device() != b.device() || a.dtype() != b.dtype() || a.shape() != b.shape() || a.strides() != b.strides()) {
        return false;
    }
    const Location x = locate(*a.to_halide().raw_buffer()), y = locate(*b.to_halide().raw_buffer());
    return x.allocation == y.allocation && x.address == y.address;
}

// Rejects `out` when it may share an element with `other` (Unknown counts as shared:
// a race is worse than a refused call).
void require_no_shared_element(const char *op, const Named &out, const Named &other, const std::string &why) {
    const Tensor &a = *out.tensor, &b = *other.tensor;
    if (!a.defined() || !b.defined() || a.device() != b.device() || a.numel() == 0 || b.numel() == 0) return;
    const Overlap o = shares_memory(memory_layout(a), memory_layout(b));
    if (o == Overlap::No) return;
    reject(op, out.name, std::string("no element shared with ") + other.name + why,
           o == Overlap::Yes ? std::string("a tensor sharing elements with ") + other.name
                             : std::string("strides for which helix could not rule out a shared element with ") +
                                   other.name + " (within " + str(kOverlapWork) + " steps)");
}

// Outputs are written in parallel: none may share an element with an input or another
// output, and no two elements of one output may overlap (a stride-0 dimension, for
// example). Outputs that interleave without a common element are fine, and so is an output
// that is exactly its own input (in_place_of: same memory, same strides), on the CPU.
void require_disjoint(const char *op, std::initializer_list<Named> outputs, std::initializer_list<Named> inputs) {
    for (auto out = outputs.begin(); out != outputs.end(); ++out) {
        const Tensor &t = *out->tensor;
        if (t.defined() && t.numel() > 1) {
            const Overlap o = overlaps_itself(memory_layout(t));
            if (o != Overlap::No) {
                reject(op, out->name, "an output whose elements do not overlap each other",
                       std::string(o == Overlap::Yes ? "" : "possibly ") + "overlapping elements: shape " +
                           t.shape_string() + ", strides " + strides_string(t));
            }
        }
        for (const Named &in : inputs) {
            if (out->in_place_of == in.tensor && t.defined() && in.tensor->defined() && same_view(t, *in.tensor)) {
                if (t.device() != Device::CPU) {
                    reject(op, out->name, std::string("an output apart from ") + in.name + " (in place runs on the cpu only so far)",
                           "the same tensor on " + to_string(t.device()));
                }
                continue;
            }
            require_no_shared_element(op, *out, in,
                                      out->in_place_of == in.tensor ? " (or exactly " + std::string(in.name) + ": in place)"
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

template <typename F>
void run_kernel(const char *op, F &&call) {
    CallContext context;
    context.check(op, call(&context));
}

}  // namespace

// ---- sinusoidal tables --------------------------------------------------------------

void sinusoidal_window(const Kernels &kernels, const SinusoidalEmbeddings &emb, int64_t seq_len, int64_t start,
                       const Tensor &freqs, const Tensor &scale) {
    const char *op = emb.use_xpos() ? "SinusoidalEmbeddings(use_xpos)" : "SinusoidalEmbeddings";
    const int32_t n = require_int32(op, "seq_len", seq_len, 0);
    const std::string width = " (dim = " + str(emb.dim()) + ")";
    require_rank(op, "freqs", freqs, 2, 2);
    require_dtype(op, "freqs", freqs, DType::Float32, " (tables are float32)");
    if (freqs.size(-1) != emb.dim()) reject(op, "freqs", "last dimension " + str(emb.dim()) + width, freqs.shape_string());
    require_unit_feature_stride(op, "freqs", freqs);
    const int64_t rows = freqs.size(0);
    if (start < 0 || start > seq_len || rows > seq_len - start) {
        reject(op, "start", "positions [start, start + rows) inside the table's range [0, " + str(seq_len) + ")",
               range_string(start, rows));
    }
    require_defined(op, "scale", scale);
    require_dtype(op, "scale", scale, DType::Float32, " (tables are float32)");
    if (emb.use_xpos()) {
        require_shape(op, "scale", scale, freqs.shape(), " (the shape of freqs)");
        require_unit_feature_stride(op, "scale", scale);
    } else if (scale.numel() != 1) {
        reject(op, "scale", "one element (no xPos: the scale is 1)", "shape " + scale.shape_string());
    }
    require_disjoint(op, {{"freqs", &freqs}, {"scale", &scale}}, {});

    require_same_device(op, {{"freqs", &freqs}, {"scale", &scale}});
    const float theta = static_cast<float>(emb.theta());
    const int32_t first = static_cast<int32_t>(start);
    if (rows > 0) {
        KernelView freqs_view(freqs, kTableDims);
        if (emb.use_xpos()) {
            KernelView scale_view(scale, kTableDims);
            const float scale_base = static_cast<float>(*emb.scale_base());
            run_kernel(op, [&](void *uc) {
                return kernels.sinusoidal_table_xpos(uc, theta, n, first,
                                                     freqs_view.start_aligned() && scale_view.start_aligned(),
                                                     scale_base, freqs_view.raw(), scale_view.raw());
            });
            scale_view.mark_written(scale);
        } else {
            run_kernel(op, [&](void *uc) {
                return kernels.sinusoidal_table(uc, theta, n, first, freqs_view.start_aligned(), freqs_view.raw());
            });
        }
        freqs_view.mark_written(freqs);
    }
    if (!emb.use_xpos()) {
        // Without xPos the scale is the constant 1, for an empty table too (Zeta's
        // ones(1)); written once the table succeeded.
        const Tensor one(scale.shape());
        Halide::Runtime::Buffer<float>(one.to_halide()).fill(1.0f);
        scale.copy_from(one);
    }
}

// ---- rotate_half --------------------------------------------------------------------

void rotate_half(const Kernels &kernels, const Tensor &x, const Tensor &out) {
    const char *op = "rotate_half";
    require_rank(op, "x", x, 1, 4);
    const TypedKernels &typed = require_kernels(op, "x", kernels, x);
    if (x.size(-1) % 2) reject(op, "x", "an even last dimension", "shape " + x.shape_string());
    require_unit_feature_stride(op, "x", x);
    require_shape(op, "out", out, x.shape(), " (the shape of x)");
    require_dtype(op, "out", out, x.dtype(), " (the dtype of x)");
    require_unit_feature_stride(op, "out", out);
    require_same_device(op, {{"x", &x}, {"out", &out}});
    require_disjoint(op, {{"out", &out, &x}}, {{"x", &x}});
    if (x.numel() == 0) return;
    KernelView x_view(x, kTensorDims), out_view(out, kTensorDims);
    const bool aligned = x_view.start_aligned() && out_view.start_aligned();
    run_kernel(op, [&](void *uc) { return typed.rotate_half(uc, aligned, x_view.raw(), out_view.raw()); });
    out_view.mark_written(out);
}

// ---- apply_rotary_pos_emb -----------------------------------------------------------

void apply_rotary_pos_emb(const Kernels &kernels, const Tensor &q, const Tensor &k, const Tensor &freqs,
                          const Scale &scale, const Tensor &q_out, const Tensor &k_out) {
    const char *op = "apply_rotary_pos_emb";
    require_rank(op, "freqs", freqs, 2, 2);
    require_dtype(op, "freqs", freqs, DType::Float32, " (tables are float32)");
    const int64_t rows = freqs.size(0), dim = freqs.size(1);
    if (dim % 2) reject(op, "freqs", "an even last dimension", "shape " + freqs.shape_string());
    require_unit_feature_stride(op, "freqs", freqs);
    const std::string table = "(N, dim) = " + freqs.shape_string();

    require_rank(op, "q", q, 2, 4);
    const TypedKernels &typed = require_kernels(op, "q", kernels, q);
    require_rank(op, "k", k, 2, 4);
    require_dtype(op, "k", k, q.dtype(), " (the dtype of q)");
    for (const Named &x : {Named{"q", &q}, Named{"k", &k}}) {
        if (x.tensor->size(-1) != dim) {
            reject(op, x.name, "last dimension " + str(dim) + " (the width of freqs " + table + ")",
                   "shape " + x.tensor->shape_string());
        }
        require_unit_feature_stride(op, x.name, *x.tensor);
    }
    if (q.size(-2) > rows) {
        reject(op, "q", "at most " + str(rows) + " rows (the length of freqs " + table + ")",
               "shape " + q.shape_string());
    }
    if (k.size(-2) != rows) {
        reject(op, "k", str(rows) + " rows (the length of freqs " + table + ")", "shape " + k.shape_string());
    }

    // scale: nothing, a number, a one-element tensor, or a table broadcastable to (N, dim).
    const Tensor &s = scale.tensor();
    double scale_value = scale.value();
    bool use_table = false;
    if (s.defined()) {
        require_defined(op, "scale", s);  // with memory: a one-element scale is read here
        require_dtype(op, "scale", s, DType::Float32, " (tables are float32)");
        if (s.numel() == 1) {
            scale_value = scalar_value(s);
        } else if (s.rank() == 2 && (s.size(0) == rows || s.size(0) == 1) && (s.size(1) == dim || s.size(1) == 1)) {
            use_table = true;
        } else {
            reject(op, "scale", "a scalar, a one-element tensor or a 2-D table broadcastable to " + table,
                   "shape " + s.shape_string());
        }
    }
    const float scale_f32 = use_table ? 1.0f : require_positive_float(op, "scale", scale_value);

    require_shape(op, "q_out", q_out, q.shape(), " (the shape of q)");
    require_shape(op, "k_out", k_out, k.shape(), " (the shape of k)");
    for (const Named &x : {Named{"q_out", &q_out}, Named{"k_out", &k_out}}) {
        require_dtype(op, x.name, *x.tensor, q.dtype(), " (the dtype of q)");
        require_unit_feature_stride(op, x.name, *x.tensor);
    }
    require_same_device(op, {{"q", &q}, {"k", &k}, {"freqs", &freqs}, {"scale", &s}, {"q_out", &q_out},
                             {"k_out", &k_out}});
    require_disjoint(op, {{"q_out", &q_out, &q}, {"k_out", &k_out, &k}},
                     {{"q", &q}, {"k", &k}, {"freqs", &freqs}, {"scale", &s}});
    if (q.numel() == 0 && k.numel() == 0) return;

    // One stream empty, the other not: the empty one runs on a one-head scratch instead
    // (the kernels' fused loops and GPU launches need non-empty extents); its result is
    // dropped. Only this corner case allocates.
    Tensor scratch[4];
    auto use = [&](const Tensor &t, int64_t n, Tensor &spare) -> const Tensor & {
        if (t.numel()) return t;
        spare = Tensor({n, dim}, q.dtype(), q.device());
        return spare;
    };
    const Tensor &q_in = use(q, 1, scratch[0]), &q_res = use(q_out, 1, scratch[1]);
    const Tensor &k_in = use(k, rows, scratch[2]), &k_res = use(k_out, rows, scratch[3]);
    KernelView q_view(q_in, kTensorDims), k_view(k_in, kTensorDims);
    KernelView qo_view(q_res, kTensorDims), ko_view(k_res, kTensorDims);
    KernelView f_view(freqs, kTableDims);
    const bool aligned =
        q_view.start_aligned() && k_view.start_aligned() && qo_view.start_aligned() && ko_view.start_aligned();
    if (use_table) {
        // Broadcast dimensions of the scale table become stride-0 dimensions.
        const int64_t half_width = dim / 2;
        const int64_t col = s.size(1) == 1 ? 0 : s.stride(1);
        const int64_t row = s.size(0) == 1 ? 0 : s.stride(0);
        const int32_t half_stride = require_int32(op, "scale (stride of a half row)", half_width * col,
                                                  std::numeric_limits<int32_t>::min());
        halide_dimension_t shape[kTableDims] = {
            halide_dimension_t(0, static_cast<int32_t>(half_width), static_cast<int32_t>(col)),
            halide_dimension_t(0, 2, half_stride), halide_dimension_t(0, static_cast<int32_t>(rows), static_cast<int32_t>(row))};
        KernelView s_view(s, kTableDims, shape);
        run_kernel(op, [&](void *uc) {
            return typed.apply_rotary_table(uc, aligned, q_view.raw(), k_view.raw(), f_view.raw(), s_view.raw(),
                                            qo_view.raw(), ko_view.raw());
        });
    } else {
        run_kernel(op, [&](void *uc) {
            return typed.apply_rotary(uc, aligned, q_view.raw(), k_view.raw(), f_view.raw(), scale_f32,
                                      qo_view.raw(), ko_view.raw());
        });
    }
    qo_view.mark_written(q_res);
    ko_view.mark_written(k_res);
}

}  // namespace detail

// ---- the public API over the tuned kernels ------------------------------------------

SinusoidalEmbeddings::SinusoidalEmbeddings(int64_t dim, std::optional<double> scale_base, bool use_xpos, double theta)
    : dim_(dim), scale_base_(scale_base), use_xpos_(use_xpos), theta_(theta) {
    const char *op = "SinusoidalEmbeddings";
    if (dim <= 0 || dim % 2 || dim > std::numeric_limits<int32_t>::max()) {
        detail::reject(op, "dim", "a positive even number below 2^31", detail::str(dim));
    }
    // The kernels take theta and scale_base as float32. theta must be a normal float32:
    // below that 1 / theta^(2i / dim) overflows.
    detail::require_positive_float(op, "theta", theta, std::numeric_limits<float>::min());
    if (use_xpos && !scale_base) {
        detail::reject(op, "scale_base", "a value: scale_base must be set when use_xpos is true", "none");
    }
    if (scale_base) detail::require_positive_float(op, "scale_base", *scale_base);
}

RotaryTables SinusoidalEmbeddings::forward(const Tensor &x) const {
    if (!x.defined() || x.rank() < 2) {
        detail::reject("SinusoidalEmbeddings::forward", "x", "rank >= 2 (its size(-2) is the sequence length)",
                       x.defined() ? "rank " + detail::str(x.rank()) : "an undefined tensor");
    }
    return forward(x.size(-2), x.device());
}

RotaryTables SinusoidalEmbeddings::forward(int64_t seq_len, Device device) const {
    if (seq_len < 0 || seq_len > std::numeric_limits<int32_t>::max()) {
        detail::reject("SinusoidalEmbeddings::forward", "seq_len", "a value >= 0 and below 2^31", detail::str(seq_len));
    }
    const std::vector<int64_t> table_shape{seq_len, dim_};
    RotaryTables tables{Tensor(table_shape, DType::Float32, device),
                        Tensor(use_xpos_ ? table_shape : std::vector<int64_t>{1}, DType::Float32, device)};
    forward(seq_len, tables.freqs, tables.scale);
    return tables;
}

void SinusoidalEmbeddings::forward(int64_t seq_len, const Tensor &freqs, const Tensor &scale) const {
    // The whole table, (seq_len, dim): a shorter freqs is a window (see window()).
    if (seq_len >= 0 && freqs.defined() && freqs.rank() == 2 && freqs.size(0) != seq_len) {
        detail::reject("SinusoidalEmbeddings::forward", "freqs", "shape (" + detail::str(seq_len) + ", " +
                       detail::str(dim_) + ") (seq_len rows)", freqs.shape_string());
    }
    window(seq_len, 0, freqs, scale);
}

namespace {

// The kernels of the device the first (defined) tensor lives on; the operations check
// that the others live there too.
const detail::Kernels &kernels_for(const char *op, const char *name, const Tensor &t) {
    return t.defined() ? detail::require_backend(op, name, t.device()).kernels() : detail::tuned_kernels();
}

Tensor like(const Tensor &t) { return t.defined() ? Tensor(t.shape(), t.dtype(), t.device()) : Tensor(); }

}  // namespace

void SinusoidalEmbeddings::window(int64_t seq_len, int64_t start, const Tensor &freqs, const Tensor &scale) const {
    const char *op = "SinusoidalEmbeddings";
    detail::sinusoidal_window(kernels_for(op, "freqs", freqs), *this, seq_len, start, freqs, scale);
}

Tensor rotate_half(const Tensor &x) {
    Tensor out = like(x);
    rotate_half(x, out);
    return out;
}

void rotate_half(const Tensor &x, const Tensor &out) {
    detail::rotate_half(kernels_for("rotate_half", "x", x), x, out);
}

std::pair<Tensor, Tensor> apply_rotary_pos_emb(const Tensor &q, const Tensor &k, const Tensor &freqs,
                                               const Scale &scale) {
    Tensor q_out = like(q), k_out = like(k);
    apply_rotary_pos_emb(q, k, freqs, scale, q_out, k_out);
    return {q_out, k_out};
}

void apply_rotary_pos_emb(const Tensor &q, const Tensor &k, const Tensor &freqs, const Scale &scale,
                          const Tensor &q_out, const Tensor &k_out) {
    detail::apply_rotary_pos_emb(kernels_for("apply_rotary_pos_emb", "q", q), q, k, freqs, scale, q_out, k_out);
}

int set_num_threads(int threads) {
    if (threads < 1) detail::reject("set_num_threads", "threads", "a value >= 1", detail::str(threads));
    return halide_set_num_threads(threads);
}

}  // namespace helix
