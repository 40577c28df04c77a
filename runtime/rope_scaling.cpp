// HF transformers' ROPE_INIT_FUNCTIONS (modeling_rope_utils.py, transformers 4.57.6), on
// the host. Each starts, as HF does, from PyTorch's float32 powers theta^(2i / dim) (the
// values of Zeta's and HF's plain inv_freq); what the scaling does to them is computed in
// double and rounded once (HF rounds after each float32 operation: tests/golden_test.cpp
// says by how many ulp the two differ).
#include "rope_scaling.h"

#include "error.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>

namespace helix {

std::string to_string(RopeScaling::Type type) {
    switch (type) {
    case RopeScaling::Type::None: return "none";
    case RopeScaling::Type::Linear: return "linear";
    case RopeScaling::Type::Dynamic: return "dynamic";
    case RopeScaling::Type::Yarn: return "yarn";
    case RopeScaling::Type::Llama3: return "llama3";
    case RopeScaling::Type::LongRope: return "longrope";
    }
    return "?";
}

std::string to_string(AngleMode mode) { return mode == AngleMode::Fp32 ? "fp32" : "accurate"; }

RopeScaling RopeScaling::linear(double factor) {
    RopeScaling s;
    s.type = Type::Linear;
    s.factor = factor;
    return s;
}

RopeScaling RopeScaling::dynamic(double factor, int64_t max_position_embeddings) {
    RopeScaling s = linear(factor);
    s.type = Type::Dynamic;
    s.max_position_embeddings = max_position_embeddings;
    return s;
}

RopeScaling RopeScaling::yarn(double factor, int64_t original_max_position_embeddings) {
    RopeScaling s = linear(factor);
    s.type = Type::Yarn;
    s.original_max_position_embeddings = original_max_position_embeddings;
    return s;
}

RopeScaling RopeScaling::llama3(double factor, double low_freq_factor, double high_freq_factor,
                                int64_t original_max_position_embeddings) {
    RopeScaling s = yarn(factor, original_max_position_embeddings);
    s.type = Type::Llama3;
    s.low_freq_factor = low_freq_factor;
    s.high_freq_factor = high_freq_factor;
    return s;
}

RopeScaling RopeScaling::longrope(std::vector<double> short_factor, std::vector<double> long_factor, double factor,
                                  int64_t original_max_position_embeddings) {
    RopeScaling s = yarn(factor, original_max_position_embeddings);
    s.type = Type::LongRope;
    s.short_factor = std::move(short_factor);
    s.long_factor = std::move(long_factor);
    return s;
}

namespace detail {
namespace {

const char *kWhat = "rope_scaling";

void require_finite_at_least(const char *op, const std::string &name, double value, double least, const char *why) {
    if (!std::isfinite(value) || value < least) {
        reject(op, std::string(kWhat) + "." + name, "a finite number >= " + str(least) + why, str(value));
    }
}

void require_positive_length(const char *op, const char *name, int64_t value) {
    if (value <= 0 || value > std::numeric_limits<int32_t>::max()) {
        reject(op, std::string(kWhat) + "." + name, "a length in [1, 2^31)", str(value));
    }
}

void require_factors(const char *op, const char *name, const std::vector<double> &factors, int64_t dim) {
    if (static_cast<int64_t>(factors.size()) != dim / 2) {
        reject(op, std::string(kWhat) + "." + name, str(dim / 2) + " values (dim / 2)",
               str(factors.size()) + " values");
    }
    for (size_t i = 0; i < factors.size(); i++) {
        if (!std::isfinite(factors[i]) || factors[i] <= 0) {
            reject(op, std::string(kWhat) + "." + name, "positive finite values",
                   "[" + str(i) + "] = " + str(factors[i]));
        }
    }
}

// PyTorch's float32 theta^(2i / dim) for a float32 base: the float32 exponent, the correctly
// rounded power (libm's, as PyTorch's scalar path; its vectorized Sleef powf is within
// 1 ulp of it: tests/golden_test.cpp).
double float32_power(float base, int64_t i, int64_t dim) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(dim);
    return static_cast<float>(std::pow(static_cast<double>(base), static_cast<double>(exponent)));
}

// HF's yarn find_correction_dim: the dimension whose wavelength fits num_rotations times
// into max_position_embeddings.
double correction_dim(double num_rotations, int64_t dim, double base, int64_t max_position_embeddings) {
    return static_cast<double>(dim) *
           std::log(static_cast<double>(max_position_embeddings) / (num_rotations * 2 * M_PI)) / (2 * std::log(base));
}

double yarn_mscale(double factor, double mscale) { return factor <= 1 ? 1.0 : 0.1 * mscale * std::log(factor) + 1.0; }

}  // namespace

void check_scaling(const char *op, const RopeScaling &s, int64_t dim) {
    using Type = RopeScaling::Type;
    if (s.type == Type::None) return;
    require_finite_at_least(op, "factor", s.factor, 1.0, "");
    switch (s.type) {
    case Type::None:
    case Type::Linear: break;
    case Type::Dynamic:
        require_positive_length(op, "max_position_embeddings", s.max_position_embeddings);
        if (dim <= 2) reject(op, "dim", "more than 2 with dynamic scaling (its exponent is dim / (dim - 2))", str(dim));
        break;
    case Type::Yarn:
        require_positive_length(op, "original_max_position_embeddings", s.original_max_position_embeddings);
        require_finite_at_least(op, "beta_slow", s.beta_slow, std::numeric_limits<double>::denorm_min(), "");
        require_finite_at_least(op, "beta_fast", s.beta_fast, s.beta_slow, " (beta_slow)");
        for (const auto &[name, value] : {std::pair{"mscale", s.mscale}, std::pair{"mscale_all_dim", s.mscale_all_dim}}) {
            if (value && !std::isfinite(*value)) reject(op, std::string(kWhat) + "." + name, "a finite number", str(*value));
        }
        break;
    case Type::Llama3:
        require_positive_length(op, "original_max_position_embeddings", s.original_max_position_embeddings);
        require_finite_at_least(op, "low_freq_factor", s.low_freq_factor, std::numeric_limits<double>::denorm_min(), "");
        if (!std::isfinite(s.high_freq_factor) || s.high_freq_factor <= s.low_freq_factor) {
            reject(op, std::string(kWhat) + ".high_freq_factor",
                   "a finite number > low_freq_factor = " + str(s.low_freq_factor), str(s.high_freq_factor));
        }
        break;
    case Type::LongRope:
        require_positive_length(op, "original_max_position_embeddings", s.original_max_position_embeddings);
        require_factors(op, "short_factor", s.short_factor, dim);
        require_factors(op, "long_factor", s.long_factor, dim);
        break;
    }
    if (s.attention_factor && (!std::isfinite(*s.attention_factor) || *s.attention_factor <= 0)) {
        reject(op, std::string(kWhat) + ".attention_factor", "a positive finite number", str(*s.attention_factor));
    }
}

namespace {

// The scaled frequencies of both precisions: `power(base, i)` gives theta^(2i / dim) for
// a base (float32 as PyTorch forms it, or double), `rounded` rounds what is formed in
// between as HF does for float32 (llama3 decides its bands on the float32 frequency).
template <typename Power, typename Rounded>
std::vector<double> scaled(int64_t dim, double theta, const RopeScaling &s, int64_t seq_len, Power power_of,
                           Rounded rounded) {
    using Type = RopeScaling::Type;
    const int64_t half = dim / 2;
    double base = theta;
    if (s.type == Type::Dynamic) {
        // HF's base for the sequence length (never below max_position_embeddings).
        const double n = static_cast<double>(std::max(seq_len, s.max_position_embeddings));
        const double d = static_cast<double>(dim);
        base = theta * std::pow(s.factor * n / static_cast<double>(s.max_position_embeddings) - (s.factor - 1), d / (d - 2));
    }
    double low = 0, high = 0;  // yarn's ramp
    if (s.type == Type::Yarn) {
        const int64_t original = s.original_max_position_embeddings;
        low = correction_dim(s.beta_fast, dim, theta, original);
        high = correction_dim(s.beta_slow, dim, theta, original);
        if (s.truncate) {
            low = std::floor(low);
            high = std::ceil(high);
        }
        low = std::max(low, 0.0);
        high = std::min(high, static_cast<double>(dim - 1));
        if (low == high) high += 0.001;  // HF: prevents a singular ramp
    }
    const std::vector<double> *long_rope = nullptr;
    if (s.type == Type::LongRope) {
        long_rope = seq_len > s.original_max_position_embeddings ? &s.long_factor : &s.short_factor;
    }
    std::vector<double> out(static_cast<size_t>(half));
    for (int64_t i = 0; i < half; i++) {
        const double power = power_of(base, i);
        const double plain = 1.0 / power;
        double value = plain;
        switch (s.type) {
        case Type::None:
        case Type::Dynamic: break;
        case Type::Linear: value = plain / s.factor; break;
        case Type::Yarn: {
            const double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
            value = 1.0 / (s.factor * power) * ramp + plain * (1.0 - ramp);
            break;
        }
        case Type::Llama3: {
            // From HF's float32 inv_freq: the bands are decided on its wavelength.
            const double inv = rounded(plain);
            const double original = static_cast<double>(s.original_max_position_embeddings);
            const double wavelen = 2 * M_PI / inv;
            const double low_wavelen = original / s.low_freq_factor, high_wavelen = original / s.high_freq_factor;
            if (wavelen > low_wavelen) {
                value = inv / s.factor;
            } else if (wavelen < high_wavelen) {
                value = inv;
            } else {
                const double smooth = (original / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
                value = (1 - smooth) * inv / s.factor + smooth * inv;
            }
            break;
        }
        case Type::LongRope: value = 1.0 / ((*long_rope)[static_cast<size_t>(i)] * power); break;
        }
        out[static_cast<size_t>(i)] = value;
    }
    return out;
}

}  // namespace

std::vector<float> scaled_inv_freq(int64_t dim, double theta, const RopeScaling &s, int64_t seq_len) {
    // The base rounded to float32 as PyTorch rounds HF's Python float (theta, dynamic's).
    const std::vector<double> values = scaled(
        dim, theta, s, seq_len, [dim](double base, int64_t i) { return float32_power(static_cast<float>(base), i, dim); },
        [](double v) { return static_cast<double>(static_cast<float>(v)); });
    return std::vector<float>(values.begin(), values.end());
}

std::vector<double> scaled_inv_freq_f64(int64_t dim, double theta, const RopeScaling &s, int64_t seq_len) {
    return scaled(
        dim, theta, s, seq_len,
        [dim](double base, int64_t i) { return std::pow(base, static_cast<double>(2 * i) / static_cast<double>(dim)); },
        [](double v) { return v; });
}

void split_frequencies(const std::vector<double> &values, Tensor &hi, Tensor &lo) {
    const int64_t n = static_cast<int64_t>(values.size());
    hi = Tensor({n});
    lo = Tensor({n});
    for (int64_t i = 0; i < n; i++) {
        std::tie(static_cast<float *>(hi.data())[i], static_cast<float *>(lo.data())[i]) =
            split_frequency(values[static_cast<size_t>(i)]);
    }
}

double scaled_attention_factor(const RopeScaling &s) {
    using Type = RopeScaling::Type;
    if (s.attention_factor && (s.type == Type::Yarn || s.type == Type::LongRope)) return *s.attention_factor;
    switch (s.type) {
    case Type::Yarn:
        if (s.mscale && s.mscale_all_dim && *s.mscale != 0 && *s.mscale_all_dim != 0) {
            return yarn_mscale(s.factor, *s.mscale) / yarn_mscale(s.factor, *s.mscale_all_dim);
        }
        return yarn_mscale(s.factor, 1.0);
    case Type::LongRope:
        if (s.factor <= 1) return 1.0;
        return std::sqrt(1 + std::log(s.factor) / std::log(static_cast<double>(s.original_max_position_embeddings)));
    default: return 1.0;
    }
}

}  // namespace detail
}  // namespace helix
