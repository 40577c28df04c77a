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
// inv_freq comes from the host (the embedding's, scaled: runtime/rope_scaling.cpp); with
// `accurate` the angle is the exact product reduced modulo 2 pi (AngleMode::Accurate).
class SinusoidalTable : public Generator<SinusoidalTable> {
public:
    GeneratorParam<Schedule> schedule_kind{"schedule", Schedule::Tuned, schedule_names()};
    GeneratorParam<Pairing> pairing{"pairing", Pairing::HalfSplit, pairing_names()};
    GeneratorParam<bool> xpos{"xpos", false};

    // (part, jj): part 0 the float32 frequencies (accurate: the high part of the double
    // ones), part 1 accurate's low part.
    Input<Buffer<float, 2>> inv_freq{"inv_freq"};
    Input<bool> accurate{"accurate"};
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
        angle_(v.jj, v.n) =
            blend(accurate, cast<float>(reduced_angle(exact_angle(position, inv_freq(0, v.jj), inv_freq(1, v.jj)))),
                  angle(position, inv_freq(0, v.jj)));
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
        inv_freq.dim(0).set_bounds(0, 2).set_stride(1);
        inv_freq.dim(1).set_min(0);
        inv_freq.set_estimates({{0, 2}, {0, kEstHalfDim}});
        accurate.set_estimate(false);
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
            gpu::table(freqs, angle_, v, rows_aligned && gpu::strides_aligned(freqs));
            if (xpos) {
                gpu::per_frequency(log2_zeta_);
                gpu::per_row(power_);
                gpu::table(*scale, scale_row_, v, rows_aligned && gpu::strides_aligned(*scale));
            }
            return;
        }
        cpu::table(freqs, angle_, v, get_target());
        // Each angle mode evaluates only its own angle (the blend of both would otherwise
        // compute the double-precision one for float32 tables too).
        freqs.specialize(accurate);
        if (xpos) {
            log2_zeta_.compute_root();
            cpu::table(*scale, scale_row_, v, get_target());
        }
    }

private:
    Vars v;
    Func angle_{"angle"}, log2_zeta_{"log2_zeta"}, power_{"power"}, scale_row_{"scale_row"};
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

// Zeta's apply_rotary_pos_emb(q, k, freqs, scale), with positions and table forms:
//   q' = q cos(a) s + rotate_half(q) sin(a) s   at the positions q_rows,
//   k' = k cos(a) / s + rotate_half(k) sin(a) / s   at the positions k_rows,
// where the angle a of a position and feature comes from the table form (RotaryTableForm)
// and s from the scale table (xPos; broadcast rows or features, or one element: a number).
// With conjugate, sin(a) is negated: R(-a), the backward pass (the gradient of
// q' = s R(a) q is s R(-a) dq', likewise 1/s for k).
// Positions are table rows (q_rows, k_rows: (n, b), one per row and batch of q and k,
// checked by the runtime; the kernel clamps them to the table so that it never reads
// outside it). q and k have their own leading dimensions (heads, batches), e.g. fewer key
// heads (GQA).
class ApplyRotary : public Generator<ApplyRotary> {
public:
    GeneratorParam<RotarySchedule> schedule_kind{"schedule", RotarySchedule::Tuned, rotary_schedule_names()};
    GeneratorParam<Pairing> pairing{"pairing", Pairing::HalfSplit, pairing_names()};
    GeneratorParam<Type> element_type{"element_type", Float(32)};
    GeneratorParam<bool> bits_storage{"bits_storage", false};
    GeneratorParam<TableForm> table_form{"table", TableForm::Angles, table_form_names()};
    // CPU schedule knobs for the benchmark sweep (bench/README.md); defaults are the winners.
    GeneratorParam<int> rows_per_task{"rows_per_task", cpu::kRowsPerTask};
    GeneratorParam<int> vector_factor{"vector_factor", 1};
    // schedule=decode: the widest half width (pairs) its fixed-size storage holds
    // (cmake/HelixKernels.cmake's HELIX_DECODE_MAX_PAIRS; the runtime keeps to it).
    GeneratorParam<int> decode_max_pairs{"decode_max_pairs", 0};
    // GPU knob for the sweep: how many of a thread's 8 heads are unrolled (1, 2, 4 or 8).
    GeneratorParam<int> heads_unrolled{"heads_unrolled", gpu::kHeadsUnrolled};

    Input<bool> *rows_aligned = nullptr;  // every row of q, k, q_out, k_out starts 16-byte aligned
    Input<bool> *conjugate = nullptr;     // R(-a): the backward pass
    Input<float> *attention = nullptr;    // multiplies cos and sin of q and k (RopeScaling)
    Input<Buffer<>> *q = nullptr, *k = nullptr;
    Input<Buffer<int32_t, 2>> *q_rows = nullptr, *k_rows = nullptr;  // (n, b) positions
    Input<Buffer<float, 3>> *freqs = nullptr;                         // angles: (jj, half, N)
    Input<Buffer<float, 2>> *cos = nullptr, *sin = nullptr;           // cos_sin: (jj, N)
    Input<Buffer<float, 1>> *inv_freq = nullptr, *inv_freq_lo = nullptr;  // inv_freq: (jj), hi and lo
    Input<bool> *accurate = nullptr;  // inv_freq: the exact product as the angle (AngleMode)
    // inv_freq's xPos, computed in the kernel as the table's: log2 of zeta per frequency as
    // a double-float (hi, lo: (2, jj)), scale_base and the N of the centring (without xPos:
    // log2(zeta) 0, scale_base 0).
    Input<Buffer<float, 2>> *xpos_log2_zeta = nullptr;
    Input<float> *xpos_scale_base = nullptr;
    Input<int32_t> *xpos_seq_len = nullptr;
    Input<Buffer<float, 3>> *scale = nullptr;                         // (jj, half, N), may broadcast
    Output<Buffer<>> *q_out = nullptr, *k_out = nullptr;

    void configure() {
        rows_aligned = add_input<bool>("rows_aligned");
        conjugate = add_input<bool>("conjugate");
        attention = add_input<float>("attention");
        q = add_input<Buffer<>>("q", storage().type(), 5);
        k = add_input<Buffer<>>("k", storage().type(), 5);
        q_rows = add_input<Buffer<int32_t, 2>>("q_rows");
        k_rows = add_input<Buffer<int32_t, 2>>("k_rows");
        switch (table_form) {
        case TableForm::Angles: freqs = add_input<Buffer<float, 3>>("freqs"); break;
        case TableForm::CosSin:
            cos = add_input<Buffer<float, 2>>("cos");
            sin = add_input<Buffer<float, 2>>("sin");
            break;
        case TableForm::InvFreq:
            inv_freq = add_input<Buffer<float, 1>>("inv_freq");
            inv_freq_lo = add_input<Buffer<float, 1>>("inv_freq_lo");
            accurate = add_input<bool>("accurate");
            xpos_log2_zeta = add_input<Buffer<float, 2>>("xpos_log2_zeta");
            xpos_scale_base = add_input<float>("xpos_scale_base");
            xpos_seq_len = add_input<int32_t>("xpos_seq_len");
            break;
        }
        scale = add_input<Buffer<float, 3>>("scale");
        q_out = add_output<Buffer<>>("q_out", storage().type(), 5);
        k_out = add_output<Buffer<>>("k_out", storage().type(), 5);
    }

    void generate() {
        coefficients(*q_rows, false, q_trig_, q_coef_);
        coefficients(*k_rows, true, k_trig_, k_coef_);
        rotate(*q, q_coef_, q_pair_, *q_out);
        rotate(*k, k_coef_, k_pair_, *k_out);
    }

    void schedule() {
        rows_aligned->set_estimate(true);
        conjugate->set_estimate(false);
        attention->set_estimate(1.0f);
        for (auto *buf : {q, k}) {
            dense_rows(*buf, 5, pairing);
            estimate_tensor(*buf);
        }
        for (auto *buf : {q_out, k_out}) {
            dense_rows(*buf, 5, pairing);
            estimate_tensor(*buf);
        }
        for (auto *rows : {q_rows, k_rows}) {
            rows->dim(0).set_min(0);
            rows->dim(1).set_min(0);
            rows->set_estimates({{0, kEstRows}, {0, 1}});
        }
        // Tables are dense along the features, but for the scale (stride 0 broadcasts).
        if (freqs) {
            dense_rows(*freqs, 3, pairing);
            estimate_table(*freqs);
        }
        for (auto *t : {cos, sin}) {
            if (!t) continue;
            t->dim(0).set_min(0).set_stride(1);
            t->dim(1).set_min(0);
            t->set_estimates({{0, kEstHalfDim}, {0, kEstRows}});
        }
        if (inv_freq) {
            inv_freq->dim(0).set_min(0).set_stride(1);
            inv_freq->set_estimates({{0, kEstHalfDim}});
            inv_freq_lo->dim(0).set_min(0).set_stride(Expr());  // stride 0: zeros
            inv_freq_lo->set_estimates({{0, kEstHalfDim}});
            xpos_log2_zeta->dim(0).set_bounds(0, 2).set_stride(Expr());  // stride 0 without xPos
            xpos_log2_zeta->dim(1).set_min(0);
            xpos_log2_zeta->set_estimates({{0, 2}, {0, kEstHalfDim}});
            accurate->set_estimate(false);
            xpos_scale_base->set_estimate(0.0f);
            xpos_seq_len->set_estimate(kEstRows);
        }
        for (int d = 0; d < 3; d++) scale->dim(d).set_min(0);
        scale->dim(0).set_stride(Expr());
        estimate_table(*scale);
        if (using_autoscheduler()) return;
        if (schedule_kind == RotarySchedule::Baseline) {
            in_place_pairs(*q_out, q_pair_, v);
            in_place_pairs(*k_out, k_pair_, v);
        } else if (schedule_kind == RotarySchedule::Decode) {
            _halide_user_assert(!get_target().has_gpu_feature()) << "apply_rotary: schedule=decode is a CPU schedule";
            _halide_user_assert(decode_max_pairs > 0) << "apply_rotary: schedule=decode needs decode_max_pairs";
            cpu::rotary_decode(*q_out, q_coef_, q_trig_, q_pair_, v, get_target(), decode_max_pairs);
            cpu::rotary_decode(*k_out, k_coef_, k_trig_, k_pair_, v, get_target(), decode_max_pairs);
        } else if (get_target().has_gpu_feature()) {
            gpu::rotary_stream(*q_out, q_coef_, q_trig_, q_pair_, v, *rows_aligned && gpu::strides_aligned(*q, *q_out),
                               heads_unrolled);
            gpu::rotary_stream(*k_out, k_coef_, k_trig_, k_pair_, v, *rows_aligned && gpu::strides_aligned(*k, *k_out),
                               heads_unrolled);
        } else {
            const cpu::RotaryKnobs knobs{schedule_kind, rows_per_task, vector_factor};
            cpu::rotary_stream(*q_out, q_coef_, q_trig_, q_pair_, v, get_target(), knobs);
            cpu::rotary_stream(*k_out, k_coef_, k_trig_, k_pair_, v, get_target(), knobs);
        }
    }

private:
    Vars v;
    Func q_coef_{"q_coef"}, k_coef_{"k_coef"}, q_pair_{"q_pair"}, k_pair_{"k_pair"};
    // The inv_freq form's (cos, sin, xPos factor) per frequency and row, shared by both
    // halves of a pair (undefined in the table forms, whose rows may differ per half).
    Func q_trig_{"q_trig"}, k_trig_{"k_trig"};
    Storage storage() const { return {element_type, bits_storage}; }

    // A position clamped to the rows of a table (the runtime has checked it already).
    template <typename Table>
    static Expr row_in(Expr position, Table &table, int row_dim) {
        return Halide::clamp(position, 0, table.dim(row_dim).extent() - 1);
    }

    // coef(jj, half, n, b) = (cos(a) s, sin(a) s) of row n, batch b of a stream at its
    // position (inverse: 1 / s, for keys), sin negated when conjugate.
    void coefficients(Input<Buffer<int32_t, 2>> &rows, bool inverse, Func trig, Func coef) {
        Expr position = rows(v.n, v.b);
        Expr c, s, xpos_factor = 1.0f;
        switch (table_form) {
        case TableForm::Angles: {
            Tuple cs = cos_sin((*freqs)(v.jj, v.half, row_in(position, *freqs, 2)));
            c = cs[0];
            s = cs[1];
            break;
        }
        case TableForm::CosSin:
            c = (*cos)(v.jj, row_in(position, *cos, 1));
            s = (*sin)(v.jj, row_in(position, *sin, 1));
            break;
        case TableForm::InvFreq: {
            Expr inv = (*inv_freq)(v.jj);
            Tuple cs = cos_sin(
                blend(*accurate, exact_angle(position, inv, (*inv_freq_lo)(v.jj)), cast<double>(angle(position, inv))));
            // Without xPos log2(zeta) is 0 and the factor 2^0 = 1 exactly (no select of
            // vectors on a scalar: LLVM's RISC-V vector backend crashes on those).
            Expr log2_zeta = cast<double>((*xpos_log2_zeta)(0, v.jj)) + cast<double>((*xpos_log2_zeta)(1, v.jj));
            Expr base = select(*xpos_scale_base > 0.0f, *xpos_scale_base, 1.0f);
            trig(v.jj, v.n, v.b) = {cs[0], cs[1], xpos_scale(log2_zeta, xpos_power(position, *xpos_seq_len, base))};
            c = trig(v.jj, v.n, v.b)[0];
            s = trig(v.jj, v.n, v.b)[1];
            xpos_factor = trig(v.jj, v.n, v.b)[2];
            break;
        }
        }
        // A scalar sign (exact): a select between vectors on a scalar condition crashes
        // LLVM's RISC-V vector backend (vp.select). The attention factor scales both, as
        // HF rounds cos * attention_scaling (exact when it is 1).
        c = c * *attention;
        s = s * *attention * select(*conjugate, -1.0f, 1.0f);
        Expr factor = (*scale)(v.jj, v.half, row_in(position, *scale, 2)) * xpos_factor;
        if (inverse) {
            // One correctly rounded reciprocal (strict: LLVM would otherwise pick its own way
            // of dividing, differently for each form's expression of the factor).
            Expr reciprocal = Halide::strict_float(1.0f / factor);
            coef(v.jj, v.half, v.n, v.b) = {c * reciprocal, s * reciprocal};
        } else {
            coef(v.jj, v.half, v.n, v.b) = {c * factor, s * factor};
        }
    }

    // out = x * c + rotate_half(x) * s, with (c, s) = coef of the row; math in float32
    // whatever the storage type.
    void rotate(Input<Buffer<>> &x, Func coef, Func pair, Output<Buffer<>> &out) {
        const Storage st = storage();
        Tuple c0 = coef(v.jj, 0, v.n, v.b), c1 = coef(v.jj, 1, v.n, v.b);
        pair(v.jj, v.n, v.h, v.b) = rotate_pair(cast<float>(st.load(x(v.jj, 0, v.n, v.h, v.b))),
                                                cast<float>(st.load(x(v.jj, 1, v.n, v.h, v.b))), c0[0], c0[1], c1[0],
                                                c1[1]);
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
