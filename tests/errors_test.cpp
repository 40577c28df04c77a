// Every rejected input of SPEC section 3: helix::Error whose message names the argument,
// the expected and the given value; nothing written to outputs; Halide runtime errors
// routed into the same exception.
#include "error.h"
#include "test_util.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <random>

namespace helix::test {
namespace {

template <typename F>
void expect_error(F &&call, std::initializer_list<const char *> parts) {
    try {
        call();
        ADD_FAILURE() << "expected helix::Error";
    } catch (const Error &e) {
        const std::string message = e.what();
        for (const char *part : parts) {
            EXPECT_NE(message.find(part), std::string::npos) << "message lacks \"" << part << "\": " << message;
        }
    }
}

// A valid set of arguments (N = 5, dim = 8); each test breaks one of them.
struct Args {
    Tensor q{std::vector<int64_t>{2, 3, 8}}, k{std::vector<int64_t>{2, 5, 8}};
    RotaryTables t = SinusoidalEmbeddings(8, 16.0, true).forward(5);
    Tensor q_out{std::vector<int64_t>{2, 3, 8}}, k_out{std::vector<int64_t>{2, 5, 8}};
    void apply() const { apply_rotary_pos_emb(q, k, t.freqs, t.scale, q_out, k_out); }
};

// A view with stride 2 in d; its storage lives as long as the test binary.
Tensor every_other_feature(const std::vector<int64_t> &shape) {
    std::vector<int64_t> wide = shape;
    wide.back() *= 2;
    static std::vector<Tensor> storage;
    storage.emplace_back(wide);
    std::vector<int64_t> strides = storage.back().strides();
    strides.back() = 2;
    return Tensor::wrap(storage.back().data(), shape, strides);
}

TEST(Errors, ValidArgumentsPass) { EXPECT_NO_THROW(Args().apply()); }

// ---- SinusoidalEmbeddings -----------------------------------------------------------

TEST(Errors, DimZero) { expect_error([] { SinusoidalEmbeddings(0); }, {"dim", "expected a positive even number", "given 0"}); }
TEST(Errors, DimTooLarge) {
    expect_error([] { SinusoidalEmbeddings(int64_t(1) << 32); }, {"dim", "below 2^31", "given 4294967296"});
}
TEST(Errors, DimNegative) { expect_error([] { SinusoidalEmbeddings(-4); }, {"dim", "positive even", "given -4"}); }
TEST(Errors, DimOdd) { expect_error([] { SinusoidalEmbeddings(7); }, {"dim", "positive even", "given 7"}); }

TEST(Errors, XposWithoutScaleBase) {
    expect_error([] { SinusoidalEmbeddings(8, std::nullopt, true); },
                 {"scale_base", "scale_base must be set when use_xpos is true", "given none"});
}

TEST(Errors, ScaleBaseNotPositive) {
    expect_error([] { SinusoidalEmbeddings(8, 0.0, true); }, {"scale_base", "positive finite", "given 0"});
    expect_error([] { SinusoidalEmbeddings(8, -2.0, true); }, {"scale_base", "positive finite", "given -2"});
}

TEST(Errors, ScaleBaseNotFinite) {
    expect_error([] { SinusoidalEmbeddings(8, INFINITY, true); }, {"scale_base", "positive finite", "given inf"});
    expect_error([] { SinusoidalEmbeddings(8, NAN, true); }, {"scale_base", "positive finite", "given nan"});
}

// ---- RopeScaling (HF's rope_scaling): what HF rejects or warns about, helix refuses ----

SinusoidalEmbeddings scaled(int64_t dim, const RopeScaling &scaling) {
    return SinusoidalEmbeddings(dim, std::nullopt, false, 10000.0, Pairing::HalfSplit, scaling);
}

TEST(Errors, ScalingFactorBelowOne) {
    expect_error([] { scaled(8, RopeScaling::linear(0.5)); }, {"rope_scaling.factor", "finite number >= 1", "given 0.5"});
    expect_error([] { scaled(8, RopeScaling::yarn(NAN, 64)); }, {"rope_scaling.factor", ">= 1", "given nan"});
    expect_error([] { scaled(8, RopeScaling::llama3(INFINITY, 1, 4, 64)); }, {"rope_scaling.factor", "given inf"});
}

TEST(Errors, ScalingLengths) {
    expect_error([] { scaled(8, RopeScaling::dynamic(2, 0)); },
                 {"rope_scaling.max_position_embeddings", "a length in [1, 2^31)", "given 0"});
    expect_error([] { scaled(8, RopeScaling::yarn(2, -5)); },
                 {"rope_scaling.original_max_position_embeddings", "given -5"});
    expect_error([] { scaled(2, RopeScaling::dynamic(2, 64)); }, {"dim", "more than 2 with dynamic", "given 2"});
}

TEST(Errors, Llama3FrequencyBands) {
    expect_error([] { scaled(8, RopeScaling::llama3(8, 4, 4, 8192)); },
                 {"rope_scaling.high_freq_factor", "> low_freq_factor = 4", "given 4"});
    expect_error([] { scaled(8, RopeScaling::llama3(8, 0, 4, 8192)); }, {"rope_scaling.low_freq_factor", "given 0"});
}

TEST(Errors, YarnBetas) {
    RopeScaling s = RopeScaling::yarn(4, 4096);
    s.beta_fast = 0.5;
    expect_error([&] { scaled(8, s); }, {"rope_scaling.beta_fast", ">= 1 (beta_slow)", "given 0.5"});
    s = RopeScaling::yarn(4, 4096);
    s.mscale = INFINITY;
    expect_error([&] { scaled(8, s); }, {"rope_scaling.mscale", "a finite number", "given inf"});
    s = RopeScaling::yarn(4, 4096);
    s.attention_factor = -1.0;
    expect_error([&] { scaled(8, s); }, {"rope_scaling.attention_factor", "positive finite", "given -1"});
}

TEST(Errors, LongRopeFactorLists) {
    expect_error([] { scaled(8, RopeScaling::longrope({1, 1, 1}, {1, 1, 1, 1}, 32, 4096)); },
                 {"rope_scaling.short_factor", "4 values (dim / 2)", "given 3 values"});
    expect_error([] { scaled(8, RopeScaling::longrope({1, 1, 1, 1}, {1, 1, 0, 1}, 32, 4096)); },
                 {"rope_scaling.long_factor", "positive finite values", "given [2] = 0"});
}

TEST(Errors, AttentionFactorOfATable) {
    const Tensor inv({4});
    expect_error([&] { RotaryTable::inv_freq(inv).with_attention_factor(0.0); },
                 {"RotaryTable::with_attention_factor", "factor", "positive finite", "given 0"});
    expect_error([&] { RotaryTable::inv_freq(inv).with_attention_factor(NAN); }, {"factor", "given nan"});
}

TEST(Errors, ThetaNotPositive) {
    expect_error([] { SinusoidalEmbeddings(8, std::nullopt, false, 0.0); }, {"theta", "positive finite", "given 0"});
    expect_error([] { SinusoidalEmbeddings(8, std::nullopt, false, -1.0); }, {"theta", "positive finite", "given -1"});
}

TEST(Errors, ThetaNotFinite) {
    expect_error([] { SinusoidalEmbeddings(8, std::nullopt, false, INFINITY); }, {"theta", "positive finite", "given inf"});
    expect_error([] { SinusoidalEmbeddings(8, std::nullopt, false, NAN); }, {"theta", "positive finite", "given nan"});
}

// Numbers are checked as the float32 the kernels take (SPEC section 3): 1e39 is inf and
// 1e-50 is 0 there. theta must be a normal float32 (below, 1 / theta^(2i/dim) overflows).
TEST(Errors, NumbersAreCheckedAfterConversionToFloat32) {
    expect_error([] { SinusoidalEmbeddings(8, std::nullopt, false, 1e39); },
                 {"theta", "positive finite", "as float32", "given 1e+39 (float32: inf)"});
    expect_error([] { SinusoidalEmbeddings(8, std::nullopt, false, 1e-50); }, {"theta", "given 1e-50 (float32: 0)"});
    expect_error([] { SinusoidalEmbeddings(8, std::nullopt, false, 1e-40); }, {"theta", "1.17549e-38", "given 1e-40"});
    expect_error([] { SinusoidalEmbeddings(8, 1e-50, true); }, {"scale_base", "given 1e-50 (float32: 0)"});
    expect_error([] { SinusoidalEmbeddings(8, 1e39, true); }, {"scale_base", "given 1e+39 (float32: inf)"});
    // The extremes that do convert are accepted, and their tables are finite.
    const RotaryTables t = SinusoidalEmbeddings(8, 1e-40, true, double(FLT_MIN)).forward(3);
    for (int64_t j = 0; j < 8; j++) EXPECT_TRUE(std::isfinite(t.freqs.at({2, j}))) << j;
}

TEST(Errors, SeqLenNegative) {
    expect_error([] { SinusoidalEmbeddings(8).forward(int64_t{-1}); }, {"seq_len", ">= 0 and below 2^31", "given -1"});
    const Tensor freqs({0, 8}), scale({1});
    expect_error([&] { SinusoidalEmbeddings(8).forward(-3, freqs, scale); }, {"seq_len", "[0, 2^31)", "given -3"});
}

TEST(Errors, ForwardInputRankBelowTwo) {
    expect_error([] { SinusoidalEmbeddings(8).forward(Tensor({5})); }, {"x", "rank >= 2", "given rank 1"});
}

TEST(Errors, WindowPositionsOutOfTheTable) {
    const SinusoidalEmbeddings emb(8);
    const Tensor freqs({5, 8}), scale({1});
    expect_error([&] { emb.window(10, 8, freqs, scale); }, {"start", "[0, 10)", "given [8, 13)"});
    expect_error([&] { emb.window(10, -1, freqs, scale); }, {"start", "[0, 10)", "given [-1, 4)"});
    expect_error([&] { emb.window(10, INT64_MAX, freqs, scale); }, {"start", "[0, 10)"});  // no overflow
}

// forward(seq_len, freqs, scale) fills the whole (seq_len, dim) table: a freqs of other
// length is an error, not half a table.
TEST(Errors, ForwardIntoATableOfOtherLength) {
    const SinusoidalEmbeddings emb(8);
    expect_error([&] { emb.forward(10, Tensor({5, 8}), Tensor({1})); }, {"freqs", "shape (10, 8)", "given (5, 8)"});
    expect_error([&] { emb.forward(3, Tensor({5, 8}), Tensor({1})); }, {"freqs", "shape (3, 8)", "given (5, 8)"});
}

TEST(Errors, TensorWithoutMemory) {
    expect_error([] { rotate_half(Tensor::wrap(nullptr, {2, 4}), Tensor({2, 4})); },
                 {"x", "a tensor with memory", "given a tensor with no memory"});
    expect_error([] { rotate_half(Tensor({2, 4}), Tensor::wrap(nullptr, {2, 4})); }, {"out", "with no memory"});
}

// Found by the fuzzer: a one-element scale without memory was read through a null pointer.
TEST(Errors, ScaleTensorWithoutMemory) {
    Args a;
    expect_error([&] { apply_rotary_pos_emb(a.q, a.k, a.t.freqs, Tensor::wrap(nullptr, {1}), a.q_out, a.k_out); },
                 {"scale", "a tensor with memory", "given a tensor with no memory"});
}

TEST(Errors, ViewRangeOverflow) {
    expect_error([] { Tensor({2, 4}).narrow(1, 1, INT64_MAX); }, {"start, length", "inside [0, 4)"});
    expect_error([] { Tensor({2, 4}).narrow(1, 1, INT64_MAX); }, {"given [1, 1 + 9223372036854775807)"});
}

TEST(Errors, ShapeTooLargeNamesTheShape) {
    expect_error([] { Tensor({2, 65536, 65536}); }, {"shape", "fewer than 2^31 elements"});
    // With explicit strides the element count is checked before it can overflow.
    float one = 0;
    const int64_t big = INT32_MAX;
    expect_error([&] { Tensor::wrap(&one, {big, big, big}, {0, 0, 0}); }, {"shape", "fewer than 2^62 elements"});
}

TEST(Errors, TableOutputsOfTheWrongShapeOrType) {
    const SinusoidalEmbeddings plain(8), xpos(8, 16.0, true);
    expect_error([&] { plain.forward(5, Tensor({5, 6}), Tensor({1})); }, {"freqs", "last dimension 8", "(5, 6)"});
    expect_error([&] { plain.forward(5, Tensor({5, 8}, DType::Float16), Tensor({1})); },
                 {"freqs", "dtype float32", "given float16"});
    expect_error([&] { plain.forward(5, Tensor({5, 8}), Tensor({2})); }, {"scale", "one element", "(2,)"});
    expect_error([&] { xpos.forward(5, Tensor({5, 8}), Tensor({1})); }, {"scale", "shape (5, 8)", "given (1,)"});
    expect_error([&] { plain.forward(2, every_other_feature({2, 8}), Tensor({1})); },
                 {"freqs", "unit stride", "given stride 2"});
}

TEST(Errors, TableOutputsOverlap) {
    const Tensor freqs({5, 8});
    expect_error([&] { SinusoidalEmbeddings(8, 16.0, true).forward(5, freqs, freqs); },
                 {"scale", "no element shared with freqs", "sharing elements with freqs"});
    const Tensor row({1, 8});
    expect_error([&] { SinusoidalEmbeddings(8).forward(5, Tensor::wrap(row.data(), {5, 8}, {0, 1}), Tensor({1})); },
                 {"freqs", "elements do not overlap each other", "strides (0, 1)"});
}

// ---- rotate_half --------------------------------------------------------------------

TEST(Errors, RotateHalfOddLastDimension) {
    expect_error([] { rotate_half(Tensor({2, 5})); }, {"x", "even last dimension", "(2, 5)"});
}

TEST(Errors, RotateHalfRank) {
    expect_error([] { rotate_half(Tensor({1, 1, 1, 2, 4})); }, {"x", "rank 1 to 4", "rank 5"});
    expect_error([] { rotate_half(Tensor()); }, {"x", "a defined tensor", "given an undefined tensor"});
}

TEST(Errors, RotateHalfNonUnitStride) {
    expect_error([] { rotate_half(every_other_feature({3, 4})); }, {"x", "unit stride", "given stride 2"});
    expect_error([] { rotate_half(Tensor({3, 4}), every_other_feature({3, 4})); }, {"out", "unit stride", "stride 2"});
}

TEST(Errors, RotateHalfOutputMismatch) {
    expect_error([] { rotate_half(Tensor({3, 4}), Tensor({3, 6})); }, {"out", "shape (3, 4)", "given (3, 6)"});
    expect_error([] { rotate_half(Tensor({3, 4}), Tensor({3, 4}, DType::BFloat16)); }, {"out", "dtype float32", "bfloat16"});
}

// A kernel set built without float16 names the types it has.
const detail::Kernels &float32_only() {
    static const detail::Kernels kernels = [] {
        detail::Kernels k = detail::tuned_kernels();
        k.typed.resize(1);  // float32 comes first in cmake/HelixKernels.cmake's list
        return k;
    }();
    return kernels;
}

TEST(Errors, RotateHalfUnbuiltDtype) {
    const Tensor x({3, 4}, DType::Float16);
    expect_error([&] { detail::rotate_half(float32_only(), x, Tensor({3, 4}, DType::Float16)); },
                 {"x", "dtype float32 (the element types helix was built for, half-split pairing)", "given float16"});
}

// In place means exactly the input (same memory, same strides); a partial overlap is an error.
TEST(Errors, RotateHalfPartiallyInPlace) {
    const Tensor rows({4, 4});
    expect_error([&] { rotate_half(rows.narrow(0, 0, 3), rows.narrow(0, 1, 3)); },
                 {"out", "no element shared with x (or exactly x: in place)", "sharing elements with x"});
    const Tensor x({3, 4});
    EXPECT_NO_THROW(rotate_half(x, x.transpose(0, 1).transpose(0, 1)));  // another handle of the same view: in place
}

// ---- apply_rotary_pos_emb -----------------------------------------------------------

TEST(Errors, QueryRankBelowTwo) {
    Args a;
    a.q = Tensor({8});
    a.q_out = Tensor({8});
    expect_error([&] { a.apply(); }, {"q", "rank 2 to 4", "rank 1"});
}

TEST(Errors, KeyRankAboveFour) {
    Args a;
    a.k = Tensor({1, 1, 2, 5, 8});
    expect_error([&] { a.apply(); }, {"k", "rank 2 to 4", "rank 5"});
}

TEST(Errors, FreqsRankNotTwo) {
    Args a;
    a.t.freqs = Tensor({1, 5, 8});
    expect_error([&] { a.apply(); }, {"freqs", "rank 2", "rank 3"});
}

// The table is (N, rotary_dim), rotary_dim = d unless given; q and k share d.
TEST(Errors, QueryWidthDiffersFromTable) {
    Args a;
    a.q = Tensor({2, 3, 6});
    expect_error([&] { a.apply(); }, {"freqs", "last dimension 6 (the last dimension of q; rotary_dim not set)",
                                      "given shape (5, 8)"});
}

TEST(Errors, KeyWidthDiffersFromQuery) {
    Args a;
    a.k = Tensor({2, 5, 10});
    expect_error([&] { a.apply(); }, {"k", "last dimension 8 (the last dimension of q)", "(2, 5, 10)"});
}

TEST(Errors, RotaryDimOddOrBeyondTheHead) {
    Args a;
    for (int64_t bad : {7, 10, -2}) {
        expect_error([&] { apply_rotary_pos_emb(a.q, a.k, a.t.freqs, a.t.scale, a.q_out, a.k_out, {Pairing::HalfSplit, bad}); },
                     {"rotary_dim", "an even number <= d = 8", ("given " + std::to_string(bad)).c_str()});
    }
    // rotary_dim 4: the table must be (N, 4).
    expect_error([&] { apply_rotary_pos_emb(a.q, a.k, a.t.freqs, a.t.scale, a.q_out, a.k_out, {Pairing::HalfSplit, 4}); },
                 {"freqs", "last dimension 4 (rotary_dim)", "given shape (5, 8)"});
}

TEST(Errors, PairingThisBuildLacks) {
    const Tensor x({3, 4}, DType::Float16);
    detail::Kernels half_split_only = detail::tuned_kernels();
    half_split_only.typed.erase(std::remove_if(half_split_only.typed.begin(), half_split_only.typed.end(),
                                               [](const detail::TypedKernels &t) { return t.pairing == Pairing::Interleaved; }),
                                half_split_only.typed.end());
    expect_error([&] { detail::rotate_half(half_split_only, x, Tensor({3, 4}, DType::Float16), Pairing::Interleaved); },
                 {"x", "dtype none (the element types helix was built for, interleaved pairing)", "given float16"});
}

TEST(Errors, QueryLongerThanTable) {
    Args a;
    a.q = Tensor({2, 6, 8});
    expect_error([&] { a.apply(); }, {"q", "at most 5 rows", "(2, 6, 8)"});
}

TEST(Errors, KeyLengthDiffersFromTable) {
    Args a;
    a.k = Tensor({2, 4, 8});
    expect_error([&] { a.apply(); }, {"k", "5 rows", "(2, 4, 8)"});
}

TEST(Errors, ScaleNotBroadcastable) {
    Args a;
    a.t.scale = Tensor({3, 8});
    expect_error([&] { a.apply(); }, {"scale", "broadcastable to (N, rotary_dim) = (5, 8)", "(3, 8)"});
    a.t.scale = Tensor({1, 5, 8});
    expect_error([&] { a.apply(); }, {"scale", "broadcastable", "(1, 5, 8)"});
}

TEST(Errors, MismatchedDtypes) {
    Args a;
    a.k = Tensor({2, 5, 8}, DType::Float16);
    expect_error([&] { a.apply(); }, {"k", "dtype float32 (the dtype of q)", "given float16"});
    Args b;
    b.t.freqs = Tensor({5, 8}, DType::BFloat16);
    expect_error([&] { b.apply(); }, {"freqs", "dtype float32", "given bfloat16"});
    Args c;
    c.t.scale = Tensor({5, 8}, DType::Float16);
    expect_error([&] { c.apply(); }, {"scale", "dtype float32", "given float16"});
    Args d;
    d.k_out = Tensor({2, 5, 8}, DType::Float16);
    expect_error([&] { d.apply(); }, {"k_out", "dtype float32", "given float16"});
}

TEST(Errors, UnbuiltElementType) {
    Args a;
    const Tensor q({2, 3, 8}, DType::Float16), k({2, 5, 8}, DType::Float16);
    expect_error([&] { detail::apply_rotary_pos_emb(float32_only(), q, k, a.t.freqs, a.t.scale, a.q_out, a.k_out); },
                 {"q", "the element types helix was built for", "given float16"});
}

TEST(Errors, NonUnitStrideInFeatures) {
    Args a;
    a.q = every_other_feature({2, 3, 8});
    expect_error([&] { a.apply(); }, {"q", "unit stride in the last dimension", "given stride 2"});
    Args b;
    b.k_out = every_other_feature({2, 5, 8});
    expect_error([&] { b.apply(); }, {"k_out", "unit stride", "given stride 2"});
    Args c;
    c.t.freqs = every_other_feature({5, 8});
    expect_error([&] { c.apply(); }, {"freqs", "unit stride", "given stride 2"});
}

TEST(Errors, OutputShapeMismatch) {
    Args a;
    a.q_out = Tensor({2, 4, 8});
    expect_error([&] { a.apply(); }, {"q_out", "shape (2, 3, 8)", "given (2, 4, 8)"});
}

TEST(Errors, OutputAliasesAnInput) {
    Args a;
    a.q_out = a.k.narrow(1, 0, 3);  // q' into k's memory: k is not q_out's own input
    expect_error([&] { a.apply(); }, {"q_out", "no element shared with k (not in place)", "sharing elements with k"});
    Args b;
    const Tensor rows({2, 6, 8});
    b.k = rows.narrow(1, 0, 5);
    b.k_out = rows.narrow(1, 1, 5);  // k shifted by one row: partly in place
    expect_error([&] { b.apply(); }, {"k_out", "no element shared with k (or exactly k: in place)", "sharing elements with k"});
    Args c;
    const Tensor shared({2, 5, 8});
    c.q_out = shared.narrow(1, 2, 3);
    c.k_out = shared;
    expect_error([&] { c.apply(); }, {"k_out", "no element shared with q_out"});
    Args d;
    const Tensor big({10, 8});
    d.t.scale = big.narrow(0, 0, 5);
    d.k_out = Tensor::wrap(big.data(), {2, 5, 8});
    expect_error([&] { d.apply(); }, {"k_out", "no element shared with scale"});
}

// Overlap is decided on elements (SPEC section 3): an output that overlaps itself is
// rejected (its parallel tasks would race); outputs that interleave without sharing an
// element are accepted and computed as if they were apart.
TEST(Errors, OutputOverlappingItself) {
    Args a;
    const Tensor row({8});
    a.q_out = Tensor::wrap(row.data(), {2, 3, 8}, {0, 0, 1});
    expect_error([&] { a.apply(); }, {"q_out", "elements do not overlap each other", "strides (0, 0, 1)"});
    Args b;
    const Tensor rows({4, 8});
    b.k_out = Tensor::wrap(rows.data(), {2, 5, 8}, {8, 4, 1});  // rows overlap by half a row
    expect_error([&] { b.apply(); }, {"k_out", "elements do not overlap each other", "strides (8, 4, 1)"});
    const Tensor x({3, 8});
    expect_error([&] { rotate_half(x, Tensor::wrap(rows.data(), {3, 8}, {1, 1})); }, {"out", "overlap each other"});
}

TEST(Errors, InterleavedOutputsWithoutSharedElementsAreAccepted) {
    Args separate;
    std::mt19937 rng(4);
    fill_uniform(separate.q, rng);
    fill_uniform(separate.k, rng);
    separate.apply();
    // q_out row i of batch b at storage row 2i, k_out row i at 2i + 1 (then k's last rows).
    Args interleaved;
    interleaved.q = separate.q;
    interleaved.k = separate.k;
    const Tensor storage({2, 10, 8});
    interleaved.q_out = Tensor::wrap(storage.data(), {2, 3, 8}, {80, 16, 1});
    interleaved.k_out = Tensor::wrap(static_cast<float *>(storage.data()) + 8, {2, 5, 8}, {80, 16, 1});
    ASSERT_NO_THROW(interleaved.apply());
    for (const auto &pair : {std::pair{interleaved.q_out, separate.q_out}, std::pair{interleaved.k_out, separate.k_out}}) {
        ref::for_each_index(pair.second.shape(), [&](const std::vector<int64_t> &idx) {
            ASSERT_EQ(ref::element(pair.first, idx), ref::element(pair.second, idx));
        });
    }
}

// A scale number is a positive finite float32 (SPEC section 3), whether given as a number
// or as a one-element tensor: NaN, 0, negative or out of float32 range are errors.
TEST(Errors, ScaleNumberNotPositiveFinite) {
    for (double bad : {double(NAN), 0.0, -1.0, 1e39, double(INFINITY), 1e-50}) {
        Args a;
        expect_error([&] { apply_rotary_pos_emb(a.q, a.k, a.t.freqs, Scale(bad), a.q_out, a.k_out); },
                     {"scale", "positive finite", ("given " + detail::str(bad)).c_str()});
        const Tensor one({1});
        one.at({0}) = static_cast<float>(bad);
        expect_error([&] { apply_rotary_pos_emb(a.q, a.k, a.t.freqs, one, a.q_out, a.k_out); }, {"scale", "positive finite"});
    }
}

TEST(Errors, UndefinedTensor) {
    Args a;
    a.k = Tensor();
    expect_error([&] { a.apply(); }, {"k", "a defined tensor", "given an undefined tensor"});
}

TEST(Errors, DeviceThisBuildLacks) {
    for (Device device : {Device::CUDA, Device::OpenCL}) {
        const std::vector<Device> built = supported_devices();  // one vector: begin and end of the same
        if (std::find(built.begin(), built.end(), device) != built.end()) continue;
        expect_error([&] { Tensor({2, 8}, DType::Float32, device); },
                     {"device", "a device this build of helix supports", ("given " + to_string(device)).c_str()});
    }
}

#if defined(HELIX_TEST_GPU_CUDA) || defined(HELIX_TEST_GPU_OPENCL)
TEST(Errors, MismatchedDevices) {
    const Device gpu = kKernelSets[0].device;
    Args a;
    a.q = a.q.to(gpu);
    a.q_out = a.q_out.to(gpu);
    expect_error([&] { a.apply(); }, {"k", ("device " + to_string(gpu) + " (the device of q)").c_str(), "given cpu"});
    const Tensor x({3, 4}, DType::Float32, gpu);
    expect_error([&] { rotate_half(x, Tensor({3, 4})); }, {"out", "the device of x", "given cpu"});
}
#endif

// ---- values of edge cases --------------------------------------------------------------

// Zeta returns ones(1) as the scale without xPos, for an empty table too.
TEST(EdgeCases, EmptyTableWithoutXposHasScaleOne) {
    const Device device = kKernelSets[0].device;
    const RotaryTables t = SinusoidalEmbeddings(8).forward(0, device);
    EXPECT_EQ(t.freqs.shape(), (std::vector<int64_t>{0, 8}));
    EXPECT_EQ(t.scale.to(Device::CPU).at({0}), 1.0f);
    const Tensor scale = Tensor({1}, DType::Float32, device);  // uninitialised on a GPU
    SinusoidalEmbeddings(8).forward(0, Tensor({0, 8}, DType::Float32, device), scale);
    EXPECT_EQ(scale.to(Device::CPU).at({0}), 1.0f);
}

// A rank-0 tensor holds one element, on any device: it is defined, copies, and works as a
// scale (it used to count as undefined on a device, so Scale(t) silently meant 1).
TEST(EdgeCases, RankZeroTensorsAreDefined) {
    const Device device = kKernelSets[0].device;
    Tensor host(std::vector<int64_t>{});
    EXPECT_TRUE(host.defined());
    EXPECT_EQ(host.numel(), 1);
    *static_cast<float *>(host.data()) = 2.0f;
    const Tensor t(std::vector<int64_t>{}, DType::Float32, device);
    EXPECT_TRUE(t.defined());
    EXPECT_EQ(t.numel(), 1);
    t.copy_from(host);
    const Tensor back(std::vector<int64_t>{});
    back.copy_from(t);
    EXPECT_EQ(*static_cast<float *>(back.data()), 2.0f);

    std::mt19937 rng(6);
    Args a;
    fill_uniform(a.q, rng);
    fill_uniform(a.k, rng);
    const Tensor freqs = a.t.freqs.to(device), q = a.q.to(device), k = a.k.to(device);
    const Tensor q_out(a.q.shape(), DType::Float32, device), k_out(a.k.shape(), DType::Float32, device);
    const Tensor q_two(a.q.shape(), DType::Float32, device), k_two(a.k.shape(), DType::Float32, device);
    apply_rotary_pos_emb(q, k, freqs, Scale(t), q_out, k_out);
    apply_rotary_pos_emb(q, k, freqs, Scale(2.0), q_two, k_two);
    const Tensor got = q_out.to(Device::CPU), want = q_two.to(Device::CPU);
    ref::for_each_index(got.shape(), [&](const std::vector<int64_t> &idx) {
        ASSERT_EQ(ref::element(got, idx), ref::element(want, idx));
    });
}

// ---- positions and table forms ------------------------------------------------------

Tensor int_tensor(const std::vector<int64_t> &shape, std::initializer_list<int64_t> values, DType dtype = DType::Int32) {
    Tensor t(shape, dtype);
    int64_t i = 0;
    for (int64_t v : values) {
        if (dtype == DType::Int64) static_cast<int64_t *>(t.data())[i++] = v;
        else static_cast<int32_t *>(t.data())[i++] = static_cast<int32_t>(v);
    }
    return t;
}

// q (2, 3, 8) and k (2, 5, 8) (rank 3: one batch of 2 heads) with positions on a 5-row table.
struct PositionArgs : Args {
    RotaryOptions options;
    void apply_with(const RotaryTable &table) const { apply_rotary_pos_emb(q, k, table, q_out, k_out, options); }
    void apply() const { apply_with(RotaryTable::angles(t.freqs, t.scale)); }
};

TEST(Errors, PositionsOutsideTheTable) {
    PositionArgs a;
    a.options.positions = Positions::start(1);  // k's 5 rows reach row 5
    expect_error([&] { a.apply(); }, {"positions", "inside the table's rows [0, 5)", "rows at [1, 6)"});
    a.options.positions = Positions::start(-1);
    expect_error([&] { a.apply(); }, {"positions", "inside the table's rows [0, 5)", "= -1"});
    a.options.positions = Positions::start(0);
    a.options.k_positions = Positions::ids(int_tensor({5}, {0, 1, 2, 5, 3}, DType::Int64));
    expect_error([&] { a.apply(); }, {"k_positions", "inside the table's rows [0, 5)", "ids[3] = 5"});
    a.options.k_positions = Positions::ids(int_tensor({1, 5}, {0, 1, -2, 4, 3}));
    expect_error([&] { a.apply(); }, {"k_positions", "ids[0, 2] = -2"});
    a.options.k_positions = Positions::ids(int_tensor({5}, {0, 1, 2, int64_t(1) << 40, 3}, DType::Int64));
    expect_error([&] { a.apply(); }, {"k_positions", "ids[3] = 1099511627776"});
    a.options.k_positions.reset();
    a.options.positions = Positions::offsets(int_tensor({1}, {1}));
    expect_error([&] { a.apply(); }, {"positions", "offsets[0] + 4 = 5"});
}

// Ids shared by every sequence are checked when there is no sequence: a batch of 0 (the
// random API test found them accepted).
TEST(Errors, SharedPositionIdsOfAnEmptyBatch) {
    const Tensor q({0, 2, 3, 8}), freqs({8, 8});
    RotaryOptions options;
    options.positions = Positions::ids(int_tensor({3}, {0, -1, 2}));
    expect_error([&] { apply_rotary_pos_emb(q, Tensor(), RotaryTable::angles(freqs), q, Tensor(), options); },
                 {"positions", "inside the table's rows [0, 8)", "ids[1] = -1"});
}

TEST(Errors, PositionTensorsOfTheWrongDtypeOrShape) {
    PositionArgs a;
    a.options.positions = Positions::ids(Tensor({3}));
    expect_error([&] { a.apply(); }, {"positions (ids)", "dtype int32 or int64", "float32"});
    a.options.positions = Positions::ids(int_tensor({4}, {0, 1, 2, 3}));
    expect_error([&] { a.apply(); }, {"positions (ids)", "shape (3,), (1, 3) or (1, 3)", "(4,)"});
    a.options.positions = Positions::ids(int_tensor({2, 3}, {0, 1, 2, 0, 1, 2}));
    expect_error([&] { a.apply(); }, {"positions (ids)", "(the rows of the tensor; its batches)", "(2, 3)"});
    a.options.positions = Positions::ids(Tensor({1, 1, 3}, DType::Int32));
    expect_error([&] { a.apply(); }, {"positions (ids)", "a rank 1 or 2 tensor", "(1, 1, 3)"});
    a.options.positions = Positions::offsets(int_tensor({2}, {0, 0}));
    expect_error([&] { a.apply(); }, {"positions (offsets)", "shape (1,) (one offset per sequence: the batch size)", "(2,)"});
    a.options.positions = Positions::ids(Tensor());
    expect_error([&] { a.apply(); }, {"positions (ids)", "undefined"});
}

TEST(Errors, VarlenCuSeqlensMalformed) {
    PositionArgs a;
    a.q = a.q_out = Tensor();
    a.q = Tensor({6, 2, 8});  // (total, h, d)
    a.q_out = Tensor({6, 2, 8});
    a.k = a.k_out = Tensor();
    auto with = [&](const Tensor &cu, const Tensor &offsets = {}) {
        a.options.positions = Positions::varlen(cu, offsets);
        a.apply();
    };
    expect_error([&] { with(int_tensor({3}, {0, 4, 5})); }, {"positions (cu_seqlens)", "to the token count 6", "from 0 to 5"});
    expect_error([&] { with(int_tensor({3}, {1, 4, 6})); }, {"positions (cu_seqlens)", "values from 0", "from 1 to 6"});
    expect_error([&] { with(int_tensor({4}, {0, 4, 3, 6})); },
                 {"positions (cu_seqlens)", "non-decreasing", "cu_seqlens[2] = 3 < cu_seqlens[1] = 4"});
    expect_error([&] { with(int_tensor({3}, {0, 4, 6}), int_tensor({3}, {0, 0, 0})); },
                 {"positions (varlen offsets)", "shape (2,) (one per sequence of cu_seqlens)", "(3,)"});
    expect_error([&] { with(int_tensor({3}, {0, 4, 6}), int_tensor({2}, {0, 4})); },
                 {"positions", "inside the table's rows [0, 5)", "token 5 of sequence 1 (offset 4) = 5"});
    expect_error([&] { with(Tensor({3})); }, {"positions (cu_seqlens)", "int32 or int64", "float32"});
    a.q = Tensor({1, 6, 2, 8});
    a.q_out = Tensor({1, 6, 2, 8});
    expect_error([&] { with(int_tensor({2}, {0, 6})); }, {"q", "rank 2 to 3", "rank 4"});
}

TEST(Errors, TableFormsOfTheWrongShape) {
    PositionArgs a;
    a.options.positions = Positions::start(0);
    a.k = Tensor({2, 3, 8});
    a.k_out = Tensor({2, 3, 8});
    expect_error([&] { a.apply_with(RotaryTable::cos_sin(Tensor({5, 8}), Tensor({5, 8}))); },
                 {"cos", "last dimension 4 (half of rotary_dim 8)", "(5, 8)"});
    expect_error([&] { a.apply_with(RotaryTable::cos_sin(Tensor({5, 4}), Tensor({6, 4}))); },
                 {"sin", "shape (5, 4) (the shape of cos)", "(6, 4)"});
    expect_error([&] { a.apply_with(RotaryTable::cos_sin_cache(Tensor({5, 7}))); }, {"cache", "rotary_dim even", "(5, 7)"});
    expect_error([&] { a.apply_with(RotaryTable::inv_freq(Tensor({8}))); }, {"inv_freq", "shape (4,)", "(8,)"});
    expect_error([&] { a.apply_with(RotaryTable::inv_freq(Tensor({4}), Tensor({5, 8}))); },
                 {"scale", "(1, 8) (the inv_freq form has no rows)", "(5, 8)"});
    expect_error([&] { a.apply_with(RotaryTable::inv_freq(int_tensor({4}, {1, 2, 3, 4}))); },
                 {"inv_freq", "dtype float32", "int32"});
    a.options.positions = Positions();
    expect_error([&] { a.apply_with(RotaryTable::inv_freq(Tensor({4}))); },
                 {"positions", "the inv_freq form has no table to align rows to"});
    // A position tensor beyond the table of a cos/sin form.
    a.options.positions = Positions::ids(int_tensor({3}, {0, 4, 2}));
    expect_error([&] { a.apply_with(RotaryTable::cos_sin(Tensor({4, 4}), Tensor({4, 4}))); },
                 {"positions", "inside the table's rows [0, 4)", "ids[1] = 4"});
    expect_error([&] { RotaryTable::inv_freq(SinusoidalEmbeddings(8, 16.0, true), -1); },
                 {"RotaryTable::inv_freq", "seq_len", "[0, 2^31)", "given -1"});
    // The no-table form takes any non-negative position below 2^31.
    a.options.positions = Positions::ids(int_tensor({3}, {0, int64_t(1) << 31, 2}, DType::Int64));
    expect_error([&] { a.apply_with(RotaryTable::inv_freq(Tensor({4}))); },
                 {"positions", "[0, 2^31) (no table)", "ids[1] = 2147483648"});
}

// Views whose elements Halide's 32-bit offsets cannot reach: a dimension spanning 2^31
// elements (two heads 2^30 apart), and one whose farthest element lies past 2^31 with every
// dimension within it (Halide's own checks pass that one, and its offsets would wrap: the
// kernel would read far outside q). An Error before any kernel runs, for every operation.
TEST(Errors, ViewsPast32BitOffsets) {
    std::vector<float> memory(8 * 128);  // never read: the strides reach far past it
    const int64_t g = int64_t(1) << 30;
    const Tensor wide = Tensor::wrap(memory.data(), {1, 2, 1, 128}, {g, g, 128, 1});
    const Tensor far = Tensor::wrap(memory.data(), {2, 2, 2, 128}, {g - 1, g - 1, g / 2, 1});
    const Tensor freqs = SinusoidalEmbeddings(128).forward(2).freqs;
    for (const Tensor *q : {&wide, &far}) {
        const Tensor q_out(q->shape());
        const std::string given = "shape " + q->shape_string();
        expect_error([&] { apply_rotary_pos_emb(*q, Tensor(), freqs, Scale(), q_out, Tensor()); },
                     {"helix::apply_rotary_pos_emb: q: expected elements within 2^31 - 1 elements of its first",
                      given.c_str()});
        expect_error([&] { rotate_half(*q, q_out); }, {"helix::rotate_half: x: expected elements within 2^31 - 1",
                                                        given.c_str()});
    }
    const Tensor table = Tensor::wrap(memory.data(), {2, 128}, {g * 2 - 1, 1});
    expect_error([&] { SinusoidalEmbeddings(128).forward(2, table, Tensor({1})); },
                 {"freqs: expected elements within 2^31 - 1 elements of its first", "strides (2147483647, 1)"});
}

// A kernel set built without a table form (bench/CMakeLists.txt's autoscheduled sets have
// only the angles one) says so.
TEST(Errors, TableFormTheSetLacks) {
    detail::Kernels angles_only = detail::tuned_kernels();
    for (detail::TypedKernels &t : angles_only.typed) t.apply_rotary.cos_sin = nullptr;
    PositionArgs a;
    a.options.positions = Positions::start(0);
    a.k = Tensor({2, 3, 8});
    a.k_out = Tensor({2, 3, 8});
    expect_error([&] {
        detail::apply_rotary_pos_emb(angles_only, a.q, a.k, RotaryTable::cos_sin(Tensor({5, 4}), Tensor({5, 4})), a.q_out,
                                     a.k_out, a.options);
    }, {"table", "a table form this kernel set has", "given cos_sin"});
}

TEST(Errors, KeyAndItsOutputTogether) {
    PositionArgs a;
    a.k_out = Tensor();
    expect_error([&] { a.apply(); }, {"k_out", "a defined tensor (k is given)"});
    PositionArgs b;
    b.k = Tensor();
    expect_error([&] { b.apply(); }, {"k", "a defined tensor (k_out is given)"});
}

// Positions are checked before anything is written: a bad position of k leaves q' unwritten.
TEST(Errors, BadPositionsLeaveOutputsUntouched) {
    PositionArgs a;
    a.options.positions = Positions::start(0);
    a.options.k_positions = Positions::ids(int_tensor({5}, {0, 1, 2, 3, 9}));
    Halide::Runtime::Buffer<float>(a.q_out.to_halide()).fill(7.0f);
    Halide::Runtime::Buffer<float>(a.k_out.to_halide()).fill(7.0f);
    EXPECT_THROW(a.apply(), Error);
    for (const Tensor *out : {&a.q_out, &a.k_out}) {
        ref::for_each_index(out->shape(), [&](const std::vector<int64_t> &idx) { ASSERT_EQ(ref::element(*out, idx), 7.0f); });
    }
}

// ---- nothing written when a check fails ---------------------------------------------

TEST(Errors, RejectedCallsLeaveOutputsUntouched) {
    Args a;
    a.k = Tensor({2, 4, 8});  // wrong length
    a.k_out = Tensor({2, 4, 8});
    Halide::Runtime::Buffer<float>(a.q_out.to_halide()).fill(7.0f);
    Halide::Runtime::Buffer<float>(a.k_out.to_halide()).fill(7.0f);
    EXPECT_THROW(a.apply(), Error);
    for (const Tensor *out : {&a.q_out, &a.k_out}) {
        ref::for_each_index(out->shape(), [&](const std::vector<int64_t> &idx) { ASSERT_EQ(ref::element(*out, idx), 7.0f); });
    }
    const Tensor freqs({5, 8}), bad_scale({5, 6});
    Halide::Runtime::Buffer<float>(freqs.to_halide()).fill(7.0f);
    EXPECT_THROW(SinusoidalEmbeddings(8, 16.0, true).forward(5, freqs, bad_scale), Error);
    ref::for_each_index(freqs.shape(), [&](const std::vector<int64_t> &idx) { ASSERT_EQ(ref::element(freqs, idx), 7.0f); });
}

// ---- Halide runtime errors ----------------------------------------------------------

// A buffer that breaks a kernel's declared constraint (dense features) reaches the Halide
// runtime's own checks; its message comes back as helix::Error through the handler.
TEST(Errors, HalideRuntimeErrorsBecomeHelixErrors) {
    const Tensor x({3, 8}), out({3, 8});
    Halide::Runtime::Buffer<> x_view = x.to_halide(), out_view = out.to_halide();
    halide_dimension_t strided[5] = {{0, 4, 2}, {0, 2, 1}, {0, 3, 8}, {0, 1, 0}, {0, 1, 0}};
    halide_dimension_t dense[5] = {{0, 4, 1}, {0, 2, 4}, {0, 3, 8}, {0, 1, 0}, {0, 1, 0}};
    Halide::Runtime::Buffer<> bad(x_view.type(), x.data(), 5, strided), good(out_view.type(), out.data(), 5, dense);
    detail::CallContext context;
    const int rc = detail::tuned_kernels().typed.at(0).rotate_half(&context, false, bad.raw_buffer(), good.raw_buffer());
    EXPECT_NE(rc, 0);
    expect_error([&] { context.check("rotate_half", rc); },
                 {"helix::rotate_half: Halide runtime error", "x", "stride", "1"});
}

}  // namespace
}  // namespace helix::test
