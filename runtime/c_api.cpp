// The C ABI (include/helix/helix_c.h) over the C++ API: DLTensor -> helix::Tensor views,
// C structs -> helix's option types, exceptions -> status codes and a thread-local message.
#include "helix/helix_c.h"

#include "helix/helix.h"
#include "dlpack.h"

#include <cmath>
#include <new>
#include <optional>
#include <string>
#include <vector>

struct helix_embeddings {
    helix::SinusoidalEmbeddings embeddings;
};

namespace {

thread_local std::string last_error;

helix_status fail(helix_status status, const std::string &message) {
    last_error = message;
    return status;
}

// Runs f, mapping what it throws to a status (helix::Error's runtime errors say so).
template <typename F>
helix_status guarded(F &&f) {
    try {
        f();
        last_error.clear();
        return HELIX_OK;
    } catch (const helix::Error &e) {
        const std::string message = e.what();
        const bool runtime = message.find("Halide runtime error") != std::string::npos;
        return fail(runtime ? HELIX_ERROR_RUNTIME : HELIX_ERROR_INVALID_ARGUMENT, message);
    } catch (const std::bad_alloc &) {
        return fail(HELIX_ERROR_OUT_OF_MEMORY, "helix: out of memory");
    } catch (const std::exception &e) {
        return fail(HELIX_ERROR_INTERNAL, std::string("helix: internal error: ") + e.what());
    } catch (...) {
        return fail(HELIX_ERROR_INTERNAL, "helix: internal error: unknown exception");
    }
}

[[noreturn]] void reject(const char *name, const std::string &what) {
    throw helix::Error(std::string("helix: ") + name + ": " + what);
}

template <typename T>
const T &required(const char *name, const T *p) {
    if (!p) reject(name, "expected a pointer, given NULL");
    return *p;
}

using helix::detail::from_dlpack;

helix::Pairing pairing_of(helix_pairing p) {
    if (p == HELIX_PAIRING_HALF_SPLIT) return helix::Pairing::HalfSplit;
    if (p == HELIX_PAIRING_INTERLEAVED) return helix::Pairing::Interleaved;
    reject("pairing", "expected HELIX_PAIRING_HALF_SPLIT or HELIX_PAIRING_INTERLEAVED, given " + std::to_string(p));
}

helix::AngleMode angles_of(helix_angle_mode a) {
    if (a == HELIX_ANGLES_FP32) return helix::AngleMode::Fp32;
    if (a == HELIX_ANGLES_ACCURATE) return helix::AngleMode::Accurate;
    reject("angles", "expected HELIX_ANGLES_FP32 or HELIX_ANGLES_ACCURATE, given " + std::to_string(a));
}

std::optional<double> given(double v) { return std::isnan(v) ? std::nullopt : std::optional<double>(v); }

helix::RopeScaling scaling_of(const helix_rope_scaling *s) {
    helix::RopeScaling r;
    if (!s) return r;
    if (s->type < HELIX_SCALING_NONE || s->type > HELIX_SCALING_LONGROPE) {
        reject("scaling", "expected a helix_scaling_type, given " + std::to_string(s->type));
    }
    r.type = static_cast<helix::RopeScaling::Type>(s->type);  // the same order as helix::RopeScaling::Type
    r.factor = s->factor;
    r.max_position_embeddings = s->max_position_embeddings;
    r.original_max_position_embeddings = s->original_max_position_embeddings;
    r.beta_fast = s->beta_fast;
    r.beta_slow = s->beta_slow;
    r.mscale = given(s->mscale);
    r.mscale_all_dim = given(s->mscale_all_dim);
    r.attention_factor = given(s->attention_factor);
    r.truncate = s->truncate != 0;
    r.low_freq_factor = s->low_freq_factor;
    r.high_freq_factor = s->high_freq_factor;
    if (s->factor_count < 0) reject("scaling", "expected factor_count >= 0, given " + std::to_string(s->factor_count));
    if (s->factor_count && (!s->short_factor || !s->long_factor)) {
        reject("scaling", "expected short_factor and long_factor of factor_count values, given NULL");
    }
    if (s->factor_count) {
        r.short_factor.assign(s->short_factor, s->short_factor + s->factor_count);
        r.long_factor.assign(s->long_factor, s->long_factor + s->factor_count);
    }
    return r;
}

helix::Positions positions_of(const char *name, const helix_positions &p) {
    switch (p.kind) {
    case HELIX_POSITIONS_ALIGNED: return {};
    case HELIX_POSITIONS_START: return helix::Positions::start(p.start);
    case HELIX_POSITIONS_OFFSETS: return helix::Positions::offsets(from_dlpack(name, p.tensor));
    case HELIX_POSITIONS_IDS: return helix::Positions::ids(from_dlpack(name, p.tensor));
    case HELIX_POSITIONS_VARLEN: return helix::Positions::varlen(from_dlpack(name, p.tensor), from_dlpack("offsets", p.offsets));
    }
    reject(name, "expected a helix_positions_kind, given " + std::to_string(p.kind));
}

helix::RotaryTable table_of(const helix_rotary_table &t) {
    const helix::Scale scale = t.scale ? helix::Scale(from_dlpack("scale", t.scale)) : helix::Scale(t.scale_value);
    const auto make = [&]() -> helix::RotaryTable {
        switch (t.form) {
        case HELIX_TABLE_ANGLES: return helix::RotaryTable::angles(from_dlpack("freqs", t.first), scale);
        case HELIX_TABLE_COS_SIN:
            return helix::RotaryTable::cos_sin(from_dlpack("cos", t.first), from_dlpack("sin", t.second), scale);
        case HELIX_TABLE_COS_SIN_CACHE:
            return helix::RotaryTable::cos_sin_cache(from_dlpack("cos_sin_cache", t.first), scale);
        case HELIX_TABLE_INV_FREQ:
            return helix::RotaryTable::inv_freq(from_dlpack("inv_freq", t.first), scale, angles_of(t.angles));
        case HELIX_TABLE_EMBEDDING:
            return helix::RotaryTable::inv_freq(required("embedding", t.embedding).embeddings, t.seq_len, scale);
        }
        reject("table", "expected a helix_table_form, given " + std::to_string(t.form));
    };
    const helix::RotaryTable table = make();
    return t.attention_factor == 1.0 ? table : table.with_attention_factor(t.attention_factor);
}

}  // namespace

extern "C" {

const char *helix_last_error(void) { return last_error.c_str(); }

const char *helix_version(void) { return HELIX_VERSION_STRING; }

void helix_rope_scaling_init(helix_rope_scaling *s) {
    const helix::RopeScaling d;
    *s = helix_rope_scaling{};
    s->type = HELIX_SCALING_NONE;
    s->factor = d.factor;
    s->beta_fast = d.beta_fast;
    s->beta_slow = d.beta_slow;
    s->mscale = s->mscale_all_dim = s->attention_factor = NAN;
    s->truncate = d.truncate;
    s->low_freq_factor = d.low_freq_factor;
    s->high_freq_factor = d.high_freq_factor;
}

helix_status helix_embeddings_create(int64_t dim, double scale_base, int use_xpos, double theta, helix_pairing pairing,
                                     const helix_rope_scaling *scaling, helix_angle_mode angles,
                                     helix_embeddings **embeddings) {
    return guarded([&] {
        if (!embeddings) reject("embeddings", "expected a pointer, given NULL");
        *embeddings = nullptr;
        *embeddings = new helix_embeddings{helix::SinusoidalEmbeddings(dim, use_xpos ? std::optional<double>(scale_base) : std::nullopt,
                                                               use_xpos != 0, theta, pairing_of(pairing),
                                                               scaling_of(scaling), angles_of(angles))};
    });
}

void helix_embeddings_destroy(helix_embeddings *embeddings) { delete embeddings; }

helix_status helix_embeddings_forward(const helix_embeddings *e, int64_t seq_len, const DLTensor *freqs,
                                      const DLTensor *scale) {
    return guarded([&] {
        const helix::Tensor f = from_dlpack("freqs", freqs), s = from_dlpack("scale", scale);
        required("embeddings", e).embeddings.forward(seq_len, f, s);
    });
}

helix_status helix_embeddings_window(const helix_embeddings *e, int64_t seq_len, int64_t start, const DLTensor *freqs,
                                     const DLTensor *scale) {
    return guarded([&] {
        const helix::Tensor f = from_dlpack("freqs", freqs), s = from_dlpack("scale", scale);
        required("embeddings", e).embeddings.window(seq_len, start, f, s);
    });
}

helix_status helix_embeddings_inv_freq(const helix_embeddings *e, int64_t seq_len, const DLTensor *inv_freq) {
    return guarded([&] {
        const helix::Tensor values = required("embeddings", e).embeddings.inv_freq(seq_len);
        const helix::Tensor out = from_dlpack("inv_freq", inv_freq);
        if (!out.defined()) reject("inv_freq", "expected a tensor, given NULL");
        if (out.shape() != values.shape() || out.dtype() != helix::DType::Float32 || out.device() != helix::Device::CPU) {
            reject("inv_freq", "expected a float32 CPU tensor of shape " + values.shape_string() + ", given " +
                                   helix::to_string(out.dtype()) + " " + helix::to_string(out.device()) + " " +
                                   out.shape_string());
        }
        out.copy_from(values);
    });
}

double helix_embeddings_attention_factor(const helix_embeddings *e) {
    return e ? e->embeddings.attention_factor() : NAN;
}

void helix_rotary_table_init(helix_rotary_table *table, helix_table_form form) {
    *table = helix_rotary_table{};
    table->form = form;
    table->scale_value = 1.0;
    table->attention_factor = 1.0;
    table->angles = HELIX_ANGLES_FP32;
}

void helix_rotary_options_init(helix_rotary_options *options) {
    *options = helix_rotary_options{};
    options->pairing = HELIX_PAIRING_HALF_SPLIT;
    options->positions.kind = HELIX_POSITIONS_ALIGNED;
}

helix_status helix_rotate_half(const DLTensor *x, const DLTensor *out, helix_pairing pairing) {
    return guarded([&] {
        // Converted in argument order, so the first bad argument is the one reported.
        const helix::Tensor xt = from_dlpack("x", x), ot = from_dlpack("out", out);
        helix::rotate_half(xt, ot, pairing_of(pairing));
    });
}

helix_status helix_apply_rotary_pos_emb(const DLTensor *q, const DLTensor *k, const helix_rotary_table *table,
                                        const DLTensor *q_out, const DLTensor *k_out,
                                        const helix_rotary_options *options) {
    return guarded([&] {
        const helix::Tensor qt = from_dlpack("q", q), kt = from_dlpack("k", k);
        const helix::RotaryTable rotation = table_of(required("table", table));
        const helix::Tensor qo = from_dlpack("q_out", q_out), ko = from_dlpack("k_out", k_out);
        helix_rotary_options defaults;
        helix_rotary_options_init(&defaults);
        const helix_rotary_options &o = options ? *options : defaults;
        helix::RotaryOptions r;
        r.pairing = pairing_of(o.pairing);
        r.rotary_dim = o.rotary_dim;
        r.conjugate = o.conjugate != 0;
        r.positions = positions_of("positions", o.positions);
        if (o.k_positions) r.k_positions = positions_of("k_positions", *o.k_positions);
        helix::apply_rotary_pos_emb(qt, kt, rotation, qo, ko, r);
    });
}

}  // extern "C"
