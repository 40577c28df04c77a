// The bits codec that float16/bfloat16 kernels use on targets whose Halide backend lacks the
// type (CUDA float16 and bfloat16, OpenCL: generators/rope_algorithm.h), run on the CPU and compared
// with reference.h's independent rounding: every 16-bit pattern decoded; encoded, every
// value of the format, every tie between two neighbours and the float32 numbers on either
// side of it, the overflow and subnormal boundaries, and a stride through all float32 bit
// patterns. The kernels that use it are tested on OpenCL (PoCL) like every other kernel,
// and the CUDA ones on a GPU where there is one (scripts/gpu_check.sh).
#include "reference.h"

#include <helix_storage_codec_bf16.h>
#include <helix_storage_codec_f16.h>

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

namespace helix::test {
namespace {

float from_bits(uint32_t b) {
    float f;
    std::memcpy(&f, &b, 4);
    return f;
}
uint32_t bits_of(float f) {
    uint32_t b;
    std::memcpy(&b, &f, 4);
    return b;
}

// The reference: a 16-bit pattern's value, and a float32 value's pattern rounded once.
double decode(DType dtype, uint16_t b) {
    return dtype == DType::Float16 ? ref::half_value(b) : from_bits(uint32_t(b) << 16);
}
uint16_t encode(DType dtype, float x) {
    const double r = ref::round_to(dtype, x);
    if (dtype == DType::Float16) return ref::half_bits(r);
    return static_cast<uint16_t>(bits_of(static_cast<float>(r)) >> 16);  // r is a bfloat16 value
}

halide_buffer_t buffer(void *data, halide_type_t type, int32_t extent, halide_dimension_t &dim) {
    dim = halide_dimension_t(0, extent, 1);
    halide_buffer_t b{};
    b.host = static_cast<uint8_t *>(data);
    b.type = type;
    b.dimensions = 1;
    b.dim = &dim;
    return b;
}

// Runs the codec kernel of `dtype` over values and bits (the same count).
void run_codec(DType dtype, std::vector<float> &values, std::vector<uint16_t> &bits, std::vector<uint16_t> &encoded,
               std::vector<float> &decoded) {
    const int32_t n = static_cast<int32_t>(values.size());
    encoded.assign(n, 0);
    decoded.assign(n, 0);
    halide_dimension_t d[4];
    halide_buffer_t v = buffer(values.data(), halide_type_t(halide_type_float, 32), n, d[0]);
    halide_buffer_t b = buffer(bits.data(), halide_type_t(halide_type_uint, 16), n, d[1]);
    halide_buffer_t e = buffer(encoded.data(), halide_type_t(halide_type_uint, 16), n, d[2]);
    halide_buffer_t o = buffer(decoded.data(), halide_type_t(halide_type_float, 32), n, d[3]);
    const int rc = dtype == DType::Float16 ? helix_storage_codec_f16(nullptr, &v, &b, &e, &o)
                                           : helix_storage_codec_bf16(nullptr, &v, &b, &e, &o);
    ASSERT_EQ(rc, 0);
}

class StorageCodec : public ::testing::TestWithParam<DType> {};

TEST_P(StorageCodec, DecodesEveryPatternAndRoundsToNearestEven) {
    const DType dtype = GetParam();
    std::vector<float> values;
    for (uint32_t p = 0; p < 0x10000; p++) {
        const double x = decode(dtype, static_cast<uint16_t>(p)), next = decode(dtype, static_cast<uint16_t>(p + 1));
        if (!std::isfinite(x)) continue;
        values.push_back(static_cast<float>(x));
        if ((p & 0x7fff) != 0x7fff && std::isfinite(next) && std::signbit(x) == std::signbit(next)) {
            const float tie = static_cast<float>((x + next) / 2);  // exact: one more bit than the format
            values.insert(values.end(), {tie, std::nextafter(tie, -INFINITY), std::nextafter(tie, INFINITY)});
        }
    }
    // Past the largest finite value: the tie with the next power of two and beyond.
    const double max = ref::format_of(dtype).max_finite, top = max + ref::ulp(dtype, max) / 2;
    for (float x : {static_cast<float>(top), std::nextafter(static_cast<float>(top), 0.0f), 3.0e38f, INFINITY}) {
        values.insert(values.end(), {x, -x});
    }
    for (uint64_t b = 0; b < 0x100000000ull; b += 4093) values.push_back(from_bits(static_cast<uint32_t>(b)));
    values.push_back(NAN);

    std::vector<uint16_t> bits(values.size());
    for (size_t i = 0; i < bits.size(); i++) bits[i] = static_cast<uint16_t>(i);  // every pattern (and again)
    std::vector<uint16_t> encoded;
    std::vector<float> decoded;
    run_codec(dtype, values, bits, encoded, decoded);

    int failures = 0;
    for (size_t i = 0; i < values.size() && failures < 10; i++) {
        const float x = values[i];
        const uint16_t got = encoded[i];
        if (std::isnan(x)) {
            EXPECT_TRUE(std::isnan(decode(dtype, got))) << to_string(dtype) << ": NaN encoded as " << got;
        } else if (got != encode(dtype, x)) {
            ADD_FAILURE() << to_string(dtype) << ": " << std::hexfloat << x << " (bits " << std::hex << bits_of(x)
                          << ") encoded as " << got << ", expected " << encode(dtype, x);
            failures++;
        }
        const double want = decode(dtype, bits[i]), got_value = decoded[i];
        if (std::isnan(want) ? !std::isnan(got_value) : bits_of(decoded[i]) != bits_of(static_cast<float>(want))) {
            ADD_FAILURE() << to_string(dtype) << ": pattern " << std::hex << bits[i] << " decoded as " << std::hexfloat
                          << got_value << ", expected " << want;
            failures++;
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Types, StorageCodec, ::testing::Values(DType::Float16, DType::BFloat16),
                         [](const ::testing::TestParamInfo<DType> &info) { return to_string(info.param); });

}  // namespace
}  // namespace helix::test
