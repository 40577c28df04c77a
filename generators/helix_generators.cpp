// The helix generators: one per exported operation. Each wires its inputs and outputs to
// the mathematics of rope_algorithm.h and hands its Funcs to a schedule of schedules.h.
//
// Buffers are in Halide order, innermost first, with a feature row viewed as (jj, half):
//   tables  (N, dim)          -> (jj, half, n)
//   tensors (b, h, n, dim)    -> (jj, half, n, h, b)   (missing leading dims have extent 1)
// Every dimension starts at 0; the (jj, half) strides are fixed by the pairing (1 and free
// for half-split, 2 and 1 for interleaved: rope_algorithm.h); the other strides are free,
// so non-contiguous views run without copies.
#include "rope_algorithm.h"
#include "schedules.h"

namespace helix::gen {
namespace {

using namespace Halide;

template <typename T>
void dense_rows(T &buf, int dims, Pairing pairing) {
    buf.dim(0).set_min(0).set_stride(pairing == Pairing::HalfSplit ? 1 : 2);
    buf.dim(1).set_bounds(0, 2);
    if (pairing == Pairing::Interleaved) buf.dim(1).set_stride(1);
    for (int d = 2; d < dims; d++) buf.dim(d).set_min(0);
}

// Estimates for the autoschedulers: the prefill shape of SPEC section 5, (1, 32, 4096, 128).
constexpr int kEstRows = 4096, kEstHalfDim = 64, kEstHeads = 32;

template <typename T>
void estimate_tensor(T &buf) {
    buf.set_estimates({{0, kEstHalfDim}, {0, 2}, {0, kEstRows}, {0, kEstHeads}, {0, 1}});
}

template <typename T>
void estimate_table(T &buf) {
    buf.set_estimates({{0, kEstHalfDim}, {0, 2}, {0, kEstRows}});
}

// How a typed generator's tensors hold their element type: as the type itself, or as its
// bits in UInt(16) buffers (bits_storage; rope_algorithm.h's codec), for the targets whose
// backend cannot take a 16-bit float type (cmake/HelixKernels.cmake lists them).
struct Storage {
    Type element;
    bool bits;
    Type type() const {
        _halide_user_assert(!bits || (element.is_float() && element.bits() == 16)) << "bits_storage needs a 16-bit float type";
        return bits ? UInt(16) : element;
    }
    // A stored value as a value of the element type (float32 for bits).
    Expr load(Expr stored) const { return bits ? bits_to_float(stored, element) : stored; }
    // A value (element type or float32) as stored: one rounding to the element type.
    Expr store(Expr value) const { return bits ? float_to_bits(value, element) : cast(element, value); }
};

// Sinusoidal angle table (and, with xpos, the xPos scale table) of Zeta's
// SinusoidalEmbeddings, for rows [start, start + rows) of a table of seq_len positions.
class SinusoidalTable : public Generator<SinusoidalTable> {
public:
    GeneratorParam<Schedule> schedule_kind{"schedule", Schedule::Tuned, schedule_names()};
    GeneratorParam<Pairing> pairing{"pairing", Pairing::HalfSplit, pairing_names()};
    GeneratorParam<bool> xpos{"xpos", false};

    Input<float> theta{"theta"};
    Input<int32_t> seq_len{"seq_len"};  // N: xPos centres positions at N // 2
    Input<int32_t> start{"start"};      // position of the first row produced
    Input<bool> rows_aligned{"rows_aligned"};  // every output row starts 16-byte aligned
    Input<float> *scale_base = nullptr;  // xpos only
    Output<Buffer<float, 3>> freqs{"freqs"};
    Output<Buffer<float, 3>> *scale = nullptr;  // xpos only

    void configure() {
        if (xpos) {
            scale_base = add_input<float>("scale_base");
            scale = add_output<Buffer<float, 3>>("scale");
        }
    }

    void generate() {
        Expr dim = 2 * freqs.dim(0).extent();
        Expr position = start + v.n;
        inv_freq_(v.jj) = inv_freq(v.jj, dim, theta);
        angle_(v.jj, v.n) = angle(position, inv_freq_(v.jj));
        freqs(v.jj, v.half, v.n) = angle_(v.jj, v.n);
        if (xpos) {
            log2_zeta_(v.jj) = log2_f64(xpos_zeta(v.jj, dim));
            power_(v.n) = xpos_power(position, seq_len, *scale_base);
            scale_row_(v.jj, v.n) = xpos_scale(log2_zeta_(v.jj), power_(v.n));
            (*scale)(v.jj, v.half, v.n) = scale_row_(v.jj, v.n);
        }
    }

    void schedule() {
        dense_rows(freqs, 3, pairing);
        theta.set_estimate(10000.0f);
        seq_len.set_estimate(kEstRows);
        start.set_estimate(0);
        rows_aligned.set_estimate(true);
        estimate_table(freqs);
        if (xpos) {
            dense_rows(*scale, 3, pairing);
            scale_base->set_estimate(512.0f);
            estimate_table(*scale);
        }
        if (using_autoscheduler() || schedule_kind == Schedule::Baseline) return;
        // Per-frequency constants: H values, computed once.
        if (get_target().has_gpu_feature()) {
            gpu::per_frequency(inv_freq_);
            gpu::table(freqs, angle_, v, rows_aligned && gpu::strides_aligned(freqs));
            if (xpos) {
                gpu::per_frequency(log2_zeta_);
                gpu::per_row(power_);
                gpu::table(*scale, scale_row_, v, rows_aligned && gpu::strides_aligned(*scale));
            }
            return;
        }
        inv_freq_.compute_root();
        cpu::table(freqs, angle_, v, get_target());
        if (xpos) {
            log2_zeta_.compute_root();
            cpu::table(*scale, scale_row_, v, get_target());
        }
    }

private:
    Vars v;
    Func inv_freq_{"inv_freq"}, angle_{"angle"}, log2_zeta_{"log2_zeta"}, power_{"power"}, scale_row_{"scale_row"};
};

// Zeta's rotate_half: (x1, x2) -> (-x2, x1) on the last dimension.
class RotateHalf : public Generator<RotateHalf> {
public:
    GeneratorParam<Schedule> schedule_kind{"schedule", Schedule::Tuned, schedule_names()};
    GeneratorParam<Pairing> pairing{"pairing", Pairing::HalfSplit, pairing_names()};
    GeneratorParam<Type> element_type{"element_type", Float(32)};
    GeneratorParam<bool> bits_storage{"bits_storage", false};

    Input<bool> *rows_aligned = nullptr;  // every row of x and out starts 16-byte aligned
    Input<Buffer<>> *x = nullptr;
    Output<Buffer<>> *out = nullptr;

    void configure() {
        rows_aligned = add_input<bool>("rows_aligned");
        x = add_input<Buffer<>>("x", storage().type(), 5);
        out = add_output<Buffer<>>("out", storage().type(), 5);
    }

    void generate() {
        const Storage st = storage();
        pair_(v.jj, v.n, v.h, v.b) =
            rotate_half_pair(st.load((*x)(v.jj, 0, v.n, v.h, v.b)), st.load((*x)(v.jj, 1, v.n, v.h, v.b)));
        Tuple p = pair_(v.jj, v.n, v.h, v.b);
        (*out)(v.jj, v.half, v.n, v.h, v.b) = st.store(select(v.half == 0, p[0], p[1]));
    }

    void schedule() {
        rows_aligned->set_estimate(true);
        dense_rows(*x, 5, pairing);
        dense_rows(*out, 5, pairing);
        estimate_tensor(*x);
        estimate_tensor(*out);
        if (using_autoscheduler()) return;
        if (schedule_kind == Schedule::Baseline) {
            in_place_pairs(*out, pair_, v);
        } else if (get_target().has_gpu_feature()) {
            gpu::rows(*out, pair_, v, *rows_aligned && gpu::strides_aligned(*x, *out));
        } else {
            cpu::rows(*out, pair_, v, get_target());
        }
    }

private:
    Vars v;
    Func pair_{"pair"};
    Storage storage() const { return {element_type, bits_storage}; }
};

// Zeta's apply_rotary_pos_emb(q, k, freqs, scale):
//   q' = q cos(fq) sq + rotate_half(q) sin(fq) sq   on the last Lq rows of the tables,
//   k' = k cos(f) / s + rotate_half(k) sin(f) / s   on all N rows,
// with s the xPos scale table (scale_table=true) or a scalar (scale_table=false; 1 = none).
// q and k have their own leading dimensions (heads, batches), e.g. fewer key heads (GQA).
class ApplyRotary : public Generator<ApplyRotary> {
public:
    GeneratorParam<RotarySchedule> schedule_kind{"schedule", RotarySchedule::Tuned, rotary_schedule_names()};
    GeneratorParam<Pairing> pairing{"pairing", Pairing::HalfSplit, pairing_names()};
    GeneratorParam<Type> element_type{"element_type", Float(32)};
    GeneratorParam<bool> bits_storage{"bits_storage", false};
    GeneratorParam<bool> scale_table{"scale_table", true};
    // CPU schedule knobs for the benchmark sweep (bench/README.md); defaults are the winners.
    GeneratorParam<int> rows_per_task{"rows_per_task", cpu::kRowsPerTask};
    GeneratorParam<int> vector_factor{"vector_factor", 1};

    Input<bool> *rows_aligned = nullptr;  // every row of q, k, q_out, k_out starts 16-byte aligned
    Input<Buffer<>> *q = nullptr, *k = nullptr;
    Input<Buffer<float, 3>> *freqs = nullptr;
    Input<Buffer<float, 3>> *scale = nullptr;  // scale_table
    Input<float> *scale_value = nullptr;       // !scale_table
    Output<Buffer<>> *q_out = nullptr, *k_out = nullptr;

    void configure() {
        rows_aligned = add_input<bool>("rows_aligned");
        q = add_input<Buffer<>>("q", storage().type(), 5);
        k = add_input<Buffer<>>("k", storage().type(), 5);
        freqs = add_input<Buffer<float, 3>>("freqs");
        if (scale_table) {
            scale = add_input<Buffer<float, 3>>("scale");
        } else {
            scale_value = add_input<float>("scale");
        }
        q_out = add_output<Buffer<>>("q_out", storage().type(), 5);
        k_out = add_output<Buffer<>>("k_out", storage().type(), 5);
    }

    void generate() {
        Expr s = scale_table ? Expr((*scale)(v.jj, v.half, v.n)) : Expr(*scale_value);
        Tuple cs = cos_sin((*freqs)(v.jj, v.half, v.n));
        q_coef_(v.jj, v.half, v.n) = {cs[0] * s, cs[1] * s};
        k_coef_(v.jj, v.half, v.n) = {cs[0] / s, cs[1] / s};
        // Queries are right-aligned to the table (the KV-cache convention).
        Expr q_first_row = freqs->dim(2).extent() - q->dim(2).extent();
        rotate(*q, q_coef_, q_pair_, q_first_row, *q_out);
        rotate(*k, k_coef_, k_pair_, 0, *k_out);
    }

    void schedule() {
        rows_aligned->set_estimate(true);
        for (auto *buf : {q, k}) {
            dense_rows(*buf, 5, pairing);
            estimate_tensor(*buf);
        }
        for (auto *buf : {q_out, k_out}) {
            dense_rows(*buf, 5, pairing);
            estimate_tensor(*buf);
        }
        // freqs is dense; scale may broadcast (stride 0) over rows or features.
        dense_rows(*freqs, 3, pairing);
        estimate_table(*freqs);
        if (scale_table) {
            for (int d = 0; d < 3; d++) scale->dim(d).set_min(0);
            scale->dim(0).set_stride(Expr());  // no dense default: stride 0 broadcasts
            estimate_table(*scale);
        } else {
            scale_value->set_estimate(1.0f);
        }
        if (using_autoscheduler()) return;
        if (schedule_kind == RotarySchedule::Baseline) {
            in_place_pairs(*q_out, q_pair_, v);
            in_place_pairs(*k_out, k_pair_, v);
        } else if (get_target().has_gpu_feature()) {
            gpu::rotary_stream(*q_out, q_coef_, q_pair_, v, *rows_aligned && gpu::strides_aligned(*q, *q_out));
            gpu::rotary_stream(*k_out, k_coef_, k_pair_, v, *rows_aligned && gpu::strides_aligned(*k, *k_out));
        } else {
            const cpu::RotaryKnobs knobs{schedule_kind, rows_per_task, vector_factor};
            cpu::rotary_stream(*q_out, q_coef_, q_pair_, v, get_target(), knobs);
            cpu::rotary_stream(*k_out, k_coef_, k_pair_, v, get_target(), knobs);
        }
    }

private:
    Vars v;
    Func q_coef_{"q_coef"}, k_coef_{"k_coef"}, q_pair_{"q_pair"}, k_pair_{"k_pair"};
    Storage storage() const { return {element_type, bits_storage}; }

    // out = x * c + rotate_half(x) * s, with (c, s) = coef at table row first_row + n;
    // math in float32 whatever the storage type.
    void rotate(Input<Buffer<>> &x, Func coef, Func pair, Expr first_row, Output<Buffer<>> &out) {
        Expr row = first_row + v.n;
        const Storage st = storage();
        pair(v.jj, v.n, v.h, v.b) = rotate_pair(cast<float>(st.load(x(v.jj, 0, v.n, v.h, v.b))),
                                                cast<float>(st.load(x(v.jj, 1, v.n, v.h, v.b))),
                                                coef(v.jj, 0, row)[0], coef(v.jj, 0, row)[1], coef(v.jj, 1, row)[0],
                                                coef(v.jj, 1, row)[1]);
        Tuple p = pair(v.jj, v.n, v.h, v.b);
        out(v.jj, v.half, v.n, v.h, v.b) = st.store(select(v.half == 0, p[0], p[1]));
    }
};

// The features that partial rotary passes through, copied out of place: (f, n, h, b)
// views of q or k and of their outputs, typed as their bits (16 or 32), CPU only.
class CopyFeatures : public Generator<CopyFeatures> {
public:
    GeneratorParam<Schedule> schedule_kind{"schedule", Schedule::Tuned, schedule_names()};
    GeneratorParam<int> bits{"bits", 32};

    Input<Buffer<>> *x = nullptr;
    Output<Buffer<>> *out = nullptr;

    void configure() {
        x = add_input<Buffer<>>("x", UInt(bits), 4);
        out = add_output<Buffer<>>("out", UInt(bits), 4);
    }

    void generate() { (*out)(f_, v.n, v.h, v.b) = (*x)(f_, v.n, v.h, v.b); }

    void schedule() {
        auto rows = [](auto &buf) {
            buf.dim(0).set_min(0).set_stride(1);
            for (int d = 1; d < 4; d++) buf.dim(d).set_min(0);
            buf.set_estimates({{0, kEstHalfDim}, {0, kEstRows}, {0, kEstHeads}, {0, 1}});
        };
        rows(*x);
        rows(*out);
        if (using_autoscheduler() || schedule_kind == Schedule::Baseline) return;
        cpu::copy_rows(*out, f_, v, get_target().natural_vector_size(UInt(bits)));
    }

private:
    Vars v;
    Var f_{"f"};
};

// The bits codec of Storage (rope_algorithm.h) alone, on the CPU, for its exhaustive test
// (tests/storage_codec_test.cpp): encoded = the bits of values rounded to element_type,
// decoded = the values of bits.
class StorageCodec : public Generator<StorageCodec> {
public:
    GeneratorParam<Type> element_type{"element_type", Float(16)};

    Input<Buffer<float, 1>> values{"values"};
    Input<Buffer<uint16_t, 1>> bits{"bits"};
    Output<Buffer<uint16_t, 1>> encoded{"encoded"};
    Output<Buffer<float, 1>> decoded{"decoded"};

    void generate() {
        Var i{"i"};
        encoded(i) = float_to_bits(values(i), element_type);
        decoded(i) = bits_to_float(bits(i), element_type);
    }
};

}  // namespace
}  // namespace helix::gen

HALIDE_REGISTER_GENERATOR(helix::gen::SinusoidalTable, sinusoidal_table)
HALIDE_REGISTER_GENERATOR(helix::gen::RotateHalf, rotate_half)
HALIDE_REGISTER_GENERATOR(helix::gen::ApplyRotary, apply_rotary)
HALIDE_REGISTER_GENERATOR(helix::gen::StorageCodec, storage_codec)
HALIDE_REGISTER_GENERATOR(helix::gen::CopyFeatures, copy_features)
