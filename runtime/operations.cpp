// The operations over a kernel set: checks (checks.h), the kernels' views of the tensors
// (kernel_view.h) and the kernel calls. The public API (api.cpp) runs them on the kernels
// of the tensors' device; tests and benchmarks run them on other sets too.
#include "checks.h"
#include "kernel_view.h"
#include "positions.h"
#include "rope_scaling.h"
#include "streaming.h"

#include <HalideRuntime.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <limits>
#include <optional>
#include <tuple>
#include <utility>
#include <vector>

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

// The kernels' view of an optional float32 per-frequency tensor, zeros where it is
// undefined: on the CPU one float broadcast by stride-0 dimensions (no allocation), on a
// device a zero tensor there (Halide would copy a host-only buffer over and leave its
// device copy behind).
class OrZeros {
public:
    // shape: outermost first, rank 1 or 2 (an initializer list: no allocation on the CPU).
    OrZeros(const Tensor &t, Device device, std::initializer_list<int64_t> shape) {
        const int rank = static_cast<int>(shape.size());
        if (!t.defined() && device != Device::CPU) device_zeros_ = Tensor(std::vector<int64_t>(shape)).to(device);
        const Tensor &given = t.defined() ? t : device_zeros_;
        if (given.defined()) {
            view_.emplace(given, rank);
            return;
        }
        buffer_.host = reinterpret_cast<uint8_t *>(&zero_);
        buffer_.type = halide_type_t(halide_type_float, 32);
        for (int i = 0; i < rank; i++) dims_[i] = halide_dimension_t(0, static_cast<int32_t>(shape.begin()[rank - 1 - i]), 0);
        view_.emplace(buffer_, rank, dims_);
    }
    halide_buffer_t *raw() { return view_->raw(); }

private:
    float zero_ = 0;
    halide_buffer_t buffer_{};
    halide_dimension_t dims_[2];
    Tensor device_zeros_;
    std::optional<KernelView> view_;
};

// Outputs of at most this many bytes run on the calling thread: waking the thread pool
// costs microseconds, more than such a kernel (a decode step: 40 KiB at (1, 32 + 8, 1, 128)
// float32 in and out).
constexpr int64_t kSerialOutputBytes = 64 * 1024;

// f(address, bytes) for every run of contiguous rows of a rank 2 to 4 CPU tensor with
// unit feature stride, in memory order of a contiguous tensor of its shape: the rows of
// one head are one run when they are adjacent (a contiguous output), so the streaming
// copy works on long spans, not row by row.
template <typename F>
void for_each_run(const Tensor &t, F &&f) {
    const int r = t.rank();
    const int64_t row_elements = t.size(r - 1);
    const bool adjacent = t.stride(r - 2) == row_elements;
    int64_t size[3] = {1, 1, 1}, stride[3] = {0, 0, 0};
    for (int i = 0; i < r - 1; i++) {
        size[3 - (r - 1) + i] = t.size(i);
        stride[3 - (r - 1) + i] = t.stride(i) * t.element_size();
    }
    const int64_t rows_per_run = adjacent ? size[2] : 1;
    const size_t bytes = static_cast<size_t>(rows_per_run * row_elements * t.element_size());
    char *base = static_cast<char *>(t.data());
    for (int64_t a = 0; a < size[0]; a++)
        for (int64_t b = 0; b < size[1]; b++)
            for (int64_t c = 0; c < size[2]; c += rows_per_run)
                f(base + a * stride[0] + b * stride[1] + c * stride[2], bytes);
}

// Streams the contiguous rows of a tile at `src` out to CPU tensor `out` (its shape) with
// non-temporal stores, prefetching runs of `prefetch` (the next tile's input) on the way,
// one per output run.
void stream_out(const char *src, const Tensor &out, const std::vector<std::pair<const char *, size_t>> &prefetch = {}) {
    size_t run = 0;
    for_each_run(out, [&](char *dst, size_t bytes) {
        const auto [next, next_bytes] = run < prefetch.size() ? prefetch[run] : std::pair<const char *, size_t>{};
        copy_lines(src, dst, bytes, true, next, next_bytes);
        src += bytes;
        run++;
    });
}

// The stores of a call on `device` writing out_bytes (streaming.h's resolve_stores). Small
// Auto outputs (a decode step) return at once: they never stream, and need no plan.
StorePlan store_plan_of(const Kernels &kernels, PlanClass c, Stores stores, Device device, int64_t out_bytes,
                        bool in_place) {
    if (device != Device::CPU || stores == Stores::Ordinary ||
        (stores == Stores::Auto && out_bytes <= kSerialOutputBytes)) {
        return {};
    }
    return resolve_stores(stores, out_bytes, in_place, [&] { return auto_store_plan(kernels, c); });
}

}  // namespace

// ---- sinusoidal tables --------------------------------------------------------------

void sinusoidal_window(const Kernels &kernels, const SinusoidalEmbeddings &emb, int64_t seq_len, int64_t start,
                       const Tensor &freqs, const Tensor &scale, Stores stores) {
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
    const std::initializer_list<Named> outputs{{"freqs", &freqs}, {"scale", &scale}};
    require_disjoint(op, outputs, {});
    require_same_device(op, outputs);
    require_int32_offsets(op, outputs);
    const TableKernels *table = kernels.find(emb.pairing());
    if (!table) {
        reject(op, "pairing", "a pairing this build has table kernels for", to_string(emb.pairing()));
    }
    const int32_t first = static_cast<int32_t>(start);
    if (rows > 0) {
        // The embedding's frequencies for this table length (scaled), where the kernel runs:
        // float32, or accurate's double ones as high and low parts.
        const bool accurate = emb.angle_mode() == AngleMode::Accurate;
        Tensor parts({emb.dim() / 2, 2});  // (frequency, part): lo stays 0 unless accurate
        float *part = static_cast<float *>(parts.data());
        if (accurate) {
            const std::vector<double> values = emb.inv_freq_f64(seq_len);
            for (size_t i = 0; i < values.size(); i++) std::tie(part[2 * i], part[2 * i + 1]) = split_frequency(values[i]);
        } else {
            const Tensor fp32 = emb.inv_freq(seq_len);
            for (int64_t i = 0; i < fp32.numel(); i++) part[2 * i] = static_cast<const float *>(fp32.data())[i];
        }
        if (freqs.device() != Device::CPU) parts = parts.to(freqs.device());
        KernelView inv_freq_view(parts, 2);
        // Table rows [row, row + f.size(0)) into f (and s with xPos).
        auto run_rows = [&](int32_t row, const Tensor &f, const Tensor &s) {
            KernelView freqs_view(f, kTableDims, emb.pairing());
            if (emb.use_xpos()) {
                KernelView scale_view(s, kTableDims, emb.pairing());
                const float scale_base = static_cast<float>(*emb.scale_base());
                run_kernel(op, [&](void *uc) {
                    return table->sinusoidal_table_xpos(uc, inv_freq_view.raw(), accurate, n, row,
                                                        freqs_view.start_aligned() && scale_view.start_aligned(),
                                                        scale_base, freqs_view.raw(), scale_view.raw());
                });
                scale_view.mark_written(s);
            } else {
                run_kernel(op, [&](void *uc) {
                    return table->sinusoidal_table(uc, inv_freq_view.raw(), accurate, n, row, freqs_view.start_aligned(),
                                                   freqs_view.raw());
                });
            }
            freqs_view.mark_written(f);
        };
        const int64_t out_bytes = (emb.use_xpos() ? 2 : 1) * freqs.numel() * int64_t(sizeof(float));
        if (store_plan_of(kernels, PlanClass::Table, stores, freqs.device(), out_bytes, false).stores !=
            Stores::Streaming) {
            run_rows(first, freqs, scale);
        } else {
            // Tiles of rows computed serially into a thread's scratch, then streamed out.
            const int64_t row_bytes = out_bytes / rows;
            const int64_t block = std::max<int64_t>(1, stream_tile_bytes() / row_bytes);
            parallel_tasks(static_cast<int>((rows + block - 1) / block), [&](int task) {
                const SerialKernels serial;
                const int64_t r0 = task * block, count = std::min(block, rows - r0);
                const int64_t width = emb.dim() * int64_t(sizeof(float)), part = count * width;
                char *scratch = thread_scratch(static_cast<size_t>(emb.use_xpos() ? 2 * part : part));
                const Tensor f = Tensor::wrap(scratch, {count, emb.dim()}, {}, DType::Float32);
                const Tensor s = emb.use_xpos() ? Tensor::wrap(scratch + part, {count, emb.dim()}, {}, DType::Float32)
                                                : Tensor();
                run_rows(static_cast<int32_t>(first + r0), f, s);
                for (const auto &[tile, out] : {std::pair{&f, &freqs}, std::pair{&s, &scale}}) {
                    if (tile->defined()) stream_out(static_cast<const char *>(tile->data()), out->narrow(0, r0, count));
                }
                stream_fence();
            });
        }
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
    const std::initializer_list<Named> tensors{{"x", &x}, {"out", &out}};
    require_same_device(op, tensors);
    require_int32_offsets(op, tensors);
    require_disjoint(op, {{"out", &out, &x}}, {{"x", &x}});
    if (x.numel() == 0) return;
    KernelView x_view(x, kTensorDims, pairing), out_view(out, kTensorDims, pairing);
    x_view.as_bits(typed.bits);
    out_view.as_bits(typed.bits);
    const bool aligned = x_view.start_aligned() && out_view.start_aligned();
    std::optional<SerialKernels> serial;
    if (x.device() == Device::CPU && out.numel() * out.element_size() <= kSerialOutputBytes) serial.emplace();
    run_kernel(op, [&](void *uc) { return typed.rotate_half(uc, aligned, x_view.raw(), out_view.raw()); });
    out_view.mark_written(out);
}

// ---- apply_rotary_pos_emb -----------------------------------------------------------

namespace {

// The first `width` features of a tensor (the rotary part): the tensor itself, or a view
// made in `view`. No copy of a tensor handle on the way (a decode step counts them).
const Tensor &features(const Tensor &t, int64_t width, Tensor &view) {
    return !t.defined() || t.size(-1) == width ? t : (view = t.narrow(-1, 0, width));
}

// A one-row stand-in for an empty (or absent) stream: the kernels' fused loops and GPU
// launches need non-empty extents; its result is dropped. On the CPU a per-thread scratch
// (no allocation after the first), on a device a fresh tensor.
class StandIn {
public:
    StandIn(const Tensor &like, int64_t width, Pairing pairing) {
        const int32_t half = static_cast<int32_t>(width / 2);
        const auto [pair, member] = pair_strides(half, 1, pairing);
        shape_[0] = halide_dimension_t(0, half, static_cast<int32_t>(pair));
        shape_[1] = halide_dimension_t(0, 2, static_cast<int32_t>(member));
        for (int i = 2; i < kTensorDims; i++) shape_[i] = halide_dimension_t(0, 1, static_cast<int32_t>(width));
        if (like.device() == Device::CPU) {
            thread_local std::vector<char> scratch;
            const size_t bytes = static_cast<size_t>(width * like.element_size());
            if (scratch.size() < bytes) scratch.resize(bytes);
            buf_.host = reinterpret_cast<uint8_t *>(scratch.data());
            buf_.type = like.to_halide().raw_buffer()->type;
        } else {
            device_ = Tensor({1, width}, like.dtype(), like.device());
            buf_ = *device_.to_halide().raw_buffer();
        }
        rows_buf_.host = reinterpret_cast<uint8_t *>(&row_);
        rows_buf_.type = halide_type_t(halide_type_int, 32);
        rows_buf_.dimensions = 2;
        rows_dims_[0] = rows_dims_[1] = halide_dimension_t(0, 1, 1);
        rows_buf_.dim = rows_dims_;
        if (like.device() != Device::CPU) {
            rows_device_ = Tensor::from_halide(Halide::Runtime::Buffer<>(rows_buf_)).to(like.device());
        }
    }
    StandIn(const StandIn &) = delete;
    StandIn &operator=(const StandIn &) = delete;
    const halide_buffer_t &buffer() const { return buf_; }
    const halide_dimension_t *shape() const { return shape_; }
    halide_buffer_t *rows() {
        return rows_device_.defined() ? const_cast<halide_buffer_t *>(rows_device_.to_halide().raw_buffer()) : &rows_buf_;
    }

private:
    halide_buffer_t buf_{};
    halide_dimension_t shape_[kTensorDims];
    Tensor device_, rows_device_;
    int32_t row_ = 0;
    halide_buffer_t rows_buf_{};
    halide_dimension_t rows_dims_[2];
};

// One call of apply_rotary's kernels: the table form's tensors, the scale and the switches,
// on the rotary parts of q, k and their outputs (rotary_dim wide).
struct RotaryKernel {
    const char *op;
    const TypedKernels &typed;
    Pairing pairing;
    RotaryTable::Form form;
    const Tensor &first, &second;  // freqs (N, width) | cos, sin (N, width / 2) | inv_freq (width / 2,)
    const Tensor *scale_table;     // (N or 1, width or 1); nullptr: scale_value
    float scale_value;
    bool conjugate;
    float attention;  // RotaryTable::attention_factor
    bool accurate;    // the inv_freq form's AngleMode::Accurate
    int64_t width;
    const Tensor &xpos_log2_zeta;  // inv_freq's xPos (RotaryTable::xpos_log2_zeta), or undefined
    float xpos_scale_base;  // 0 without xPos
    int32_t xpos_seq_len;

    // q_rows and k_rows: the positions of q's and k's rows; an empty or undefined stream
    // runs on a stand-in. small: a CPU output small enough for the serial decode kernels.
    void run(const Tensor &q, const Tensor &k, halide_buffer_t *q_rows, halide_buffer_t *k_rows, const Tensor &q_out,
             const Tensor &k_out, bool small = false) const {
        const Tensor &like = q.defined() ? q : k;
        std::optional<StandIn> spare_q, spare_k;
        const bool q_empty = !q.defined() || q.numel() == 0, k_empty = !k.defined() || k.numel() == 0;
        if (q_empty) spare_q.emplace(like, width, pairing);
        if (k_empty) spare_k.emplace(like, width, pairing);
        KernelView q_view = q_empty ? KernelView(spare_q->buffer(), kTensorDims, spare_q->shape())
                                    : KernelView(q, kTensorDims, pairing);
        KernelView qo_view = q_empty ? KernelView(spare_q->buffer(), kTensorDims, spare_q->shape())
                                     : KernelView(q_out, kTensorDims, pairing);
        KernelView k_view = k_empty ? KernelView(spare_k->buffer(), kTensorDims, spare_k->shape())
                                    : KernelView(k, kTensorDims, pairing);
        KernelView ko_view = k_empty ? KernelView(spare_k->buffer(), kTensorDims, spare_k->shape())
                                     : KernelView(k_out, kTensorDims, pairing);
        if (q_empty) q_rows = spare_q->rows();
        if (k_empty) k_rows = spare_k->rows();
        for (KernelView *v : {&q_view, &k_view, &qo_view, &ko_view}) v->as_bits(typed.bits);
        const bool aligned =
            q_view.start_aligned() && k_view.start_aligned() && qo_view.start_aligned() && ko_view.start_aligned();

        // The scale as (jj, half, rows): broadcast dimensions of a table, or the number,
        // become stride-0 dimensions.
        const int64_t half_width = width / 2;
        float value = scale_value;
        halide_buffer_t value_buffer{};
        Tensor value_device;
        const halide_buffer_t *scale_buffer = &value_buffer;
        int64_t col = 0, row = 0, rows = 1;
        if (scale_table) {
            const Tensor &s = *scale_table;
            col = s.size(1) == 1 ? 0 : s.stride(1);
            row = s.size(0) == 1 ? 0 : s.stride(0);
            rows = s.size(0);
            scale_buffer = s.to_halide().raw_buffer();
        } else if (like.device() == Device::CPU) {
            value_buffer.host = reinterpret_cast<uint8_t *>(&value);
            value_buffer.type = halide_type_t(halide_type_float, 32);
        } else {
            const halide_dimension_t one(0, 1, 1);
            value_buffer.host = reinterpret_cast<uint8_t *>(&value);
            value_buffer.type = halide_type_t(halide_type_float, 32);
            value_buffer.dimensions = 1;
            value_buffer.dim = const_cast<halide_dimension_t *>(&one);
            value_device = Tensor::from_halide(Halide::Runtime::Buffer<>(value_buffer)).to(like.device());
            scale_buffer = value_device.to_halide().raw_buffer();
        }
        const auto [pair, member] = pair_strides(half_width, col, pairing);
        const halide_dimension_t scale_shape[kTableDims] = {
            halide_dimension_t(0, static_cast<int32_t>(half_width), static_cast<int32_t>(pair)),
            halide_dimension_t(0, 2, static_cast<int32_t>(member)),
            halide_dimension_t(0, static_cast<int32_t>(rows), static_cast<int32_t>(row))};
        KernelView s_view(*scale_buffer, kTableDims, scale_shape);

        // The decode kernels for a small output whose buffers all have current host memory
        // (the checked kernels report the other cases). Their other checks, left out, hold by
        // construction of the views above or were made by apply_rotary_pos_emb (32-bit
        // offsets: require_int32_offsets).
        auto forms_for = [&](std::initializer_list<const halide_buffer_t *> table) -> const RotaryForms & {
            const halide_buffer_t *streams[] = {q_view.raw(), k_view.raw(), qo_view.raw(), ko_view.raw(),
                                                q_rows, k_rows, s_view.raw()};
            auto on_host = [](const halide_buffer_t *b) {
                return b->host != nullptr && !(b->flags & halide_buffer_flag_device_dirty);
            };
            const bool decode = small && typed.apply_rotary_decode.has(form) && width / 2 <= typed.decode_max_pairs &&
                                std::all_of(std::begin(streams), std::end(streams), on_host) &&
                                std::all_of(table.begin(), table.end(), on_host);
            return decode ? typed.apply_rotary_decode : typed.apply_rotary;
        };
        switch (form) {
        case RotaryTable::Form::Angles: {
            KernelView f_view(first, kTableDims, pairing);
            const RotaryForms &forms = forms_for({f_view.raw()});
            run_kernel(op, [&](void *uc) {
                return forms.angles(uc, aligned, conjugate, attention, q_view.raw(), k_view.raw(), q_rows, k_rows,
                                    f_view.raw(), s_view.raw(), qo_view.raw(), ko_view.raw());
            });
            break;
        }
        case RotaryTable::Form::CosSin: {
            KernelView c_view(first, 2), s2_view(second, 2);  // (jj, N)
            const RotaryForms &forms = forms_for({c_view.raw(), s2_view.raw()});
            run_kernel(op, [&](void *uc) {
                return forms.cos_sin(uc, aligned, conjugate, attention, q_view.raw(), k_view.raw(), q_rows, k_rows,
                                     c_view.raw(), s2_view.raw(), s_view.raw(), qo_view.raw(), ko_view.raw());
            });
            break;
        }
        case RotaryTable::Form::InvFreq: {
            KernelView i_view(first, 1);
            // Without xPos log2(zeta) is 0 (the factor 2^0 = 1); without a low part the
            // frequencies are the float32 ones.
            OrZeros lo(second, like.device(), {width / 2}), zeta(xpos_log2_zeta, like.device(), {width / 2, 2});
            const RotaryForms &forms = forms_for({i_view.raw(), lo.raw(), zeta.raw()});
            run_kernel(op, [&](void *uc) {
                return forms.inv_freq(uc, aligned, conjugate, attention, q_view.raw(), k_view.raw(), q_rows, k_rows,
                                      i_view.raw(), lo.raw(), accurate, zeta.raw(), xpos_scale_base, xpos_seq_len,
                                      s_view.raw(), qo_view.raw(), ko_view.raw());
            });
            break;
        }
        }
        if (!q_empty) qo_view.mark_written(q_out);
        if (!k_empty) ko_view.mark_written(k_out);
    }

    // The same with Stores::Streaming (streaming.h). A tile is a block of rows of
    // `heads_per_tile` heads (0: all) of every batch of q or of k; a task runs a chain of
    // consecutive tiles, each through the kernel serially into its thread's scratch, then
    // streamed out while the next tile's input is prefetched (so the core reads and writes
    // memory at once, as a copy does, instead of in turns).
    void run_streamed(const Tensor &q, const Tensor &k, const StreamRows &q_rows, const StreamRows &k_rows,
                      const Tensor &q_out, const Tensor &k_out, int heads_per_tile) const {
        const int64_t element = (q.defined() ? q : k).element_size();
        struct Stream {
            const Tensor *x, *out;
            const StreamRows *rows;
            int64_t n, heads, group, groups, block, blocks, chain, chains;  // tasks: groups x chains
            int64_t tasks() const { return groups * chains; }
        };
        Stream streams[2] = {{&q, &q_out, &q_rows}, {&k, &k_out, &k_rows}};
        int64_t tiles = 0;
        for (Stream &s : streams) {
            s.n = s.x->defined() && s.x->numel() ? s.x->size(-2) : 0;
            s.heads = s.n && s.x->rank() >= 3 ? s.x->size(-3) : 1;
            s.group = heads_per_tile > 0 ? std::min<int64_t>(heads_per_tile, s.heads) : s.heads;
            s.groups = s.n ? (s.heads + s.group - 1) / s.group : 0;
            // The bytes of one row of a tile: its heads of every batch.
            const int64_t row_bytes = s.n ? s.x->numel() / s.n / s.heads * s.group * element : 1;
            s.block = std::max<int64_t>(1, stream_tile_bytes() / row_bytes);
            s.blocks = (s.n + s.block - 1) / s.block;
            tiles += s.groups * s.blocks;
        }
        // Chains long enough to overlap, with 4 tasks per thread or more to balance them.
        const int64_t chain = std::max<int64_t>(1, tiles / (4 * cpu_threads()));
        for (Stream &s : streams) {
            s.chain = chain;
            s.chains = (s.blocks + chain - 1) / chain;
        }
        parallel_tasks(static_cast<int>(streams[0].tasks() + streams[1].tasks()), [&](int task) {
            const SerialKernels serial;
            const bool is_q = task < streams[0].tasks();
            const Stream &s = streams[is_q ? 0 : 1];
            const int64_t t = is_q ? task : task - streams[0].tasks();
            const int64_t h0 = t / s.chains * s.group, heads = std::min(s.group, s.heads - h0);
            const int64_t first = t % s.chains * s.chain, last = std::min(s.blocks, first + s.chain);
            auto tile_of = [&](const Tensor &x, int64_t block) {
                const int64_t r0 = block * s.block;
                const Tensor rows = x.narrow(-2, r0, std::min(s.block, s.n - r0));
                return heads < s.heads ? rows.narrow(-3, h0, heads) : rows;
            };
            thread_local std::vector<std::pair<const char *, size_t>> next_runs;
            for (int64_t block = first; block < last; block++) {
                const Tensor xb = tile_of(*s.x, block), ob = tile_of(*s.out, block);
                char *scratch = thread_scratch(static_cast<size_t>(xb.numel() * element));
                const Tensor tile = Tensor::wrap(scratch, xb.shape(), {}, xb.dtype());
                StreamRows rows(*s.rows, block * s.block, xb.size(-2));
                if (is_q) {
                    run(xb, Tensor(), rows.raw(), nullptr, tile, Tensor());
                } else {
                    run(Tensor(), xb, nullptr, rows.raw(), Tensor(), tile);
                }
                next_runs.clear();
                if (block + 1 < last) {
                    for_each_run(tile_of(*s.x, block + 1),
                                 [&](char *p, size_t bytes) { next_runs.emplace_back(p, bytes); });
                }
                stream_out(scratch, ob, next_runs);
            }
            stream_fence();
        });
    }
};

// The calibration problem of a plan class (streaming.h): one call with a plan forced,
// timed, on outputs well above the streaming threshold (at least 64 MiB: smaller ones may
// still fit a large L3 and favour ordinary stores). apply_rotary: q (1, 32, R, 128) and
// k (1, 8, R, 128), an angle table, out of place; tables: R rows of d = 128 with xPos.
class Calibration {
public:
    Calibration(const Kernels &kernels, PlanClass c) : kernels_(kernels), class_(c) {
        const int64_t d = 128, out_bytes = std::max<int64_t>(2 * stream_threshold(), int64_t(64) << 20);
        if (c == PlanClass::Table) {
            rows_ = out_bytes / (2 * d * 4) + 1;
            q_out_ = Tensor({rows_, d});
            k_out_ = Tensor({rows_, d});
            return;
        }
        const DType dtype = c == PlanClass::Apply32                                  ? DType::Float32
                            : kernels.find(DType::BFloat16, Pairing::HalfSplit) ? DType::BFloat16
                                                                                  : DType::Float16;
        const int64_t element = c == PlanClass::Apply32 ? 4 : 2;
        rows_ = out_bytes / (40 * d * element) + 1;
        q_ = Tensor({1, 32, rows_, d}, dtype);
        k_ = Tensor({1, 8, rows_, d}, dtype);
        q_out_ = Tensor(q_.shape(), dtype);
        k_out_ = Tensor(k_.shape(), dtype);
        for (const Tensor *t : {&q_, &k_}) {
            std::memset(t->data(), 0x3c, static_cast<size_t>(t->numel() * element));  // 0.0115 (bf16), 1.06 (f16)
        }
        freqs_ = SinusoidalEmbeddings(d).forward(rows_).freqs;
    }
    double operator()(const StorePlan &plan) {
        const ScopedStreamTiles tiles(plan.heads_per_tile);
        const auto start = std::chrono::steady_clock::now();
        if (class_ == PlanClass::Table) {
            sinusoidal_window(kernels_, table_embedding(), rows_, 0, q_out_, k_out_, plan.stores);
        } else {
            RotaryOptions options;
            options.stores = plan.stores;
            apply_rotary_pos_emb(kernels_, q_, k_, RotaryTable::angles(freqs_), q_out_, k_out_, options);
        }
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }

private:
    static const SinusoidalEmbeddings &table_embedding() {
        static const SinusoidalEmbeddings emb(128, 512.0, true);
        return emb;
    }
    const Kernels &kernels_;
    PlanClass class_;
    int64_t rows_ = 0;
    Tensor q_, k_, q_out_, k_out_, freqs_;  // tables: freqs and scale in q_out_ and k_out_
};

}  // namespace

// Auto's plan for class c, timing it on its calibration problem only when needed.
StorePlan auto_store_plan(const Kernels &kernels, PlanClass c) {
    std::optional<Calibration> problem;
    return auto_store_plan(c, [&](const StorePlan &p) {
        if (!problem) problem.emplace(kernels, c);
        return (*problem)(p);
    });
}

StorePlan calibrate_store_plan(const Kernels &kernels, PlanClass c, const std::string &path) {
    Calibration problem(kernels, c);
    return calibrate_store_plan(c, std::ref(problem), path);
}

void apply_rotary_pos_emb(const Kernels &kernels, const Tensor &q, const Tensor &k, const Tensor &freqs,
                          const Scale &scale, const Tensor &q_out, const Tensor &k_out, const RotaryOptions &options) {
    apply_rotary_pos_emb(kernels, q, k, RotaryTable::angles(freqs, scale), q_out, k_out, options);
}

void apply_rotary_pos_emb(const Kernels &kernels, const Tensor &q_arg, const Tensor &k_arg, const RotaryTable &table,
                          const Tensor &q_out_arg, const Tensor &k_out_arg, const RotaryOptions &options) {
    const char *op = "apply_rotary_pos_emb";
    const Positions &q_positions = options.positions;
    const Positions &k_positions = options.k_positions ? *options.k_positions : options.positions;
    const bool q_varlen = q_positions.kind() == Positions::Kind::Varlen;
    const bool k_varlen = k_positions.kind() == Positions::Kind::Varlen;
    const bool has_k = k_arg.defined() || k_out_arg.defined();

    // q and k: rank 2 to 4 (varlen: (total, d) or (total, h, d)), one dtype.
    require_rank(op, "q", q_arg, 2, q_varlen ? 3 : 4);
    const TypedKernels &typed = require_kernels(op, "q", kernels, q_arg, options.pairing);
    if (has_k) {
        if (!k_arg.defined()) reject(op, "k", "a defined tensor (k_out is given)", "an undefined tensor");
        require_rank(op, "k", k_arg, 2, k_varlen ? 3 : 4);
        require_dtype(op, "k", k_arg, q_arg.dtype(), " (the dtype of q)");
    }
    const int64_t d = q_arg.size(-1);
    const int64_t rotary_dim = options.rotary_dim ? options.rotary_dim : d;
    if (rotary_dim < 0 || rotary_dim % 2 || rotary_dim > d) {
        reject(op, "rotary_dim", "an even number <= d = " + str(d) + " (the last dimension of q)", str(rotary_dim));
    }
    const char *width_why = options.rotary_dim ? " (rotary_dim)" : " (the last dimension of q; rotary_dim not set)";

    // The table form (one the set has a kernel for): its tensors, and the table's rows N
    // (positions must lie below).
    if (!typed.apply_rotary.has(table.form())) reject(op, "table", "a table form this kernel set has", to_string(table.form()));
    const Tensor &first = table.first(), &second = table.second();
    int64_t rows = int64_t(1) << 31;
    switch (table.form()) {
    case RotaryTable::Form::Angles:
        require_rank(op, "freqs", first, 2, 2);
        require_dtype(op, "freqs", first, DType::Float32, " (tables are float32)");
        if (first.size(1) != rotary_dim) reject(op, "freqs", "last dimension " + str(rotary_dim) + width_why, "shape " + first.shape_string());
        require_unit_feature_stride(op, "freqs", first);
        rows = first.size(0);
        break;
    case RotaryTable::Form::CosSin:
        for (const Named &t : {Named{"cos", &first}, Named{"sin", &second}}) {
            require_rank(op, t.name, *t.tensor, 2, 2);
            require_dtype(op, t.name, *t.tensor, DType::Float32, " (tables are float32)");
            if (t.tensor->size(1) != rotary_dim / 2) {
                reject(op, t.name, "last dimension " + str(rotary_dim / 2) + " (half of rotary_dim " + str(rotary_dim) + ")",
                       "shape " + t.tensor->shape_string());
            }
            require_unit_feature_stride(op, t.name, *t.tensor);
        }
        require_same_shape(op, "sin", second, first, " (the shape of cos)");
        rows = first.size(0);
        break;
    case RotaryTable::Form::InvFreq:
        require_rank(op, "inv_freq", first, 1, 1);
        require_dtype(op, "inv_freq", first, DType::Float32, " (tables are float32)");
        if (first.size(0) != rotary_dim / 2) {
            reject(op, "inv_freq", "shape (" + str(rotary_dim / 2) + ",) (half of rotary_dim " + str(rotary_dim) + ")",
                   "shape " + first.shape_string());
        }
        require_unit_feature_stride(op, "inv_freq", first);
        if (table.xpos_log2_zeta().defined()) {
            require_same_device(op, {{"inv_freq", &first}, {"xpos_log2_zeta", &table.xpos_log2_zeta()}});
            if (table.xpos_log2_zeta().size(0) != rotary_dim / 2) {
                reject(op, "inv_freq", "xPos of " + str(rotary_dim / 2) + " frequencies (the embedding's)",
                       "xPos of " + str(table.xpos_log2_zeta().size(0)));
            }
        }
        for (const Named &p : {Named{"positions", nullptr}, Named{"k_positions", nullptr}}) {
            const Positions &pos = p.name[0] == 'p' ? q_positions : k_positions;
            if (pos.kind() == Positions::Kind::Aligned && (p.name[0] == 'p' || has_k)) {
                reject(op, p.name, "given: the inv_freq form has no table to align rows to", "none (Zeta's alignment)");
            }
        }
        break;
    }

    for (const Named &x : {Named{"q", &q_arg}, Named{"k", &k_arg}}) {
        if (!x.tensor->defined()) continue;
        if (x.tensor->size(-1) != d) {
            reject(op, x.name, "last dimension " + str(d) + " (the last dimension of q)", "shape " + x.tensor->shape_string());
        }
        require_unit_feature_stride(op, x.name, *x.tensor);
    }
    // Zeta's alignment: q on the last Lq rows of the table, k on all N.
    if (q_positions.kind() == Positions::Kind::Aligned && q_arg.size(-2) > rows) {
        reject(op, "q", "at most " + str(rows) + " rows (the length of the table; Zeta's alignment)",
               "shape " + q_arg.shape_string());
    }
    if (has_k && k_positions.kind() == Positions::Kind::Aligned && k_arg.size(-2) != rows) {
        reject(op, "k", str(rows) + " rows (the length of the table; Zeta's alignment)", "shape " + k_arg.shape_string());
    }

    // scale: nothing, a number, a one-element tensor, or a table broadcastable to (N, rotary_dim).
    const Tensor &s = table.scale().tensor();
    double scale_value = table.scale().value();
    bool use_table = false;
    if (s.defined()) {
        require_defined(op, "scale", s);  // with memory: a one-element scale is read here
        require_dtype(op, "scale", s, DType::Float32, " (tables are float32)");
        const bool no_table = table.form() == RotaryTable::Form::InvFreq;
        if (s.numel() == 1) {
            scale_value = scalar_value(s);
        } else if (s.rank() == 2 && (s.size(0) == 1 || (!no_table && s.size(0) == rows)) &&
                   (s.size(1) == rotary_dim || s.size(1) == 1)) {
            use_table = true;
        } else {
            reject(op, "scale",
                   "a scalar, a one-element tensor or a 2-D table broadcastable to " +
                       (no_table ? "(1, " + str(rotary_dim) + ") (the inv_freq form has no rows)"
                                 : "(N, rotary_dim) = (" + str(rows) + ", " + str(rotary_dim) + ")"),
                   "shape " + s.shape_string());
        }
    }
    const float scale_f32 = use_table ? 1.0f : require_positive_float(op, "scale", scale_value);

    // Outputs: the shapes and dtype of their inputs.
    if (has_k && !k_out_arg.defined()) reject(op, "k_out", "a defined tensor (k is given)", "an undefined tensor");
    require_defined(op, "q_out", q_out_arg);
    require_same_shape(op, "q_out", q_out_arg, q_arg, " (the shape of q)");
    if (has_k) require_same_shape(op, "k_out", k_out_arg, k_arg, " (the shape of k)");
    for (const Named &x : {Named{"q_out", &q_out_arg}, Named{"k_out", &k_out_arg}}) {
        if (!x.tensor->defined()) continue;
        require_dtype(op, x.name, *x.tensor, q_arg.dtype(), " (the dtype of q)");
        require_unit_feature_stride(op, x.name, *x.tensor);
    }
    const char *first_name = table.form() == RotaryTable::Form::Angles   ? "freqs"
                             : table.form() == RotaryTable::Form::CosSin ? "cos"
                                                                         : "inv_freq";
    const std::initializer_list<Named> tensors{{"q", &q_arg},     {"k", &k_arg},         {first_name, &first},
                                               {"sin", &second}, {"scale", &s},         {"q_out", &q_out_arg},
                                               {"k_out", &k_out_arg}};
    require_same_device(op, tensors);
    require_int32_offsets(op, tensors);
    require_disjoint(op, {{"q_out", &q_out_arg, &q_arg}, {"k_out", &k_out_arg, &k_arg}},
                     {{"q", &q_arg}, {"k", &k_arg}, {first_name, &first}, {"sin", &second}, {"scale", &s}});

    // The streams as the kernels see them (varlen: (h, total, d)) and their positions.
    Tensor views[8];  // varlen views, then rotary parts: made only where needed
    const Tensor &q = q_varlen ? (views[0] = varlen_view(q_arg)) : q_arg;
    const Tensor &q_out = q_varlen ? (views[1] = varlen_view(q_out_arg)) : q_out_arg;
    const Tensor &k = k_varlen ? (views[2] = varlen_view(k_arg)) : k_arg;
    const Tensor &k_out = k_varlen ? (views[3] = varlen_view(k_out_arg)) : k_out_arg;
    // Positions are checked even when there is nothing to rotate.
    StreamRows q_rows(op, "positions", q_positions, q, rows, rows - q.size(-2), 0);
    std::optional<StreamRows> k_rows;
    if (has_k) k_rows.emplace(op, options.k_positions ? "k_positions" : "positions", k_positions, k, rows, 0, 1);
    if (q.numel() == 0 && (!has_k || k.numel() == 0)) return;

    if (rotary_dim > 0) {
        const RotaryKernel kernel{op,
                                  typed,
                                  options.pairing,
                                  table.form(),
                                  first,
                                  second,
                                  use_table ? &s : nullptr,
                                  scale_f32,
                                  options.conjugate,
                                  static_cast<float>(table.attention_factor()),
                                  table.angle_mode() == AngleMode::Accurate,
                                  rotary_dim,
                                  table.xpos_log2_zeta(),
                                  static_cast<float>(table.xpos_scale_base()),
                                  static_cast<int32_t>(table.xpos_seq_len())};
        const Tensor &q_in = features(q, rotary_dim, views[4]), &k_in = features(k, rotary_dim, views[5]);
        const Tensor &q_res = features(q_out, rotary_dim, views[6]), &k_res = features(k_out, rotary_dim, views[7]);
        const bool in_place = same_view(q, q_out) || (has_k && same_view(k, k_out));
        const int64_t out_bytes = (q_res.numel() + (has_k ? k_res.numel() : 0)) * q.element_size();
        const StorePlan plan =
            store_plan_of(kernels, apply_plan_class(q.dtype()), options.stores, q.device(), out_bytes, in_place);
        if (plan.stores == Stores::Streaming) {
            kernel.run_streamed(q_in, k_in, q_rows, *(has_k ? &*k_rows : &q_rows), q_res, k_res,
                                plan.heads_per_tile);
        } else if (q.device() == Device::CPU && out_bytes <= kSerialOutputBytes) {
            const SerialKernels serial;
            kernel.run(q_in, k_in, q_rows.raw(), has_k ? k_rows->raw() : nullptr, q_res, k_res, true);
        } else {
            kernel.run(q_in, k_in, q_rows.raw(), has_k ? k_rows->raw() : nullptr, q_res, k_res);
        }
    }
    // Partial rotary: the features past rotary_dim pass through (untouched in place).
    if (rotary_dim < d) {
        for (const auto &[in, out] : {std::pair{&q, &q_out}, std::pair{&k, &k_out}}) {
            if (in->defined() && in->numel() && !same_view(*in, *out)) {
                copy_features(kernels, op, in->narrow(-1, rotary_dim, d - rotary_dim),
                              out->narrow(-1, rotary_dim, d - rotary_dim));
            }
        }
    }
}

}  // namespace detail
}  // namespace helix
