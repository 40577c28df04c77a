// The operations over a kernel set: checks (checks.h), the kernels' views of the tensors
// (kernel_view.h) and the kernel calls. The public API (api.cpp) runs them on the kernels
// of the tensors' device; tests and benchmarks run them on other sets too.
#include "checks.h"
#include "kernel_view.h"
#include "streaming.h"

#include <HalideRuntime.h>

#include <algorithm>
#include <limits>
#include <utility>

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

// One kernel of apply_rotary_pos_emb with its scale: a table (N or 1 rows, rotary_dim or 1
// columns) or a number.
struct RotaryKernel {
    const char *op;
    const TypedKernels &typed;
    Pairing pairing;
    Tensor scale_table;  // undefined: scale_value
    float scale_value;

    // The kernel on rotary parts (q, k and outputs rotary_dim wide), freqs their table rows.
    void run(const Tensor &q, const Tensor &k, const Tensor &freqs, const Tensor &q_out, const Tensor &k_out) const {
        // One stream empty, the other not: the empty one runs on a one-row scratch instead
        // (the kernels' fused loops and GPU launches need non-empty extents); its result
        // is dropped. Only this corner case allocates (with streamed stores: each tile
        // before the query rows, as in decode).
        Tensor spare[4];
        auto use = [&](const Tensor &t, int64_t n, Tensor &s) {
            if (t.numel()) return t;
            s = Tensor({n, freqs.size(1)}, q.dtype(), q.device());
            return s;
        };
        const int64_t rows = freqs.size(0);
        KernelView q_view(use(q, 1, spare[0]), kTensorDims, pairing), k_view(use(k, rows, spare[1]), kTensorDims, pairing);
        KernelView qo_view(use(q_out, 1, spare[2]), kTensorDims, pairing);
        KernelView ko_view(use(k_out, rows, spare[3]), kTensorDims, pairing);
        for (KernelView *view : {&q_view, &k_view, &qo_view, &ko_view}) view->as_bits(typed.bits);
        KernelView f_view(freqs, kTableDims, pairing);
        const bool aligned =
            q_view.start_aligned() && k_view.start_aligned() && qo_view.start_aligned() && ko_view.start_aligned();
        if (scale_table.defined()) {
            // Broadcast dimensions of the scale table become stride-0 dimensions.
            const Tensor &s = scale_table;
            const int64_t half_width = freqs.size(1) / 2;
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
                return typed.apply_rotary(uc, aligned, q_view.raw(), k_view.raw(), f_view.raw(), scale_value,
                                          qo_view.raw(), ko_view.raw());
            });
        }
        qo_view.mark_written(q_out);
        ko_view.mark_written(k_out);
    }

    // The same with Stores::Streaming (streaming.h): tasks of table rows, each running the
    // kernel serially into its thread's scratch and streaming the rows out.
    void run_streamed(const Tensor &q, const Tensor &k, const Tensor &freqs, const Tensor &q_out,
                      const Tensor &k_out) const {
        const int64_t rows = freqs.size(0), q_rows = q.size(-2), q_first = rows - q_rows;
        const int64_t width = freqs.size(1), element = q.element_size();
        // Output bytes per table row: every q and k head of that row.
        const int64_t row_bytes = (q_rows ? q.numel() / q_rows : 0) * element + k.numel() / rows * element;
        const int64_t block = std::max<int64_t>(1, stream_tile_bytes() / std::max<int64_t>(1, row_bytes));
        const int64_t blocks = (rows + block - 1) / block;
        parallel_tasks(static_cast<int>(blocks), [&](int i) {
            const SerialKernels serial;
            const int64_t r0 = i * block, n = std::min(block, rows - r0);
            const int64_t q0 = std::max(r0, q_first), qn = std::max<int64_t>(0, r0 + n - q0);
            const Tensor qb = q.narrow(-2, q0 - q_first, qn), qob = q_out.narrow(-2, q0 - q_first, qn);
            const Tensor kb = k.narrow(-2, r0, n), kob = k_out.narrow(-2, r0, n);
            char *scratch = thread_scratch(static_cast<size_t>((qb.numel() + kb.numel()) * element));
            const Tensor qs = Tensor::wrap(scratch, qb.shape(), {}, q.dtype());
            const Tensor ks = Tensor::wrap(scratch + qb.numel() * element, kb.shape(), {}, q.dtype());
            RotaryKernel tile = *this;
            if (scale_table.defined() && scale_table.size(0) == rows) tile.scale_table = scale_table.narrow(0, r0, n);
            tile.run(qb, kb, freqs.narrow(0, r0, n), qs, ks);
            for (const auto &[from, to] : {std::pair{&qs, &qob}, std::pair{&ks, &kob}}) {
                const char *src = static_cast<const char *>(from->data());
                for_each_row(*to, [&](char *dst) {
                    copy_lines(src, dst, static_cast<size_t>(width * element), true);
                    src += width * element;
                });
            }
            stream_fence();
        });
    }

    // f(address of the row) for every row of a rank 2 to 4 CPU tensor, in memory order of
    // a contiguous tensor of its shape.
    template <typename F>
    static void for_each_row(const Tensor &t, F &&f) {
        int64_t size[3] = {1, 1, 1}, stride[3] = {0, 0, 0};
        for (int i = 0; i < t.rank() - 1; i++) {
            size[3 - (t.rank() - 1) + i] = t.size(i);
            stride[3 - (t.rank() - 1) + i] = t.stride(i) * t.element_size();
        }
        char *base = static_cast<char *>(t.data());
        for (int64_t a = 0; a < size[0]; a++)
            for (int64_t b = 0; b < size[1]; b++)
                for (int64_t c = 0; c < size[2]; c++) f(base + a * stride[0] + b * stride[1] + c * stride[2]);
    }
};

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
        const RotaryKernel kernel{op, typed, options.pairing, use_table ? s : Tensor(), scale_f32};
        const Tensor q_in = features(q, rotary_dim), k_in = features(k, rotary_dim);
        const Tensor q_res = features(q_out, rotary_dim), k_res = features(k_out, rotary_dim);
        const bool in_place = same_view(q, q_out) || same_view(k, k_out);
        const int64_t out_bytes = (q_res.numel() + k_res.numel()) * q.element_size();
        if (q.device() == Device::CPU && resolve_stores(options.stores, out_bytes, in_place) == Stores::Streaming) {
            kernel.run_streamed(q_in, k_in, freqs, q_res, k_res);
        } else {
            kernel.run(q_in, k_in, freqs, q_res, k_res);
        }
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
