// RoPE frequency scaling (helix::RopeScaling): HF transformers' rope init functions,
// evaluated on the host once per table.
#pragma once

#include "helix/helix.h"

#include <cstdint>
#include <utility>
#include <vector>

namespace helix::detail {

// Throws Error naming `op` when HF would reject the parameters or warn that they are
// invalid (helix refuses what HF only warns about), for an embedding of dim features.
void check_scaling(const char *op, const RopeScaling &scaling, int64_t dim);

// The float32 inv_freq (dim / 2 values) of a table of seq_len rows (0: HF's seq_len None):
// from PyTorch's float32 powers, as HF forms them, rounded once.
std::vector<float> scaled_inv_freq(int64_t dim, double theta, const RopeScaling &scaling, int64_t seq_len);
// The same frequencies in double throughout (double powers, no float32 step): what
// AngleMode::Accurate multiplies positions by, and the float64 reference's.
std::vector<double> scaled_inv_freq_f64(int64_t dim, double theta, const RopeScaling &scaling, int64_t seq_len);

// A frequency as a float32 (high, low) pair: hi = float(v), lo = float(v - hi) (v to 2^-48).
inline std::pair<float, float> split_frequency(double v) {
    const float hi = static_cast<float>(v);
    return {hi, static_cast<float>(v - hi)};
}
// Each of `values` so, into new (n,) tensors.
void split_frequencies(const std::vector<double> &values, Tensor &hi, Tensor &lo);

// The attention factor, as HF's Python float.
double scaled_attention_factor(const RopeScaling &scaling);

}  // namespace helix::detail
