// The public API of helix.h: each call runs the operations (operations.cpp) on the kernels
// of the device its tensors live on.
#include "backends.h"
#include "checks.h"
#include "error.h"
#include "kernels.h"
#include "rope_scaling.h"

#include <HalideRuntime.h>

#include <cmath>
#include <limits>

namespace helix {

std::string to_string(Pairing pairing) { return pairing == Pairing::HalfSplit ? "half-split" : "interleaved"; }

std::string to_string(Stores stores) {
    switch (stores) {
    case Stores::Auto: return "auto";
    case Stores::Ordinary: return "ordinary";
    case Stores::Streaming: return "streaming";
    }
    return "?";
}

std::string to_string(Positions::Kind kind) {
    switch (kind) {
    case Positions::Kind::Aligned: return "aligned";
    case Positions::Kind::Start: return "start";
    case Positions::Kind::Offsets: return "offsets";
    case Positions::Kind::Ids: return "ids";
    case Positions::Kind::Varlen: return "varlen";
    }
    return "?";
}

std::string to_string(RotaryTable::Form form) {
    switch (form) {
    case RotaryTable::Form::Angles: return "angles";
    case RotaryTable::Form::CosSin: return "cos_sin";
    case RotaryTable::Form::InvFreq: return "inv_freq";
    }
    return "?";
}

Positions Positions::start(int64_t first) { return {Kind::Start, first, {}, {}}; }
Positions Positions::offsets(const Tensor &offsets) { return {Kind::Offsets, 0, offsets, {}}; }
Positions Positions::ids(const Tensor &ids) { return {Kind::Ids, 0, ids, {}}; }
Positions Positions::varlen(const Tensor &cu_seqlens, const Tensor &offsets) {
    return {Kind::Varlen, 0, cu_seqlens, offsets};
}

RotaryTable RotaryTable::angles(const Tensor &freqs, const Scale &scale) { return {Form::Angles, freqs, {}, scale}; }
RotaryTable RotaryTable::cos_sin(const Tensor &cos, const Tensor &sin, const Scale &scale) {
    return {Form::CosSin, cos, sin, scale};
}

RotaryTable RotaryTable::cos_sin_cache(const Tensor &cache, const Scale &scale) {
    if (!cache.defined() || cache.rank() != 2 || cache.size(1) % 2) {
        detail::reject("RotaryTable::cos_sin_cache", "cache", "a (max_position, rotary_dim) table, rotary_dim even",
                       cache.defined() ? "shape " + cache.shape_string() : "an undefined tensor");
    }
    const int64_t half = cache.size(1) / 2;
    return cos_sin(cache.narrow(1, 0, half), cache.narrow(1, half, half), scale);
}

RotaryTable RotaryTable::inv_freq(const Tensor &inv_freq, const Scale &scale, AngleMode angles) {
    RotaryTable t{Form::InvFreq, inv_freq, {}, scale};
    t.angles_ = angles;
    return t;
}

RotaryTable RotaryTable::with_attention_factor(double factor) const {
    RotaryTable t = *this;
    t.attention_factor_ = detail::require_positive_float("RotaryTable::with_attention_factor", "factor", factor);
    return t;
}

RotaryTable RotaryTable::to(Device device) const {
    auto moved = [device](const Tensor &t) { return t.defined() ? t.to(device) : t; };
    RotaryTable t = *this;
    t.first_ = moved(first_);
    t.second_ = moved(second_);
    t.xpos_log2_zeta_ = moved(xpos_log2_zeta_);
    if (scale_.tensor().defined()) t.scale_ = Scale(moved(scale_.tensor()));
    return t;
}

RotaryTable RotaryTable::inv_freq(const SinusoidalEmbeddings &emb, int64_t seq_len, const Scale &scale) {
    const int32_t rows = detail::require_int32("RotaryTable::inv_freq", "seq_len", seq_len, 0);
    RotaryTable t = inv_freq(emb.inv_freq(seq_len), scale, emb.angle_mode()).with_attention_factor(emb.attention_factor());
    if (emb.angle_mode() == AngleMode::Accurate) detail::split_frequencies(emb.inv_freq_f64(seq_len), t.first_, t.second_);
    if (!emb.use_xpos()) return t;
    t.xpos_seq_len_ = rows;
    t.xpos_scale_base_ = *emb.scale_base();
    // log2(zeta) in double as the table kernel forms it (generators/rope_algorithm.h:
    // xpos_zeta in float32, its log in double), split into two float32 parts: exact to
    // 2^-48 relative, far below the float32 scale's ulp.
    const int64_t half = emb.dim() / 2;
    t.xpos_log2_zeta_ = Tensor({half, 2});
    float *out = static_cast<float *>(t.xpos_log2_zeta_.data());
    const double dim = static_cast<double>(emb.dim());
    for (int64_t i = 0; i < half; i++) {
        const float zeta = (static_cast<float>(2 * i) + static_cast<float>(0.4 * dim)) / static_cast<float>(1.4 * dim);
        const double log2_zeta = std::log(static_cast<double>(zeta)) * 1.4426950408889634074;
        out[2 * i] = static_cast<float>(log2_zeta);
        out[2 * i + 1] = static_cast<float>(log2_zeta - out[2 * i]);
    }
    return t;
}

SinusoidalEmbeddings::SinusoidalEmbeddings(int64_t dim, std::optional<double> scale_base, bool use_xpos, double theta,
                                           Pairing pairing, const RopeScaling &scaling, AngleMode angles)
    : dim_(dim),
      scale_base_(scale_base),
      use_xpos_(use_xpos),
      theta_(theta),
      pairing_(pairing),
      scaling_(scaling),
      angles_(angles),
      attention_factor_(1.0) {
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
    detail::check_scaling(op, scaling, dim);
    attention_factor_ = detail::scaled_attention_factor(scaling);
    detail::require_positive_float(op, "attention factor (of rope_scaling)", attention_factor_);
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

Tensor SinusoidalEmbeddings::inv_freq(int64_t seq_len) const {
    if (seq_len < 0 || seq_len > std::numeric_limits<int32_t>::max()) {
        detail::reject("SinusoidalEmbeddings::inv_freq", "seq_len", "a value >= 0 and below 2^31", detail::str(seq_len));
    }
    const std::vector<float> values = detail::scaled_inv_freq(dim_, theta_, scaling_, seq_len);
    Tensor out({dim_ / 2});
    std::copy(values.begin(), values.end(), static_cast<float *>(out.data()));
    return out;
}

std::vector<double> SinusoidalEmbeddings::inv_freq_f64(int64_t seq_len) const {
    if (seq_len < 0 || seq_len > std::numeric_limits<int32_t>::max()) {
        detail::reject("SinusoidalEmbeddings::inv_freq_f64", "seq_len", "a value >= 0 and below 2^31", detail::str(seq_len));
    }
    return detail::scaled_inv_freq_f64(dim_, theta_, scaling_, seq_len);
}

Tensor rotate_half(const Tensor &x, Pairing pairing) {
    Tensor out = like(x);
    rotate_half(x, out, pairing);
    return out;
}

void rotate_half(const Tensor &x, const Tensor &out, Pairing pairing) {
    detail::rotate_half(kernels_for("rotate_half", "x", x), x, out, pairing);
}

std::pair<Tensor, Tensor> apply_rotary_pos_emb(const Tensor &q, const Tensor &k, const Tensor &freqs,
                                               const Scale &scale, const RotaryOptions &options) {
    Tensor q_out = like(q), k_out = like(k);
    apply_rotary_pos_emb(q, k, freqs, scale, q_out, k_out, options);
    return {q_out, k_out};
}

void apply_rotary_pos_emb(const Tensor &q, const Tensor &k, const Tensor &freqs, const Scale &scale,
                          const Tensor &q_out, const Tensor &k_out, const RotaryOptions &options) {
    detail::apply_rotary_pos_emb(kernels_for("apply_rotary_pos_emb", "q", q), q, k, freqs, scale, q_out, k_out,
                                 options);
}

std::pair<Tensor, Tensor> apply_rotary_pos_emb(const Tensor &q, const Tensor &k, const RotaryTable &table,
                                               const RotaryOptions &options) {
    Tensor q_out = like(q), k_out = like(k);
    apply_rotary_pos_emb(q, k, table, q_out, k_out, options);
    return {q_out, k_out};
}

void apply_rotary_pos_emb(const Tensor &q, const Tensor &k, const RotaryTable &table, const Tensor &q_out,
                          const Tensor &k_out, const RotaryOptions &options) {
    detail::apply_rotary_pos_emb(kernels_for("apply_rotary_pos_emb", "q", q), q, k, table, q_out, k_out, options);
}

int set_num_threads(int threads) {
    if (threads < 1) detail::reject("set_num_threads", "threads", "a value >= 1", detail::str(threads));
    return halide_set_num_threads(threads);
}

}  // namespace helix
