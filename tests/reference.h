// An independent scalar reference of SPEC section 1, in float64 where SPEC section 4 says
// the comparison is made in float64, and in float32 exactly where PyTorch rounds.
// Nothing here shares code with the generators.
#pragma once

#include "helix/helix.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <vector>

namespace helix::ref {

// PyTorch: 1.0 / (theta ** (arange(0, dim, 2).float() / dim)), all float32.
inline float inv_freq(int64_t i, int64_t dim, double theta) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(dim);
    const float power = static_cast<float>(std::pow(static_cast<double>(static_cast<float>(theta)), double(exponent)));
    return 1.0f / power;
}

// The frequency of table column j: j mod H for half-split tables (cat(f, f)), j / 2 for
// interleaved ones (f0 f0 f1 f1 ...).
inline int64_t frequency_of(int64_t j, int64_t dim, Pairing pairing) {
    return pairing == Pairing::HalfSplit ? j % (dim / 2) : j / 2;
}

// freqs[n, j]: the float32 product n * inv_freq[i(j)].
inline float angle(int64_t position, int64_t j, int64_t dim, double theta, Pairing pairing = Pairing::HalfSplit) {
    return static_cast<float>(position) * inv_freq(frequency_of(j, dim, pairing), dim, theta);
}

// zeta[i] = (2i + 0.4 dim) / (1.4 dim) in float32, power = (t - N // 2) / scale_base in
// float32, and the scale evaluated in float64: pow(zeta_f32, power_f32).
inline double xpos_scale(int64_t position, int64_t j, int64_t dim, int64_t seq_len, double scale_base,
                         Pairing pairing = Pairing::HalfSplit) {
    const int64_t i = frequency_of(j, dim, pairing);
    const float zeta = (static_cast<float>(2 * i) + static_cast<float>(0.4 * double(dim))) /
                       static_cast<float>(1.4 * double(dim));
    const float power = (static_cast<float>(position) - static_cast<float>(seq_len / 2)) /
                        static_cast<float>(scale_base);
    return std::pow(double(zeta), double(power));
}

// Visits every index of a shape (outermost first), row-major.
inline void for_each_index(const std::vector<int64_t> &shape, const std::function<void(const std::vector<int64_t> &)> &f) {
    int64_t total = 1;
    for (int64_t s : shape) total *= s;
    std::vector<int64_t> idx(shape.size(), 0);
    for (int64_t count = 0; count < total; count++) {
        f(idx);
        for (int d = static_cast<int>(shape.size()) - 1; d >= 0; d--) {
            if (++idx[d] < shape[d]) break;
            idx[d] = 0;
        }
    }
}

inline int64_t offset_of(const Tensor &t, const std::vector<int64_t> &idx) {
    int64_t offset = 0;
    for (size_t d = 0; d < idx.size(); d++) offset += idx[d] * t.stride(static_cast<int>(d));
    return offset;
}

inline float &element(const Tensor &t, const std::vector<int64_t> &idx) {
    return static_cast<float *>(t.data())[offset_of(t, idx)];
}

// ---- storage types, independent of Halide's conversions -----------------------------

struct Format {
    int precision;      // significand bits, the leading one included
    int min_exponent;   // of the smallest normal number
    double max_finite;
};
inline Format format_of(DType dtype) {
    switch (dtype) {
    case DType::Float16: return {11, -14, 65504.0};
    case DType::BFloat16: return {8, -126, 3.38953138925153547590470800371487866e38};
    default: return {24, -126, 3.40282346638528859811704183484516925e38};
    }
}

// The spacing of the format's numbers at |x| (subnormals included).
inline double ulp(DType dtype, double x) {
    const Format f = format_of(dtype);
    int e = 0;
    std::frexp(x, &e);
    return std::ldexp(1.0, std::max(e - 1, f.min_exponent) - (f.precision - 1));
}

// x rounded once, to nearest even, to the storage type (inf beyond its range).
inline double round_to(DType dtype, double x) {
    if (x == 0 || !std::isfinite(x)) return x;
    const Format f = format_of(dtype);
    const double step = ulp(dtype, x);
    const double r = std::nearbyint(x / step) * step;
    return std::fabs(r) > f.max_finite ? std::copysign(INFINITY, x) : r;
}

inline uint16_t half_bits(double r) {  // r already a float16 value
    const uint16_t sign = std::signbit(r) ? 0x8000 : 0;
    r = std::fabs(r);
    if (std::isnan(r)) return 0x7e00;
    if (std::isinf(r)) return sign | 0x7c00;
    if (r < 0x1p-14) return sign | static_cast<uint16_t>(r / 0x1p-24);
    int e = 0;
    const double m = std::frexp(r, &e);  // r = m 2^e, m in [0.5, 1)
    return sign | static_cast<uint16_t>((e - 1 + 15) << 10) | static_cast<uint16_t>((2 * m - 1) * 1024);
}

inline double half_value(uint16_t b) {
    const double sign = b & 0x8000 ? -1.0 : 1.0;
    const int e = (b >> 10) & 0x1f, m = b & 0x3ff;
    if (e == 0x1f) return m ? NAN : sign * INFINITY;
    return sign * (e ? std::ldexp(1.0 + m / 1024.0, e - 15) : std::ldexp(m, -24));
}

// An element of a float32, float16 or bfloat16 tensor, as a double.
inline double value(const Tensor &t, const std::vector<int64_t> &idx) {
    const int64_t o = offset_of(t, idx);
    switch (t.dtype()) {
    case DType::Float16: return half_value(static_cast<const uint16_t *>(t.data())[o]);
    case DType::BFloat16: {
        const uint32_t bits = uint32_t(static_cast<const uint16_t *>(t.data())[o]) << 16;
        float f;
        std::memcpy(&f, &bits, 4);
        return f;
    }
    default: return static_cast<const float *>(t.data())[o];
    }
}

// Stores x rounded once to the tensor's type.
inline void store(const Tensor &t, const std::vector<int64_t> &idx, double x) {
    const int64_t o = offset_of(t, idx);
    const double r = round_to(t.dtype(), x);
    switch (t.dtype()) {
    case DType::Float16: static_cast<uint16_t *>(t.data())[o] = half_bits(r); break;
    case DType::BFloat16: {
        const float f = static_cast<float>(r);  // exact: r is a bfloat16 value
        uint32_t bits;
        std::memcpy(&bits, &f, 4);
        static_cast<uint16_t *>(t.data())[o] = static_cast<uint16_t>(bits >> 16);
        break;
    }
    default: static_cast<float *>(t.data())[o] = static_cast<float>(r);
    }
}

// One element of a rotation x' = x cos s + rotate_half(x) sin s, in float64, with the
// bound of SPEC section 4: |x' - ref| <= tol * s * max(|x_j|, |x_pair(j)|).
struct Rotated {
    double value;
    double magnitude;  // s * max(|x_j|, |x_pair(j)|)
};

inline Rotated rotate(double x_self, double x_partner, bool first_half, double cos, double sin, double s) {
    const double rotated = first_half ? -x_partner : x_partner;
    return {(x_self * cos + rotated * sin) * s, std::fabs(s) * std::max(std::fabs(x_self), std::fabs(x_partner))};
}

}  // namespace helix::ref
