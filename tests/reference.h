// An independent scalar reference of SPEC section 1, in float64 where SPEC section 4 says
// the comparison is made in float64, and in float32 exactly where PyTorch rounds.
// Nothing here shares code with the generators.
#pragma once

#include "helix/helix.h"

#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

namespace helix::ref {

// PyTorch: 1.0 / (theta ** (arange(0, dim, 2).float() / dim)), all float32.
inline float inv_freq(int64_t i, int64_t dim, double theta) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(dim);
    const float power = static_cast<float>(std::pow(static_cast<double>(static_cast<float>(theta)), double(exponent)));
    return 1.0f / power;
}

// freqs[n, j]: the float32 product n * inv_freq[j mod H].
inline float angle(int64_t position, int64_t j, int64_t dim, double theta) {
    return static_cast<float>(position) * inv_freq(j % (dim / 2), dim, theta);
}

// zeta[i] = (2i + 0.4 dim) / (1.4 dim) in float32, power = (t - N // 2) / scale_base in
// float32, and the scale evaluated in float64: pow(zeta_f32, power_f32).
inline double xpos_scale(int64_t position, int64_t j, int64_t dim, int64_t seq_len, double scale_base) {
    const int64_t i = j % (dim / 2);
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

inline float &element(const Tensor &t, const std::vector<int64_t> &idx) {
    int64_t offset = 0;
    for (size_t d = 0; d < idx.size(); d++) offset += idx[d] * t.stride(static_cast<int>(d));
    return static_cast<float *>(t.data())[offset];
}

// One element of a rotation x' = x cos(a) s + rotate_half(x) sin(a) s, in float64, with the
// bound of SPEC section 4: |x' - ref| <= tol * s * max(|x_j|, |x_pair(j)|).
struct Rotated {
    double value;
    double magnitude;  // s * max(|x_j|, |x_pair(j)|)
};

inline Rotated rotate(double x_self, double x_partner, bool first_half, double angle, double s) {
    const double rotated = first_half ? -x_partner : x_partner;
    return {(x_self * std::cos(angle) + rotated * std::sin(angle)) * s,
            std::fabs(s) * std::max(std::fabs(x_self), std::fabs(x_partner))};
}

}  // namespace helix::ref
