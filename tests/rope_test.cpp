// Correctness of every kernel set against the float64 reference (SPEC sections 1 and 4),
// over random shapes, layouts, tables and scale kinds.
#include "streaming.h"
#include "test_util.h"

#if defined(HELIX_TEST_GPU_CUDA)
#include <HalideRuntimeCuda.h>
#elif defined(HELIX_TEST_GPU_OPENCL)
#include <HalideRuntimeOpenCL.h>
#endif

#include <cfloat>
#include <cstring>
#include <iterator>

namespace helix::test {
namespace {

constexpr double kTol = 4e-6;             // SPEC section 4, fp32 mode, positions < 2^16
constexpr double kScaleRelTol = 2.4e-7;   // SPEC section 4: xPos scale within 4 ulp

class Tables : public ::testing::TestWithParam<KernelSet> {
protected:
    RotaryTables tables(const SinusoidalEmbeddings &emb, int64_t seq_len, int64_t start = 0,
                        int64_t rows = -1) const {
        return make_tables(GetParam(), emb, seq_len, start, rows);
    }
};

TEST_P(Tables, FreqsAreTheFloat32ProductOfPositionAndInvFreq) {
    for (int64_t dim : {2, 6, 64, 80, 128, 512}) {
        for (double theta : {10.0, 10000.0, 500000.0, 1e6}) {
            for (int64_t n : {1, 2, 17, 1000}) {
                const RotaryTables t = tables(SinusoidalEmbeddings(dim, std::nullopt, false, theta), n);
                int mismatches = 0;
                ref::for_each_index(t.freqs.shape(), [&](const std::vector<int64_t> &idx) {
                    const float want = ref::angle(idx[0], idx[1], dim, theta);
                    const float got = ref::element(t.freqs, idx);
                    if (std::memcmp(&want, &got, sizeof(float)) != 0 && mismatches++ < 3) {
                        ADD_FAILURE() << "dim " << dim << " theta " << theta << " n " << n << " at (" << idx[0] << ", "
                                      << idx[1] << "): " << got << " != " << want;
                    }
                });
                EXPECT_EQ(t.scale.shape(), std::vector<int64_t>{1});
                EXPECT_EQ(t.scale.at({0}), 1.0f);
            }
        }
    }
}

TEST_P(Tables, XposScaleIsWithinFourUlpOfFloat64Pow) {
    struct Case {
        int64_t dim, n;
        double scale_base;
    };
    // Up to 2^16 positions; scale_base 16 at n = 3000 reaches 1e-38 .. 1e38 (and beyond).
    for (const Case c : {Case{2, 1, 512}, Case{64, 3, 1}, Case{64, 1000, 512}, Case{128, 3000, 16}, Case{8, 65536, 8192},
                         Case{80, 777, 64}}) {
        const RotaryTables t = tables(SinusoidalEmbeddings(c.dim, c.scale_base, true), c.n);
        int failures = 0;
        double worst = 0;
        ref::for_each_index(t.scale.shape(), [&](const std::vector<int64_t> &idx) {
            const double want = ref::xpos_scale(idx[0], idx[1], c.dim, c.n, c.scale_base);
            const double got = ref::element(t.scale, idx);
            bool ok;
            if (want > double(FLT_MAX) * (1 + 0x1p-24)) {
                ok = std::isinf(got) && got > 0;  // beyond float32: PyTorch's powf gives inf too
            } else {
                const double bound = std::max(kScaleRelTol * want, 4 * 0x1p-149);
                ok = std::fabs(got - want) <= bound;
                worst = std::max(worst, std::fabs(got - want) / bound);
            }
            if (!ok && failures++ < 3) {
                ADD_FAILURE() << "dim " << c.dim << " n " << c.n << " scale_base " << c.scale_base << " at (" << idx[0]
                              << ", " << idx[1] << "): " << got << " vs " << want;
            }
        });
        RecordProperty("worst_fraction_of_bound_n" + std::to_string(c.n), std::to_string(worst));
    }
}

// Interleaved tables lay the angles out as f0 f0 f1 f1 ... (rotary-embedding-torch), the
// xPos scale likewise; each value bit for bit (angles) or within 4 ulp (scale) as above.
// Streamed tables (Stores::Streaming: tiles of rows computed into scratch, streamed out)
// hold the bits of ordinary ones: windows that start inside the table, many small tiles with
// a ragged last one, padded rows, both pairings, xPos or not, both angle modes.
TEST_P(Tables, StreamedTablesMatchOrdinaryOnes) {
    if (GetParam().device != Device::CPU) GTEST_SKIP() << "stores apply to CPU kernels only";
    for (const Pairing pairing : {Pairing::HalfSplit, Pairing::Interleaved}) {
        if (!GetParam().get().find(pairing)) continue;
        for (const bool xpos : {false, true}) {
            for (const AngleMode angles : {AngleMode::Fp32, AngleMode::Accurate}) {
                const SinusoidalEmbeddings emb(80, 64.0, xpos, 10000.0, pairing, {}, angles);
                const int64_t n = 1000, start = 37, rows = 900;
                Tensor result[2][2];
                for (int variant = 0; variant < 2; variant++) {
                    // 4 KiB tiles: 12 rows of d = 80 floats per tile (6 with xPos's second table).
                    const detail::ScopedStreamTiles tiles(0, 4096);
                    Tensor &f = result[variant][0], &sc = result[variant][1];
                    f = make_tensor({rows, 80}, Layout::PaddedRows);
                    sc = xpos ? make_tensor({rows, 80}, Layout::PaddedRows) : Tensor({1});
                    detail::sinusoidal_window(GetParam().get(), emb, n, start, f, sc,
                                              variant ? Stores::Streaming : Stores::Ordinary);
                }
                const std::string what = to_string(pairing) + (xpos ? " xpos " : " ") + to_string(angles);
                expect_same_bits(result[0][0], result[1][0], what + " freqs");
                expect_same_bits(result[0][1], result[1][1], what + " scale");
                // And the window's rows are the whole table's.
                const RotaryTables whole = tables(emb, n);
                expect_same_bits(whole.freqs.narrow(0, start, rows).contiguous(), result[1][0].contiguous(), what);
            }
        }
    }
}

TEST_P(Tables, InterleavedTablesRepeatEachFrequencyTwice) {
    for (int64_t dim : {2, 10, 64}) {
        for (bool xpos : {false, true}) {
            const int64_t n = 300;
            const RotaryTables t = tables(SinusoidalEmbeddings(dim, 64.0, xpos, 10000.0, Pairing::Interleaved), n);
            ref::for_each_index(t.freqs.shape(), [&](const std::vector<int64_t> &idx) {
                const float want = ref::angle(idx[0], idx[1], dim, 10000.0, Pairing::Interleaved);
                const float got = ref::element(t.freqs, idx);
                ASSERT_EQ(std::memcmp(&want, &got, sizeof got), 0) << "dim " << dim << " at " << ::testing::PrintToString(idx);
                if (xpos) {
                    const double w = ref::xpos_scale(idx[0], idx[1], dim, n, 64.0, Pairing::Interleaved);
                    ASSERT_LE(std::fabs(ref::element(t.scale, idx) - w), std::max(kScaleRelTol * w, 4 * 0x1p-149));
                }
            });
        }
    }
}

TEST_P(Tables, AWindowEqualsTheRowsOfTheWholeTable) {
    for (bool xpos : {false, true}) {
        const SinusoidalEmbeddings emb(64, 256.0, xpos);
        const RotaryTables whole = tables(emb, 1000);
        const RotaryTables window = tables(emb, 1000, 990, 10);
        for (int64_t r = 0; r < 10; r++) {
            for (int64_t j = 0; j < 64; j++) {
                EXPECT_EQ(window.freqs.at({r, j}), whole.freqs.at({990 + r, j}));
                if (xpos) EXPECT_EQ(window.scale.at({r, j}), whole.scale.at({990 + r, j}));
            }
        }
    }
}

TEST_P(Tables, EmptyTableIsValid) {
    const RotaryTables t = tables(SinusoidalEmbeddings(8, 64.0, true), 0);
    EXPECT_EQ(t.freqs.shape(), (std::vector<int64_t>{0, 8}));
}

INSTANTIATE_TEST_SUITE_P(Schedules, Tables, ::testing::ValuesIn(kKernelSets), kernel_set_name);

class RotateHalf : public ::testing::TestWithParam<KernelSet> {};

// Exact in every storage type the set has, both pairings (half-split: cat(-x2, x1);
// interleaved: HF GPT-J's rotate_every_two, (x0, x1) -> (-x1, x0) per pair) and every
// pair of input and output layouts.
TEST_P(RotateHalf, ExactForEveryTypePairingAndLayout) {
    std::mt19937 rng(7);
    const std::vector<std::vector<int64_t>> shapes{{2}, {6}, {3, 34}, {2, 3, 4}, {2, 3, 5, 128}, {1, 2, 17, 80}, {2, 3, 7, 18}};
    for (DType dtype : element_types(GetParam())) {
        for (Pairing pairing : {Pairing::HalfSplit, Pairing::Interleaved}) {
            if (!GetParam().get().find(dtype, pairing)) continue;
            for (const auto &shape : shapes) {
                for (Layout in_layout : kLayouts) {
                    for (Layout out_layout : kLayouts) {
                        const Tensor x = random_tensor(shape, in_layout, rng, dtype);
                        const Tensor out = make_tensor(shape, out_layout, dtype);
                        run_rotate_half(GetParam(), x, out, pairing);
                        const int64_t half = shape.back() / 2;
                        ref::for_each_index(shape, [&](const std::vector<int64_t> &idx) {
                            const int64_t j = idx.back();
                            const bool first = pairing == Pairing::HalfSplit ? j < half : j % 2 == 0;
                            std::vector<int64_t> partner = idx;
                            partner.back() = pairing == Pairing::Interleaved ? (j ^ 1) : first ? j + half : j - half;
                            const double want = first ? -ref::value(x, partner) : ref::value(x, partner);
                            ASSERT_EQ(ref::value(out, idx), want)
                                << to_string(dtype) << " " << to_string(pairing) << " shape " << x.shape_string();
                        });
                    }
                }
            }
        }
    }
}

TEST_P(RotateHalf, EmptyTensorIsValid) {
    const Tensor x({2, 0, 4}), out({2, 0, 4});
    EXPECT_NO_THROW(run_rotate_half(GetParam(), x, out));
}

INSTANTIATE_TEST_SUITE_P(Schedules, RotateHalf, ::testing::ValuesIn(kKernelSets), kernel_set_name);

class ApplyRotary : public ::testing::TestWithParam<KernelSet> {
protected:
    RotaryTables tables(const SinusoidalEmbeddings &emb, int64_t n) const { return make_tables(GetParam(), emb, n); }

    // Runs q' and k' into tensors of the given layout and checks both against the reference.
    void run_and_check(const Tensor &q, const Tensor &k, const Tensor &freqs, const Scale &scale, Layout out_layout,
                       const std::string &what) {
        const Tensor q_out = make_tensor(q.shape(), out_layout), k_out = make_tensor(k.shape(), out_layout);
        run_apply(GetParam(), q, k, freqs, scale, q_out, k_out);
        check_rotation(q, q_out, freqs, scale, false, kTol, what + " q'");
        check_rotation(k, k_out, freqs, scale, true, kTol, what + " k'");
    }
};

std::vector<int64_t> with_leading(std::vector<int64_t> leading, int64_t n, int64_t d) {
    leading.push_back(n);
    leading.push_back(d);
    return leading;
}

TEST_P(ApplyRotary, RandomShapesLayoutsAndTablesMatchTheReference) {
    std::mt19937 rng(2026);
    auto pick = [&](auto const &options) { return options[rng() % std::size(options)]; };
    const std::vector<int64_t> dims{2, 4, 6, 8, 16, 34, 64, 80, 128, 256};
    const std::vector<int64_t> lengths{1, 2, 3, 17, 64, 129, 300};
    const std::vector<double> thetas{10.0, 10000.0, 500000.0};
    const std::vector<double> scale_bases{16.0, 512.0, 8192.0};
    const std::vector<std::vector<int64_t>> leadings{{}, {3}, {2}, {2, 3}, {1, 4}};
    for (int iteration = 0; iteration < 60; iteration++) {
        const int64_t d = pick(dims), n = pick(lengths);
        const int64_t lq = 1 + rng() % n;
        const bool xpos = rng() % 2;
        const SinusoidalEmbeddings emb(d, pick(scale_bases), xpos, pick(thetas));
        const RotaryTables t = tables(emb, n);
        const Tensor q = random_tensor(with_leading(pick(leadings), lq, d), pick(kLayouts), rng);
        const Tensor k = random_tensor(with_leading(pick(leadings), n, d), pick(kLayouts), rng);
        const std::string what = "iteration " + std::to_string(iteration) + ": q " + q.shape_string() + " k " +
                                 k.shape_string() + (xpos ? " xpos" : "") + " theta " + std::to_string(emb.theta());
        run_and_check(q, k, t.freqs, xpos ? Scale(t.scale) : Scale(), pick(kLayouts), what);
    }
}

// In place (each output exactly its own input) gives, bit for bit, what out of place
// gives, for every storage type and layout, on every device.
TEST_P(ApplyRotary, InPlaceEqualsOutOfPlaceBitForBit) {
    std::mt19937 rng(21);
    for (DType dtype : element_types(GetParam())) {
        for (Layout layout : kLayouts) {
            for (bool xpos : {false, true}) {
                const int64_t n = 70, d = 40;
                const RotaryTables t = tables(SinusoidalEmbeddings(d, 32.0, xpos), n);
                const Scale scale = xpos ? Scale(t.scale) : Scale(2.0);
                const Tensor q = random_tensor({2, 3, 9, d}, layout, rng, dtype);
                const Tensor k = random_tensor({2, 1, n, d}, layout, rng, dtype);
                const Tensor q_out = make_tensor(q.shape(), layout, dtype), k_out = make_tensor(k.shape(), layout, dtype);
                run_apply(GetParam(), q, k, t.freqs, scale, q_out, k_out);
                run_apply(GetParam(), q, k, t.freqs, scale, q, k);  // in place
                for (const auto &pair : {std::pair{q, q_out}, std::pair{k, k_out}}) {
                    ref::for_each_index(pair.first.shape(), [&](const std::vector<int64_t> &idx) {
                        const double in_place = ref::value(pair.first, idx), out_of_place = ref::value(pair.second, idx);
                        ASSERT_EQ(std::memcmp(&in_place, &out_of_place, sizeof(double)), 0)
                            << to_string(dtype) << " at " << ::testing::PrintToString(idx);
                    });
                }
                const Tensor x = random_tensor({3, 5, d}, layout, rng, dtype), r = make_tensor(x.shape(), layout, dtype);
                run_rotate_half(GetParam(), x, r);
                run_rotate_half(GetParam(), x, x);
                ref::for_each_index(x.shape(), [&](const std::vector<int64_t> &idx) {
                    ASSERT_EQ(ref::value(x, idx), ref::value(r, idx)) << "rotate_half " << to_string(dtype);
                });
            }
        }
    }
}

// One body over every combination the set has: storage type x pairing x partial rotary
// x in place x layout, including q and k as views into one fused QKV buffer
// (b, n, 3, h, d) and a GQA one (b, n, h_q + 2 h_kv, d), viewed as (b, h, n, d) without a
// copy. Each against the float64 reference; pass-through features bit for bit.
TEST_P(ApplyRotary, EveryCombinationMatchesTheReference) {
    std::mt19937 rng(33);
    const int64_t b = 2, n = 37, d = 20;
    struct Views {
        std::string name;
        Tensor q, k;
    };
    for (DType dtype : element_types(GetParam())) {
        std::vector<Views> views;
        for (Layout layout : kLayouts) {
            views.push_back({"layout " + std::to_string(int(layout)), random_tensor({b, 4, n, d}, layout, rng, dtype),
                             random_tensor({b, 2, n, d}, layout, rng, dtype)});
        }
        // (b, n, 3, h, d): q = [:, :, 0] and k = [:, :, 1], viewed as (b, h, n, d).
        const Tensor qkv = random_tensor({b, n, 3, 4, d}, Layout::Contiguous, rng, dtype);
        auto part = [&](int64_t which) {
            const std::vector<int64_t> st = qkv.strides();
            return Tensor::wrap(static_cast<char *>(qkv.data()) + which * st[2] * qkv.element_size(),
                                {b, 4, n, d}, {st[0], st[3], st[1], 1}, dtype);
        };
        views.push_back({"fused qkv (b, n, 3, h, d)", part(0), part(1)});
        const Tensor gqa = random_tensor({b, n, 8 + 2 * 2, d}, Layout::Contiguous, rng, dtype);  // h_q 8, h_kv 2
        auto heads = [&](int64_t first, int64_t count) {
            const std::vector<int64_t> st = gqa.strides();
            return Tensor::wrap(static_cast<char *>(gqa.data()) + first * st[2] * gqa.element_size(),
                                {b, count, n, d}, {st[0], st[2], st[1], 1}, dtype);
        };
        views.push_back({"fused gqa (b, n, h_q + 2 h_kv, d)", heads(0, 8), heads(8, 2)});

        for (Pairing pairing : {Pairing::HalfSplit, Pairing::Interleaved}) {
            if (!GetParam().get().find(dtype, pairing)) continue;
            for (int64_t rotary_dim : {d, int64_t(12), int64_t(2)}) {
                const RotaryOptions base_options{pairing, rotary_dim == d ? 0 : rotary_dim};
                const RotaryTables t = tables(SinusoidalEmbeddings(rotary_dim, 48.0, true, 10000.0, pairing), n);
                for (const Views &v : views) {
                    for (bool in_place : {false, true}) {
                      Tensor ordinary[2];  // the results with ordinary stores, for the streamed ones
                      for (Stores stores : stores_choices(GetParam())) {
                        RotaryOptions options = base_options;
                        options.stores = stores;
                        const std::string what = to_string(dtype) + " " + to_string(pairing) + " rotary_dim " +
                                                 std::to_string(rotary_dim) + " " + v.name + (in_place ? " in place" : "") +
                                                 " stores " + to_string(stores);
                        const Tensor q_in = v.q.contiguous(), k_in = v.k.contiguous();  // the values before
                        Tensor q_out = in_place ? v.q : make_tensor(v.q.shape(), Layout::PaddedRows, dtype);
                        Tensor k_out = in_place ? v.k : make_tensor(v.k.shape(), Layout::PaddedRows, dtype);
                        if (GetParam().device == Device::CPU) {
                            detail::apply_rotary_pos_emb(GetParam().get(), v.q, v.k, t.freqs, t.scale, q_out, k_out, options);
                        } else {
                            const Tensor qo = device_output(GetParam(), q_out), ko = device_output(GetParam(), k_out);
                            detail::apply_rotary_pos_emb(GetParam().get(), to_device(GetParam(), v.q), to_device(GetParam(), v.k),
                                                         to_device(GetParam(), t.freqs), Scale(to_device(GetParam(), t.scale)),
                                                         qo, ko, options);
                            to_host(GetParam(), qo, q_out);
                            to_host(GetParam(), ko, k_out);
                        }
                        check_rotation(q_in, q_out, t.freqs, t.scale, false, kTol, what + " q'", options);
                        check_rotation(k_in, k_out, t.freqs, t.scale, true, kTol, what + " k'", options);
                        if (stores == Stores::Streaming) {
                            expect_same_bits(ordinary[0], q_out, what + " q' (as with ordinary stores)");
                            expect_same_bits(ordinary[1], k_out, what + " k' (as with ordinary stores)");
                        } else {
                            ordinary[0] = q_out.contiguous();
                            ordinary[1] = k_out.contiguous();
                        }
                        if (in_place) {  // restore for the next case
                            v.q.copy_from(q_in);
                            v.k.copy_from(k_in);
                        }
                      }
                    }
                }
            }
        }
    }
}

// Stores::Streaming runs the kernels on tiles of table rows (runtime/streaming.h) sized
// from the L2 cache: shapes of several tiles with a ragged last one, queries that cover only
// the last tile or part of one (decode), strided outputs, partial rotary and every kind of
// scale give the bits of ordinary stores, out of place and in place (float16: see below),
// and the first case the float64 reference's values.
TEST_P(ApplyRotary, StreamedStoresMatchOrdinaryOverManyTiles) {
    if (GetParam().device != Device::CPU) GTEST_SKIP() << "stores apply to CPU kernels only";
    std::mt19937 rng(17);
    const int64_t d = 64, q_heads = 2, k_heads = 1;
    struct Case {
        int64_t q_rows_short;  // q has n - this many rows
        int64_t rotary_dim;
        int scale;  // 0: xPos table, 1: (N, 1) table, 2: scalar
        bool in_place;
    };
    const Case cases[] = {{0, d, 2, true}, {5, d, 0, false}, {-1, 32, 1, false}, {-1, d, 0, true}};
    for (DType dtype : element_types(GetParam())) {
        // 3 tiles and a ragged fourth (every q and k head of a table row per tile row).
        const int64_t row_bytes = (q_heads + k_heads) * d * (dtype == DType::Float32 ? 4 : 2);
        const int64_t n = 3 * std::max<int64_t>(1, detail::stream_tile_bytes() / row_bytes) + 7;
        for (Pairing pairing : {Pairing::HalfSplit, Pairing::Interleaved}) {
            if (!GetParam().get().find(dtype, pairing)) continue;
            for (const Case &c : cases) {
                const int64_t q_rows = c.q_rows_short < 0 ? 1 : n - c.q_rows_short;  // -1: one row (decode)
                const RotaryOptions options{pairing, c.rotary_dim == d ? 0 : c.rotary_dim};
                const RotaryTables t = tables(SinusoidalEmbeddings(c.rotary_dim, 64.0, true, 10000.0, pairing), n);
                const Tensor column({n, 1});
                fill_uniform(column, rng, 0.5f, 2.0f);
                const Scale scale = c.scale == 0 ? Scale(t.scale) : c.scale == 1 ? Scale(column) : Scale(0.5);
                const std::string what = to_string(dtype) + " " + to_string(pairing) + " n " + std::to_string(n) +
                                         " q rows " + std::to_string(q_rows) + " rotary_dim " +
                                         std::to_string(c.rotary_dim) + (c.in_place ? " in place" : "");
                const Tensor q = random_tensor({1, q_heads, q_rows, d}, Layout::HeadsTransposed, rng, dtype);
                const Tensor k = random_tensor({1, k_heads, n, d}, Layout::PaddedRows, rng, dtype);
                // Ordinary, streaming with the default tiles, and one head per 4 KiB tile
                // (many tiles: chains of them per task, each prefetching the next one's input).
                Tensor result[3][2];
                for (int variant = 0; variant < 3; variant++) {
                    Tensor *out = result[variant];
                    RotaryOptions with = options;
                    with.stores = variant ? Stores::Streaming : Stores::Ordinary;
                    const detail::ScopedStreamTiles tiles(variant == 2 ? 1 : 0, variant == 2 ? 4096 : 0);
                    out[0] = c.in_place ? q.contiguous() : make_tensor(q.shape(), Layout::PaddedRows, dtype);
                    out[1] = c.in_place ? k.contiguous() : make_tensor(k.shape(), Layout::HeadsTransposed, dtype);
                    detail::apply_rotary_pos_emb(GetParam().get(), c.in_place ? out[0] : q, c.in_place ? out[1] : k,
                                                 t.freqs, scale, out[0], out[1], with);
                }
                if (dtype != DType::Float16) {
                    for (int variant : {1, 2}) {
                        const std::string tiles = variant == 2 ? " (one head per 4 KiB tile)" : "";
                        expect_same_bits(result[0][0], result[variant][0], what + " q'" + tiles);
                        expect_same_bits(result[0][1], result[variant][1], what + " k'" + tiles);
                    }
                }
                // float16: on AArch64's neon branch (no fp16 extension, emulated conversions)
                // other tile shapes gave the other of the two roundings SPEC section 4 allows in
                // some elements (found by this test under qemu; cause not isolated yet): each
                // float16 case is checked against the reference instead.
                if (&c == cases || dtype == DType::Float16) {  // (under qemu the reference is slow)
                    for (int variant : {1, 2}) {
                        check_rotation(q, result[variant][0], t.freqs, scale, false, kTol, what + " q'", options);
                        check_rotation(k, result[variant][1], t.freqs, scale, true, kTol, what + " k'", options);
                    }
                }
            }
        }
    }
}

// One body over every position mode x table form x direction the set has, for every storage
// type and pairing, in place and out of place, with each store choice (SPEC section 2):
// Zeta's alignment, a start offset, per-sequence offsets (int32 and int64), position ids
// (per batch, unsorted and repeated, q and k at different positions) and packed varlen
// batches (sequence lengths 0, 1, 3 and 7, with offsets); tables as angles (xPos), cos/sin
// (a number as scale) and none (inv_freq, xPos in the kernel, times a number); forward and
// backward (conjugate). Positions reach
// the table's last row. Each against the float64 reference, computed here from the same
// inputs: the position of every row, its table entries, the scale.
TEST_P(ApplyRotary, EveryPositionModeTableFormAndDirection) {
    std::mt19937 rng(909);
    const int64_t n_table = 40, b = 2, q_heads = 3, k_heads = 2, q_rows = 5, k_rows = 7, d = 20;
    enum class Mode { Aligned, Start, Offsets32, Offsets64, Ids, Varlen };
    const Mode modes[] = {Mode::Aligned, Mode::Start, Mode::Offsets32, Mode::Offsets64, Mode::Ids, Mode::Varlen};
    const char *mode_names[] = {"aligned", "start", "offsets int32", "offsets int64", "ids", "varlen"};
    // Varlen: 4 sequences of lengths 0, 1, 3, 7 packed (11 tokens), the third at the table's end.
    const std::vector<int32_t> cu{0, 0, 1, 4, 11}, varlen_offsets{9, 3, n_table - 3, 5};
    const std::vector<int64_t> seq_offsets{n_table - k_rows, 0};
    const std::vector<int32_t> q_ids{n_table - 1, 3, 3, 0, 17, 17, 2, n_table - 1, 9, 9};  // (b, q_rows)
    const std::vector<int32_t> k_ids{6, 0, n_table - 1, 6, 1, 30, 2};                     // (k_rows,)
    auto int_tensor = [](const std::vector<int64_t> &shape, const auto &values, DType dtype) {
        Tensor t(shape, dtype);
        for (size_t i = 0; i < values.size(); i++) {
            if (dtype == DType::Int64) static_cast<int64_t *>(t.data())[i] = values[i];
            else static_cast<int32_t *>(t.data())[i] = static_cast<int32_t>(values[i]);
        }
        return t;
    };
    for (DType dtype : element_types(GetParam())) {
        for (Pairing pairing : {Pairing::HalfSplit, Pairing::Interleaved}) {
            if (!GetParam().get().find(dtype, pairing)) continue;
            for (int64_t rotary_dim : {d, int64_t(12)}) {
                const SinusoidalEmbeddings emb(rotary_dim, 48.0, true, 10000.0, pairing);
                const RotaryTables t = tables(emb, n_table);
                const Tensor inv_freq = emb.inv_freq();
                // cos and sin (N, rotary_dim / 2) in float32, from the angle table.
                const Tensor cos({n_table, rotary_dim / 2}), sin({n_table, rotary_dim / 2});
                for (int64_t p = 0; p < n_table; p++) {
                    for (int64_t i = 0; i < rotary_dim / 2; i++) {
                        const double a = t.freqs.at({p, pairing == Pairing::HalfSplit ? i : 2 * i});
                        cos.at({p, i}) = static_cast<float>(std::cos(a));
                        sin.at({p, i}) = static_cast<float>(std::sin(a));
                    }
                }
                for (RotaryTable::Form form : {RotaryTable::Form::Angles, RotaryTable::Form::CosSin, RotaryTable::Form::InvFreq}) {
                    const double number = form == RotaryTable::Form::CosSin ? 1.5 : 0.75;
                    const RotaryTable table = form == RotaryTable::Form::Angles   ? RotaryTable::angles(t.freqs, t.scale)
                                              : form == RotaryTable::Form::CosSin ? RotaryTable::cos_sin(cos, sin, number)
                                                                                  : RotaryTable::inv_freq(emb, n_table, number);
                    for (Mode mode : modes) {
                        if (mode == Mode::Aligned && form == RotaryTable::Form::InvFreq) continue;  // no table to align to
                        const bool varlen = mode == Mode::Varlen;
                        RotaryOptions options{pairing, rotary_dim == d ? 0 : rotary_dim};
                        int64_t kn = k_rows;
                        switch (mode) {
                        case Mode::Aligned: kn = n_table; break;
                        case Mode::Start: options.positions = Positions::start(n_table - k_rows); break;
                        case Mode::Offsets32:
                        case Mode::Offsets64:
                            options.positions = Positions::offsets(
                                int_tensor({b}, seq_offsets, mode == Mode::Offsets64 ? DType::Int64 : DType::Int32));
                            break;
                        case Mode::Ids:
                            options.positions = Positions::ids(int_tensor({b, q_rows}, q_ids, DType::Int32));
                            options.k_positions = Positions::ids(int_tensor({k_rows}, k_ids, DType::Int64));
                            break;
                        case Mode::Varlen:
                            options.positions = Positions::varlen(int_tensor({5}, cu, DType::Int32),
                                                                  int_tensor({4}, varlen_offsets, DType::Int32));
                            break;
                        }
                        // The position of an element of q or k (independently of helix).
                        auto position = [&](bool is_k, const std::vector<int64_t> &idx) -> int64_t {
                            const int64_t row = varlen ? idx[0] : idx[2], batch = varlen ? 0 : idx[0];
                            switch (mode) {
                            case Mode::Aligned: return is_k ? row : n_table - q_rows + row;
                            case Mode::Start: return n_table - k_rows + row;
                            case Mode::Offsets32:
                            case Mode::Offsets64: return seq_offsets[batch] + row;
                            case Mode::Ids: return is_k ? k_ids[row] : q_ids[batch * q_rows + row];
                            case Mode::Varlen: {
                                int64_t s = 0;
                                while (cu[s + 1] <= row) s++;
                                return varlen_offsets[s] + row - cu[s];
                            }
                            }
                            return -1;
                        };
                        const Tensor q = random_tensor(varlen ? std::vector<int64_t>{11, q_heads, d}
                                                              : std::vector<int64_t>{b, q_heads, q_rows, d},
                                                       Layout::PaddedRows, rng, dtype);
                        const Tensor k = random_tensor(varlen ? std::vector<int64_t>{11, k_heads, d}
                                                              : std::vector<int64_t>{b, k_heads, kn, d},
                                                       Layout::HeadsTransposed, rng, dtype);
                        for (bool conjugate : {false, true}) {
                            options.conjugate = conjugate;
                            auto coefficients = [&](bool is_k) {
                                return [&, is_k](const std::vector<int64_t> &idx) {
                                    const int64_t p = position(is_k, idx), j = idx.back();
                                    const int64_t i = ref::frequency_of(j, rotary_dim, pairing);
                                    double c, sn, s;
                                    if (form == RotaryTable::Form::CosSin) {
                                        c = cos.at({p, i});
                                        sn = sin.at({p, i});
                                    } else {
                                        const double a = form == RotaryTable::Form::Angles
                                                             ? double(t.freqs.at({p, j}))
                                                             : double(static_cast<float>(p) * inv_freq.at({i}));
                                        c = std::cos(a);
                                        sn = std::sin(a);
                                    }
                                    // xPos: the table's value, in the no-table form too (bit for bit).
                                    s = form == RotaryTable::Form::CosSin  ? number
                                        : form == RotaryTable::Form::Angles ? t.scale.at({p, j})
                                                                            : number * t.scale.at({p, j});
                                    return Coefficients{c, conjugate ? -sn : sn, is_k ? 1.0 / s : s};
                                };
                            };
                            for (bool in_place : {false, true}) {
                                for (Stores stores : stores_choices(GetParam())) {
                                    options.stores = stores;
                                    const std::string what = to_string(dtype) + " " + to_string(pairing) + " rotary_dim " +
                                                             std::to_string(rotary_dim) + " " + to_string(form) + " " +
                                                             mode_names[int(mode)] + (conjugate ? " conjugate" : "") +
                                                             (in_place ? " in place" : "") + " stores " + to_string(stores);
                                    const Tensor q_in = q.contiguous(), k_in = k.contiguous();
                                    const Tensor q_out = in_place ? q : make_tensor(q.shape(), Layout::HeadsTransposed, dtype);
                                    const Tensor k_out = in_place ? k : make_tensor(k.shape(), Layout::PaddedRows, dtype);
                                    run_apply_table(GetParam(), q, k, table, q_out, k_out, options);
                                    check_rotation_with(q_in, q_out, coefficients(false), kTol, what + " q'", options);
                                    check_rotation_with(k_in, k_out, coefficients(true), kTol, what + " k'", options);
                                    if (in_place) {
                                        q.copy_from(q_in);
                                        k.copy_from(k_in);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

// The no-table form computes the angle the angle table holds, and with xPos the scale its
// scale table holds: the same results as the angle form, bit for bit (tuned and device
// sets), at long positions too (2^16 rows, xPos scales from 1e-9 to 1e9).
TEST_P(ApplyRotary, InvFreqFormEqualsTheAngleTableBitForBit) {
    std::mt19937 rng(4);
    for (const auto &[n, d, xpos, scale_base] : {std::tuple{300, 64, false, 0.0}, std::tuple{300, 64, true, 32.0},
                                                  std::tuple{1 << 16, 8, true, 2048.0}, std::tuple{1 << 16, 8, false, 0.0}, std::tuple{300, 8, true, 32.0}}) {
        for (DType dtype : element_types(GetParam())) {
            const SinusoidalEmbeddings emb(d, xpos ? std::optional<double>(scale_base) : std::nullopt, xpos, 500000.0);
            const RotaryTables t = tables(emb, n);
            const int64_t rows = std::min<int64_t>(n, 300);  // the last rows of the table
            const Tensor q = random_tensor({1, 2, rows, d}, Layout::Contiguous, rng, dtype);
            const Tensor k = random_tensor({1, 1, rows, d}, Layout::Contiguous, rng, dtype);
            Tensor out[2][2];
            for (int form = 0; form < 2; form++) {
                out[form][0] = Tensor(q.shape(), dtype);
                out[form][1] = Tensor(k.shape(), dtype);
                RotaryOptions options;
                options.positions = Positions::start(n - rows);
                run_apply_table(GetParam(), q, k,
                                form ? RotaryTable::inv_freq(emb, n) : RotaryTable::angles(t.freqs, t.scale),
                                out[form][0], out[form][1], options);
            }
            const std::string what = to_string(dtype) + " n " + std::to_string(n) + (xpos ? " xpos" : "");
            check_rotation(q, out[1][0], t.freqs, xpos ? Scale(t.scale) : Scale(), false, kTol, what + " q'");
            check_rotation(k, out[1][1], t.freqs.narrow(0, n - rows, rows),
                           xpos ? Scale(t.scale.narrow(0, n - rows, rows)) : Scale(), true, kTol, what + " k'");
            // Bit for bit where the coefficients are materialized (every set but the baseline,
            // which inlines them into each output, where LLVM fuses multiplies per expression).
            if (std::string(GetParam().name) == "baseline") continue;
            expect_same_bits(out[0][0], out[1][0], what + " q'");
            expect_same_bits(out[0][1], out[1][1], what + " k'");
        }
    }
}

// AngleMode::Accurate against float64 at long positions (2^16 to past 2^20), with Llama 3.1
// scaling and its attention factor: the no-table form (angle formed in the kernel) and the
// table form (the table kernel's reduced angles), on every target. The float64 truth is
// cos and sin of position * inv_freq in double, the frequencies in double too (float32
// angles miss it by up to 0.06 rad at 2^20, and so would the exact product of float32
// frequencies: this test fails if the mode or the frequencies' low parts are ignored).
TEST_P(ApplyRotary, AccurateAnglesPastTwoToTheTwenty) {
    std::mt19937 rng(20);
    const int64_t d = 64, seq_len = int64_t(1) << 21;
    const std::vector<int64_t> picks{(1 << 16) - 1, 1 << 16, (1 << 18) + 3, (1 << 20) - 1, 1 << 20, (1 << 20) + 12345};
    const int64_t n = static_cast<int64_t>(picks.size());
    Tensor ids({n}, DType::Int32), rows({n}, DType::Int32);
    for (int64_t i = 0; i < n; i++) {
        static_cast<int32_t *>(ids.data())[i] = static_cast<int32_t>(picks[i]);
        static_cast<int32_t *>(rows.data())[i] = static_cast<int32_t>(i);
    }
    for (double theta : {10000.0, 500000.0}) {
        const SinusoidalEmbeddings emb(d, std::nullopt, false, theta, Pairing::HalfSplit, RopeScaling::yarn(4, 8192),
                                       AngleMode::Accurate);  // yarn: an attention factor of 1.1386
        const std::vector<double> inv = emb.inv_freq_f64(seq_len);
        const double attention = static_cast<float>(emb.attention_factor());
        // The table: one window row per position.
        Tensor freqs({n, d});
        for (int64_t i = 0; i < n; i++) {
            freqs.narrow(0, i, 1).copy_from(make_tables(GetParam(), emb, seq_len, picks[i], 1).freqs);
        }
        // No xPos: q and k alike, scaled by the attention factor.
        const CoefficientsAt truth = [&](const std::vector<int64_t> &idx) {
            const int64_t row = idx[idx.size() - 2], j = idx.back() % (d / 2);
            const double angle = double(picks[row]) * inv[j];
            return Coefficients{std::cos(angle), std::sin(angle), attention};
        };
        for (DType dtype : element_types(GetParam())) {
            const Tensor q = random_tensor({1, 2, n, d}, Layout::Contiguous, rng, dtype);
            const Tensor k = random_tensor({1, 1, n, d}, Layout::Contiguous, rng, dtype);
            const std::string what = to_string(dtype) + " theta " + std::to_string(theta);
            for (bool no_table : {true, false}) {
                const Tensor q_out(q.shape(), dtype), k_out(k.shape(), dtype);
                RotaryOptions options;
                options.positions = Positions::ids(no_table ? ids : rows);
                const RotaryTable table = no_table ? RotaryTable::inv_freq(emb, seq_len)
                                                   : RotaryTable::angles(freqs).with_attention_factor(attention);
                run_apply_table(GetParam(), q, k, table, q_out, k_out, options);
                const std::string form = no_table ? " no table" : " angle table";
                check_rotation_with(q, q_out, truth, kTol, what + form + " q'");
                check_rotation_with(k, k_out, truth, kTol, what + form + " k'");
            }
        }
    }
}

// A forward then a backward (conjugate) call is the identity up to rounding, xPos included
// (s R(a) then s R(-a) / s^2 ... : forward q' = s R q, backward with 1 / s as the scale).
TEST_P(ApplyRotary, BackwardUndoesForwardWithoutScale) {
    std::mt19937 rng(8);
    const int64_t n = 33, d = 32;
    const RotaryTables t = tables(SinusoidalEmbeddings(d), n);
    const Tensor q = random_tensor({2, 3, n, d}, Layout::Contiguous, rng);
    const Tensor k = random_tensor({2, 1, n, d}, Layout::Contiguous, rng);
    const Tensor q1(q.shape()), k1(k.shape()), q2(q.shape()), k2(k.shape());
    run_apply(GetParam(), q, k, t.freqs, Scale(), q1, k1);
    RotaryOptions backward;
    backward.conjugate = true;
    run_apply(GetParam(), q1, k1, t.freqs, Scale(), q2, k2, backward);
    for (const auto &pair : {std::pair{q, q2}, std::pair{k, k2}}) {
        const Tensor &x = pair.first, &y = pair.second;
        ref::for_each_index(x.shape(), [&](const std::vector<int64_t> &idx) {
            ASSERT_NEAR(ref::element(y, idx), ref::element(x, idx), 4 * kTol) << ::testing::PrintToString(idx);
        });
    }
}

TEST_P(ApplyRotary, EveryKindOfScale) {
    std::mt19937 rng(11);
    const int64_t n = 40, d = 24;
    const RotaryTables t = tables(SinusoidalEmbeddings(d, 32.0, true), n);
    const Tensor q = random_tensor({2, 9, d}, Layout::Contiguous, rng);
    const Tensor k = random_tensor({2, n, d}, Layout::Contiguous, rng);
    const Tensor row({1, d}), column({n, 1}), single({1, 1});
    fill_uniform(row, rng, 0.5f, 2.0f);
    fill_uniform(column, rng, 0.5f, 2.0f);
    single.at({0, 0}) = 3.0f;
    run_and_check(q, k, t.freqs, t.scale, Layout::Contiguous, "table");
    run_and_check(q, k, t.freqs, row, Layout::Contiguous, "(1, d) table");
    run_and_check(q, k, t.freqs, column, Layout::Contiguous, "(N, 1) table");
    run_and_check(q, k, t.freqs, single, Layout::Contiguous, "one-element tensor");
    run_and_check(q, k, t.freqs, 0.25, Layout::Contiguous, "scalar");
    run_and_check(q, k, t.freqs, Scale(), Layout::Contiguous, "no scale");
    // A strided (every other row) view of a table: scale is read through its strides.
    const Tensor tall({2 * n, d});
    fill_uniform(tall, rng, 0.5f, 2.0f);
    const Tensor every_other = Tensor::wrap(tall.data(), {n, d}, {2 * d, 1});
    run_and_check(q, k, t.freqs, every_other, Layout::Contiguous, "strided table");
}

// Angles up to 65535 rad: the range reduction of the cos/sin must hold there (SPEC 4).
TEST_P(ApplyRotary, LongPositionsUpTo2To16) {
    std::mt19937 rng(3);
    const int64_t n = 1 << 16, d = 8;
    const RotaryTables t = tables(SinusoidalEmbeddings(d, 8192.0, true), n);
    const Tensor q = random_tensor({2, 5, d}, Layout::Contiguous, rng);
    const Tensor k = random_tensor({1, n, d}, Layout::Contiguous, rng);
    run_and_check(q, k, t.freqs, t.scale, Layout::Contiguous, "n = 65536");
}

// cos/sin of any float32 angle up to the documented limit, 2^32 rad (kMaxAccurateAngle in
// generators/rope_algorithm.h), within the fp32 tolerance: random angles in every binade
// from 2^-4 to 2^32, the largest float32 below 2^32, and the float32 angles nearest to
// multiples of pi/2 (where the reduction cancels most). Beyond the limit the results are
// not accurate but must stay rotations: finite and no larger than the input pair.
TEST_P(ApplyRotary, CosSinAccurateUpTo2To32Radians) {
    std::mt19937 rng(32);
    std::vector<float> angles;
    for (int e = -4; e < 32; e++) {
        std::uniform_real_distribution<double> mantissa(1.0, 2.0);
        for (int i = 0; i < 6; i++) angles.push_back(static_cast<float>(std::ldexp(mantissa(rng), e)));
    }
    angles.push_back(std::nextafter(4294967296.0f, 0.0f));
    for (double k : {1e3, 2.5e7, 3e7 + 1, 6.3e8, 1.6e9, 2.7e9}) {
        angles.push_back(static_cast<float>(k * M_PI_2));
    }
    angles.push_back(1e8f);
    angles.push_back(1e9f);
    const int64_t n = static_cast<int64_t>(angles.size()), d = 4;
    const Tensor freqs({n, d});
    for (int64_t r = 0; r < n; r++) {
        for (int64_t j = 0; j < d; j++) freqs.at({r, j}) = (j % 2 ? -1.0f : 1.0f) * angles[r];
    }
    const Tensor q = random_tensor({3, n, d}, Layout::Contiguous, rng), k = random_tensor({2, n, d}, Layout::Contiguous, rng);
    run_and_check(q, k, freqs, Scale(), Layout::Contiguous, "angles up to 2^32");

    const float beyond[] = {4294967296.0f, 1e10f, 1e20f, 3e38f, -3e38f};
    const Tensor far({5, d});
    for (int64_t r = 0; r < 5; r++) {
        for (int64_t j = 0; j < d; j++) far.at({r, j}) = beyond[r];
    }
    const Tensor x = random_tensor({2, 5, d}, Layout::Contiguous, rng), y = random_tensor({2, 5, d}, Layout::Contiguous, rng);
    const Tensor x_out({2, 5, d}), y_out({2, 5, d});
    run_apply(GetParam(), x, y, far, Scale(), x_out, y_out);
    ref::for_each_index(x.shape(), [&](const std::vector<int64_t> &idx) {
        std::vector<int64_t> partner = idx;
        partner.back() ^= 2;  // d = 4: features j and j + 2 pair
        const double bound = 1.0001 * std::max(std::fabs(ref::element(x, idx)), std::fabs(ref::element(x, partner)));
        const double got = ref::element(x_out, idx);
        ASSERT_TRUE(std::isfinite(got) && std::fabs(got) <= bound * std::sqrt(2.0))
            << "angle " << beyond[idx[1]] << ": " << got << " from a pair of magnitude " << bound;
    });
}

// Random angles (not table products) and scales, as Zeta's own example passes.
TEST_P(ApplyRotary, ArbitraryFreqsAndScales) {
    std::mt19937 rng(5);
    const Tensor freqs({33, 10}), scale({33, 10});
    fill_uniform(freqs, rng, -100.0f, 100.0f);
    fill_uniform(scale, rng, 0.1f, 10.0f);
    const Tensor q = random_tensor({3, 2, 33, 10}, Layout::HeadsTransposed, rng);
    const Tensor k = random_tensor({3, 33, 10}, Layout::PaddedRows, rng);
    run_and_check(q, k, freqs, scale, Layout::PaddedRows, "random freqs");
}

TEST_P(ApplyRotary, EmptyTensorsAreValid) {
    std::mt19937 rng(1);
    const RotaryTables empty = tables(SinusoidalEmbeddings(8), 0);
    EXPECT_NO_THROW(run_and_check(Tensor({2, 0, 8}), Tensor({2, 0, 8}), empty.freqs, {}, Layout::Contiguous, "n = 0"));
    const RotaryTables t = tables(SinusoidalEmbeddings(8), 5);
    const Tensor k = random_tensor({2, 5, 8}, Layout::Contiguous, rng);
    run_and_check(Tensor({2, 0, 8}), k, t.freqs, {}, Layout::Contiguous, "no queries");
    run_and_check(Tensor({0, 3, 8}), k, t.freqs, {}, Layout::Contiguous, "no query batches");
}

INSTANTIATE_TEST_SUITE_P(Schedules, ApplyRotary, ::testing::ValuesIn(kKernelSets), kernel_set_name);

// The public API (tuned kernels, allocating overloads) on the same checks.
TEST(PublicApi, AllocatingOverloadsMatchTheReference) {
    std::mt19937 rng(9);
    const SinusoidalEmbeddings emb(128, 512.0, true);
    const Tensor q = random_tensor({1, 4, 64, 128}, Layout::Contiguous, rng);
    const Tensor k = random_tensor({1, 2, 256, 128}, Layout::HeadsTransposed, rng);
    const RotaryTables t = emb.forward(k);
    EXPECT_EQ(t.freqs.shape(), (std::vector<int64_t>{256, 128}));
    const auto [q2, k2] = apply_rotary_pos_emb(q, k, t.freqs, t.scale);
    check_rotation(q, q2, t.freqs, t.scale, false, kTol, "q'");
    check_rotation(k, k2, t.freqs, t.scale, true, kTol, "k'");
    const Tensor r = rotate_half(q);
    EXPECT_EQ(r.at({0, 1, 2, 3}), -q.at({0, 1, 2, 67}));
    EXPECT_EQ(r.at({0, 1, 2, 67}), q.at({0, 1, 2, 3}));
}

TEST(PublicApi, HalideBufferRoundTripSharesMemory) {
    Halide::Runtime::Buffer<float> buffer(8, 5, 3);  // Halide order: d = 8 innermost
    const Tensor t = Tensor::from_halide(buffer);
    EXPECT_EQ(t.shape(), (std::vector<int64_t>{3, 5, 8}));
    EXPECT_EQ(t.strides(), (std::vector<int64_t>{40, 8, 1}));
    t.at({2, 4, 7}) = 42.0f;
    EXPECT_EQ(buffer(7, 4, 2), 42.0f);
    EXPECT_EQ(t.to_halide().data(), buffer.data());
    const Tensor v = t.transpose(0, 1);
    EXPECT_FALSE(v.is_contiguous());
    EXPECT_EQ(v.contiguous().at({4, 2, 7}), 42.0f);
}

#if defined(HELIX_TEST_GPU_CUDA) || defined(HELIX_TEST_GPU_OPENCL)
// The driver's handle of a helix device tensor (CUdeviceptr / cl_mem), as a caller has it.
uint64_t native_handle(const Tensor &t) {
    auto *b = const_cast<halide_buffer_t *>(t.to_halide().raw_buffer());
#if defined(HELIX_TEST_GPU_CUDA)
    return halide_cuda_get_device_ptr(nullptr, b);
#else
    return halide_opencl_get_cl_mem(nullptr, b);
#endif
}

// A device view of caller memory (wrap_device) detaches, never frees, that memory, and
// narrow views keep their device allocation.
TEST(DeviceTensors, WrappedAndNarrowedViewsShareTheCallersMemory) {
    const Device gpu = kKernelSets[0].device;
    Tensor host({2, 8});
    for (int i = 0; i < 16; i++) host.at({i / 8, i % 8}) = float(i);
    const Tensor owner = host.to(gpu);
    {
        const Tensor view = Tensor::wrap_device(gpu, native_handle(owner), {2, 8});
        EXPECT_EQ(view.device(), gpu);
        const Tensor rotated = rotate_half(view);
        EXPECT_EQ(rotated.to(Device::CPU).at({1, 0}), -host.at({1, 4}));
    }  // the wrapper is gone; the caller's allocation must still be intact
    const Tensor back = owner.to(Device::CPU);
    for (int i = 0; i < 16; i++) EXPECT_EQ(back.at({i / 8, i % 8}), float(i));
    const Tensor row = owner.narrow(0, 1, 1);
    EXPECT_EQ(row.device(), gpu);
    EXPECT_EQ(row.to(Device::CPU).at({0, 3}), 11.0f);
    // Overlap is seen through views of one allocation, and views that do not overlap pass
    // (at a 256-byte offset: OpenCL sub-buffers must start at the device's base alignment).
    const Tensor rows16 = Tensor({16, 8}).to(gpu);
    EXPECT_THROW(rotate_half(rows16.narrow(0, 0, 2), rows16.narrow(0, 1, 2)), Error);
    EXPECT_NO_THROW(rotate_half(rows16.narrow(0, 0, 8), rows16.narrow(0, 8, 8)));
}
#endif

}  // namespace
}  // namespace helix::test
