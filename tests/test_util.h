// Shared pieces of the helix tests: random tensors in several memory layouts, the kernel
// sets every test runs over, and the comparison of a rotation against the reference.
#pragma once

#include "kernels.h"
#include "reference.h"

#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace helix::test {

// Every correctness test runs over each kernel set of this test binary through the same
// API code: the CPU binary over the tuned and baseline schedules, a GPU binary
// (compiled with HELIX_TEST_GPU_CUDA or HELIX_TEST_GPU_OPENCL) over that device's kernels.
struct KernelSet {
    const char *name;
    const detail::Kernels &(*get)();
    Device device;
};
#if defined(HELIX_TEST_GPU_CUDA)
inline const KernelSet kKernelSets[] = {{"cuda", detail::kernels_cuda, Device::CUDA}};
#elif defined(HELIX_TEST_GPU_OPENCL)
inline const KernelSet kKernelSets[] = {{"opencl", detail::kernels_opencl, Device::OpenCL}};
#else
inline const KernelSet kKernelSets[] = {{"tuned", detail::kernels_tuned, Device::CPU},
                                        {"baseline", detail::kernels_baseline, Device::CPU}};
#endif

// The set's kernels on the set's device with CPU tensors in and out: on a GPU the inputs
// are copied to the device and the results back, explicitly, as a user would.
inline Tensor to_device(const KernelSet &set, const Tensor &t) {
    return set.device == Device::CPU || !t.defined() ? t : t.to(set.device);
}
inline Tensor device_output(const KernelSet &set, const Tensor &t) {
    return set.device == Device::CPU ? t : Tensor(t.shape(), t.dtype(), set.device);
}
inline void to_host(const KernelSet &set, const Tensor &device, const Tensor &host) {
    if (set.device != Device::CPU) host.copy_from(device);
}

inline void run_tables(const KernelSet &set, const SinusoidalEmbeddings &emb, int64_t seq_len, int64_t start,
                       const Tensor &freqs, const Tensor &scale, Stores stores = Stores::Auto) {
    const Tensor f = device_output(set, freqs), s = device_output(set, scale);
    detail::sinusoidal_window(set.get(), emb, seq_len, start, f, s, stores);
    to_host(set, f, freqs);
    to_host(set, s, scale);
}

// The device output for `out`: the input's own device copy when out is exactly the input
// (in place on the device too), else a fresh one.
inline Tensor device_output_for(const KernelSet &set, const Tensor &out, const Tensor &in, const Tensor &in_device) {
    const bool in_place = out.data() == in.data() && out.shape() == in.shape() && out.strides() == in.strides();
    return in_place ? in_device : device_output(set, out);
}

inline void run_rotate_half(const KernelSet &set, const Tensor &x, const Tensor &out,
                            Pairing pairing = Pairing::HalfSplit) {
    const Tensor xd = to_device(set, x), o = device_output_for(set, out, x, xd);
    detail::rotate_half(set.get(), xd, o, pairing);
    to_host(set, o, out);
}

inline void run_apply(const KernelSet &set, const Tensor &q, const Tensor &k, const Tensor &freqs, const Scale &scale,
                      const Tensor &q_out, const Tensor &k_out, const RotaryOptions &options = {}) {
    const Tensor qd = to_device(set, q), kd = to_device(set, k);
    const Tensor qo = device_output_for(set, q_out, q, qd), ko = device_output_for(set, k_out, k, kd);
    const Scale s = scale.tensor().defined() ? Scale(to_device(set, scale.tensor())) : scale;
    detail::apply_rotary_pos_emb(set.get(), qd, kd, to_device(set, freqs), s, qo, ko, options);
    to_host(set, qo, q_out);
    to_host(set, ko, k_out);
}

// Positions whose tensors live on the set's device (as a GPU user would keep them).
inline Positions positions_on(const KernelSet &set, const Positions &p) {
    switch (p.kind()) {
    case Positions::Kind::Offsets: return Positions::offsets(to_device(set, p.tensor()));
    case Positions::Kind::Ids: return Positions::ids(to_device(set, p.tensor()));
    case Positions::Kind::Varlen: return Positions::varlen(to_device(set, p.tensor()), to_device(set, p.offsets()));
    default: return p;
    }
}

// apply_rotary_pos_emb with any table form and positions on the set's device; k and k_out
// may be undefined.
inline void run_apply_table(const KernelSet &set, const Tensor &q, const Tensor &k, const RotaryTable &table,
                            const Tensor &q_out, const Tensor &k_out, RotaryOptions options = {}) {
    const Tensor qd = to_device(set, q), kd = to_device(set, k);
    const Tensor qo = device_output_for(set, q_out, q, qd);
    const Tensor ko = k_out.defined() ? device_output_for(set, k_out, k, kd) : Tensor();
    const RotaryTable t = set.device == Device::CPU ? table : table.to(set.device);
    options.positions = positions_on(set, options.positions);
    if (options.k_positions) options.k_positions = positions_on(set, *options.k_positions);
    detail::apply_rotary_pos_emb(set.get(), qd, kd, t, qo, ko, options);
    to_host(set, qo, q_out);
    if (k_out.defined()) to_host(set, ko, k_out);
}

// An integer tensor of the values of a float32 one (golden arrays hold integers so).
inline Tensor integers(const Tensor &values, DType dtype = DType::Int32) {
    Tensor t(values.shape(), dtype);
    for (int64_t i = 0; i < values.numel(); i++) {
        const float v = static_cast<const float *>(values.contiguous().data())[i];
        if (dtype == DType::Int64) {
            static_cast<int64_t *>(t.data())[i] = static_cast<int64_t>(v);
        } else {
            static_cast<int32_t *>(t.data())[i] = static_cast<int32_t>(v);
        }
    }
    return t;
}

inline std::string kernel_set_name(const ::testing::TestParamInfo<KernelSet> &info) { return info.param.name; }

// Memory layouts of test tensors. Each keeps the last dimension dense (unit stride).
enum class Layout {
    Contiguous,
    PaddedRows,       // rows longer than d, data starting off the vector alignment
    HeadsTransposed,  // (b, n, h, d) memory viewed as (b, h, n, d), as attention code does
};
inline const Layout kLayouts[] = {Layout::Contiguous, Layout::PaddedRows, Layout::HeadsTransposed};

// Uniform values in [lo, hi), each rounded once to the tensor's storage type.
inline void fill_uniform(const Tensor &t, std::mt19937 &rng, float lo = -1.0f, float hi = 1.0f) {
    std::uniform_real_distribution<float> dist(lo, hi);
    ref::for_each_index(t.shape(), [&](const std::vector<int64_t> &idx) { ref::store(t, idx, dist(rng)); });
}

inline Tensor make_tensor(const std::vector<int64_t> &shape, Layout layout, DType dtype = DType::Float32) {
    const int rank = static_cast<int>(shape.size());
    if (layout == Layout::PaddedRows) {
        std::vector<int64_t> padded = shape;
        padded.back() += 5;
        return Tensor(padded, dtype).narrow(-1, 3, shape.back());
    }
    if (layout == Layout::HeadsTransposed && rank >= 3) {
        std::vector<int64_t> swapped = shape;
        std::swap(swapped[rank - 2], swapped[rank - 3]);
        return Tensor(swapped, dtype).transpose(-2, -3);
    }
    return Tensor(shape, dtype);
}

inline Tensor random_tensor(const std::vector<int64_t> &shape, Layout layout, std::mt19937 &rng,
                            DType dtype = DType::Float32) {
    Tensor t = make_tensor(shape, layout, dtype);
    fill_uniform(t, rng);
    return t;
}

// The store choices to run a set's kernels with: both on the CPU (results bit-identical),
// Auto on a device (where the choice does not apply).
inline std::vector<Stores> stores_choices(const KernelSet &set) {
    if (set.device != Device::CPU) return {Stores::Auto};
    return {Stores::Ordinary, Stores::Streaming};
}

// a and b (same shape and dtype) hold the same bits in every element.
inline void expect_same_bits(const Tensor &a, const Tensor &b, const std::string &what) {
    ASSERT_EQ(a.shape(), b.shape()) << what;
    ASSERT_EQ(a.dtype(), b.dtype()) << what;
    int64_t differ = 0;
    ref::for_each_index(a.shape(), [&](const std::vector<int64_t> &idx) {
        const char *x = static_cast<const char *>(a.data()) + ref::offset_of(a, idx) * a.element_size();
        const char *y = static_cast<const char *>(b.data()) + ref::offset_of(b, idx) * b.element_size();
        differ += std::memcmp(x, y, a.element_size()) != 0;
    });
    EXPECT_EQ(differ, 0) << what << ": elements that differ";
}

// The storage types a kernel set has kernels for.
inline std::vector<DType> element_types(const KernelSet &set) {
    std::vector<DType> types;
    for (const detail::TypedKernels &t : set.get().typed) {
        if (t.pairing == Pairing::HalfSplit) types.push_back(t.dtype);
    }
    return types;
}

// CPU tables of rows [start, start + rows) of a seq_len-position sequence from a kernel
// set (rows < 0: to the end).
inline RotaryTables make_tables(const KernelSet &set, const SinusoidalEmbeddings &emb, int64_t seq_len,
                                int64_t start = 0, int64_t rows = -1) {
    if (rows < 0) rows = seq_len - start;
    RotaryTables t{Tensor({rows, emb.dim()}),
                   Tensor(emb.use_xpos() ? std::vector<int64_t>{rows, emb.dim()} : std::vector<int64_t>{1})};
    run_tables(set, emb, seq_len, start, t.freqs, t.scale);
    return t;
}

// The scale at table element (row, j): a table (broadcast dims allowed) or a scalar.
inline double scale_at(const Scale &scale, int64_t row, int64_t j) {
    const Tensor &s = scale.tensor();
    if (!s.defined()) return scale.value();
    if (s.numel() == 1) return *static_cast<const float *>(s.data());
    return ref::element(s, {s.size(0) == 1 ? 0 : row, s.size(1) == 1 ? 0 : j});
}

// The coefficients of one element of a rotation: out = x cos s + rotate(x) sin s.
struct Coefficients {
    double cos, sin, scale;
};
using CoefficientsAt = std::function<Coefficients(const std::vector<int64_t> &idx)>;

// Checks x' = the rotation of x with the coefficients of each element against the float64
// reference with the bound of SPEC section 4: tol * s * max(|x_j|, |x_pair|), plus for
// float16/bfloat16 outputs one ulp of the storage type (the float32 result rounded once).
// The pairs are those of options.pairing inside the first rotary_dim features; the
// features past it must equal x bit for bit. Returns the largest error in units of that
// bound.
inline double check_rotation_with(const Tensor &x, const Tensor &out, const CoefficientsAt &at, double tol,
                                  const std::string &what, const RotaryOptions &options = {}) {
    const int64_t d = x.size(-1);
    const int64_t rotary_dim = options.rotary_dim ? options.rotary_dim : d, half = rotary_dim / 2;
    const bool split = options.pairing == Pairing::HalfSplit;
    double worst = 0;
    int failures = 0;
    ref::for_each_index(x.shape(), [&](const std::vector<int64_t> &idx) {
        const int64_t j = idx.back();
        const double got = ref::value(out, idx);
        if (j >= rotary_dim) {  // passed through
            const double in = ref::value(x, idx);
            if (std::memcmp(&got, &in, sizeof got) != 0 && failures++ < 5) {
                ADD_FAILURE() << what << ": pass-through element (" << ::testing::PrintToString(idx) << ") = " << got
                              << ", input " << in;
            }
            return;
        }
        std::vector<int64_t> partner = idx;
        partner.back() = split ? (j < half ? j + half : j - half) : (j ^ 1);
        const bool first = split ? j < half : j % 2 == 0;
        const Coefficients c = at(idx);
        const ref::Rotated r = ref::rotate(ref::value(x, idx), ref::value(x, partner), first, c.cos, c.sin, c.scale);
        const double expected = r.value, err = std::fabs(got - expected);
        const double storage = out.dtype() == DType::Float32 ? 0.0 : ref::ulp(out.dtype(), expected);
        const double bound = tol * r.magnitude + storage;
        if (std::isinf(got) && got == ref::round_to(out.dtype(), expected)) return;  // beyond the type's range
        if (bound > 0) worst = std::max(worst, err / bound);
        if (!(err <= bound) && failures++ < 5) {
            ADD_FAILURE() << what << ": element (" << ::testing::PrintToString(idx) << ") = " << got << ", expected "
                          << expected << " +- " << bound << " (cos " << c.cos << ", sin " << c.sin << ", scale "
                          << c.scale << ")";
        }
    });
    return worst;
}

// Checks x' = rotation of x by the rows [first_row, first_row + n) of freqs (Zeta's
// alignment: first_row = N - n), with scale (inverse = true: 1 / scale, as for keys).
inline double check_rotation(const Tensor &x, const Tensor &out, const Tensor &freqs, const Scale &scale,
                             bool inverse, double tol, const std::string &what, const RotaryOptions &options = {}) {
    const int64_t first_row = freqs.size(0) - x.size(-2);
    return check_rotation_with(
        x, out,
        [&](const std::vector<int64_t> &idx) {
            const int64_t row = first_row + idx[idx.size() - 2], j = idx.back();
            const double angle = ref::element(freqs, {row, j}), s = scale_at(scale, row, j);
            return Coefficients{std::cos(angle), std::sin(angle), inverse ? 1.0 / s : s};
        },
        tol, what, options);
}

}  // namespace helix::test
