// The operations over a kernel set: checks (checks.h), the kernels' views of the tensors
// (kernel_view.h) and the kernel calls. The public API (api.cpp) runs them on the kernels
// of the tensors' device; tests and benchmarks run them on other sets too.
#include "checks.h"
#include "kernel_view.h"

#include <HalideRuntime.h>

#include <limits>

namespace helix {
namespace detail {
namespace {

template <typename F>
void run_kernel(const char *op, F &&call) {
    CallContext context;
    context.check(op, call(&context));
}

// Copies the features of x into out (one shape, rank 2 to 4): on the CPU with the set's
// parallel copy kernels, on a device with its own buffer copy.
void copy_features(const Kernels &kernels, const char *op, const Tensor &x, const Tensor &out) {
    const auto copy = x.element_size() == 2 ? kernels.copy_16 : kernels.copy_32;
    if (x.device() != Device::CPU || !copy) {
        out.copy_from(x);
        return;
    }
    KernelView x_view(x, 4), out_view(out, 4);  // (features, n, h, b)
    x_view.as_bits(true);
    out_view.as_bits(true);
    run_kernel(op, [&](void *uc) { return copy(uc, x_view.raw(), out_view.raw()); });
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
    const TableKernels *table = kernels.find(emb.pairing());
    if (!table) {
        reject(op, "pairing", "a pairing this build has table kernels for", to_string(emb.pairing()));
    }
    const float theta = static_cast<float>(emb.theta());
    const int32_t first = static_cast<int32_t>(start);
    if (rows > 0) {
        KernelView freqs_view(freqs, kTableDims, emb.pairing());
        if (emb.use_xpos()) {
            KernelView scale_view(scale, kTableDims, emb.pairing());
            const float scale_base = static_cast<float>(*emb.scale_base());
            run_kernel(op, [&](void *uc) {
                return table->sinusoidal_table_xpos(uc, theta, n, first,
                                                    freqs_view.start_aligned() && scale_view.start_aligned(),
                                                    scale_base, freqs_view.raw(), scale_view.raw());
            });
            scale_view.mark_written(scale);
        } else {
            run_kernel(op, [&](void *uc) {
                return table->sinusoidal_table(uc, theta, n, first, freqs_view.start_aligned(), freqs_view.raw());
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

void rotate_half(const Kernels &kernels, const Tensor &x, const Tensor &out, Pairing pairing) {
    const char *op = "rotate_half";
    require_rank(op, "x", x, 1, 4);
    const TypedKernels &typed = require_kernels(op, "x", kernels, x, pairing);
    if (x.size(-1) % 2) reject(op, "x", "an even last dimension", "shape " + x.shape_string());
    require_unit_feature_stride(op, "x", x);
    require_shape(op, "out", out, x.shape(), " (the shape of x)");
    require_dtype(op, "out", out, x.dtype(), " (the dtype of x)");
    require_unit_feature_stride(op, "out", out);
    require_same_device(op, {{"x", &x}, {"out", &out}});
    require_disjoint(op, {{"out", &out, &x}}, {{"x", &x}});
    if (x.numel() == 0) return;
    KernelView x_view(x, kTensorDims, pairing), out_view(out, kTensorDims, pairing);
    x_view.as_bits(typed.bits);
    out_view.as_bits(typed.bits);
    const bool aligned = x_view.start_aligned() && out_view.start_aligned();
    run_kernel(op, [&](void *uc) { return typed.rotate_half(uc, aligned, x_view.raw(), out_view.raw()); });
    out_view.mark_written(out);
}

// ---- apply_rotary_pos_emb -----------------------------------------------------------

namespace {

// The first `width` features of a tensor (the rotary part), or the tensor itself.
Tensor features(const Tensor &t, int64_t width) { return t.size(-1) == width ? t : t.narrow(-1, 0, width); }

}  // namespace

void apply_rotary_pos_emb(const Kernels &kernels, const Tensor &q, const Tensor &k, const Tensor &freqs,
                          const Scale &scale, const Tensor &q_out, const Tensor &k_out, const RotaryOptions &options) {
    const char *op = "apply_rotary_pos_emb";
    require_rank(op, "freqs", freqs, 2, 2);
    require_dtype(op, "freqs", freqs, DType::Float32, " (tables are float32)");
    const int64_t rows = freqs.size(0), width = freqs.size(1);
    if (width % 2) reject(op, "freqs", "an even last dimension", "shape " + freqs.shape_string());
    require_unit_feature_stride(op, "freqs", freqs);
    const std::string table = "(N, rotary_dim) = " + freqs.shape_string();

    require_rank(op, "q", q, 2, 4);
    const TypedKernels &typed = require_kernels(op, "q", kernels, q, options.pairing);
    require_rank(op, "k", k, 2, 4);
    require_dtype(op, "k", k, q.dtype(), " (the dtype of q)");
    // The rotary part: the first rotary_dim features (all d unless given).
    const int64_t d = q.size(-1);
    const int64_t rotary_dim = options.rotary_dim ? options.rotary_dim : d;
    if (rotary_dim < 0 || rotary_dim % 2 || rotary_dim > d) {
        reject(op, "rotary_dim", "an even number <= d = " + str(d) + " (the last dimension of q)", str(rotary_dim));
    }
    if (width != rotary_dim) {
        reject(op, "freqs", "last dimension " + str(rotary_dim) +
                                (options.rotary_dim ? " (rotary_dim)" : " (the last dimension of q; rotary_dim not set)"),
               "shape " + freqs.shape_string());
    }
    for (const Named &x : {Named{"q", &q}, Named{"k", &k}}) {
        if (x.tensor->size(-1) != d) {
            reject(op, x.name, "last dimension " + str(d) + " (the last dimension of q)", "shape " + x.tensor->shape_string());
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

    // scale: nothing, a number, a one-element tensor, or a table broadcastable to freqs.
    const Tensor &s = scale.tensor();
    double scale_value = scale.value();
    bool use_table = false;
    if (s.defined()) {
        require_defined(op, "scale", s);  // with memory: a one-element scale is read here
        require_dtype(op, "scale", s, DType::Float32, " (tables are float32)");
        if (s.numel() == 1) {
            scale_value = scalar_value(s);
        } else if (s.rank() == 2 && (s.size(0) == rows || s.size(0) == 1) && (s.size(1) == width || s.size(1) == 1)) {
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

    if (rotary_dim > 0) {
        // One stream empty, the other not: the empty one runs on a one-head scratch
        // instead (the kernels' fused loops and GPU launches need non-empty extents); its
        // result is dropped. Only this corner case allocates.
        Tensor scratch[4];
        auto use = [&](const Tensor &t, int64_t n, Tensor &spare) {
            if (t.numel()) return features(t, rotary_dim);
            spare = Tensor({n, rotary_dim}, q.dtype(), q.device());
            return spare;
        };
        const Tensor q_in = use(q, 1, scratch[0]), q_res = use(q_out, 1, scratch[1]);
        const Tensor k_in = use(k, rows, scratch[2]), k_res = use(k_out, rows, scratch[3]);
        const Pairing pairing = options.pairing;
        KernelView q_view(q_in, kTensorDims, pairing), k_view(k_in, kTensorDims, pairing);
        KernelView qo_view(q_res, kTensorDims, pairing), ko_view(k_res, kTensorDims, pairing);
        for (KernelView *view : {&q_view, &k_view, &qo_view, &ko_view}) view->as_bits(typed.bits);
        KernelView f_view(freqs, kTableDims, pairing);
        const bool aligned =
            q_view.start_aligned() && k_view.start_aligned() && qo_view.start_aligned() && ko_view.start_aligned();
        if (use_table) {
            // Broadcast dimensions of the scale table become stride-0 dimensions.
            const int64_t half_width = rotary_dim / 2;
            const int64_t col = s.size(1) == 1 ? 0 : s.stride(1);
            const int64_t row = s.size(0) == 1 ? 0 : s.stride(0);
            const auto [pair, member] = pair_strides(half_width, col, pairing);
            const int32_t pair_stride = require_int32(op, "scale (stride between pairs)", pair,
                                                      std::numeric_limits<int32_t>::min());
            const int32_t half_stride = require_int32(op, "scale (stride between the members of a pair)", member,
                                                      std::numeric_limits<int32_t>::min());
            halide_dimension_t shape[kTableDims] = {
                halide_dimension_t(0, static_cast<int32_t>(half_width), pair_stride), halide_dimension_t(0, 2, half_stride),
                halide_dimension_t(0, static_cast<int32_t>(rows), static_cast<int32_t>(row))};
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
    // Partial rotary: the features past rotary_dim pass through (untouched in place).
    if (rotary_dim < d) {
        for (const auto &[in, out] : {std::pair{&q, &q_out}, std::pair{&k, &k_out}}) {
            if (in->numel() && !same_view(*in, *out)) {
                copy_features(kernels, op, in->narrow(-1, rotary_dim, d - rotary_dim),
                              out->narrow(-1, rotary_dim, d - rotary_dim));
            }
        }
    }
}

}  // namespace detail
}  // namespace helix
