// helix against golden vectors made by PyTorch running the reference code
// (tests/make_golden.py; the arrays are in tests/golden/).
#include "test_util.h"

#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

namespace helix::test {
namespace {

// Both sides are within SPEC's tolerance of the float64 truth (PyTorch's float32 evaluation
// is, at ~3e-7), so they agree within twice that bound.
constexpr double kGoldenTol = 2 * 4e-6;
// xPos scale: helix is within 4 ulp of float64 pow; PyTorch's powf is within 1 ulp.
constexpr double kGoldenScaleRelTol = 5 * 0x1p-24;
// Angle tables: helix's inv_freq is libm's (correctly rounded) powf, bit for bit what
// PyTorch's scalar path returns (InvFreqEqualsPyTorchFloat32); PyTorch's vectorized
// Sleef powf is within 1 ulp of it, so its n * inv_freq is within 2 ulp of helix's.
constexpr double kGoldenAngleRelTol = 2 * 0x1p-23;

class Golden {
public:
    // The arrays' folder: $HELIX_GOLDEN_DIR if set (a test binary run away from its
    // source tree, as scripts/gpu_check.sh --pack does), else the source tree's.
    Golden() {
        const char *env = std::getenv("HELIX_GOLDEN_DIR");
        const std::string dir = env ? env : HELIX_GOLDEN_DIR;
        std::ifstream manifest(dir + "/MANIFEST");
        if (!manifest) throw std::runtime_error("cannot read " + dir + "/MANIFEST");
        std::string line;
        while (std::getline(manifest, line)) {
            std::istringstream fields(line);
            std::string name;
            fields >> name;
            std::vector<int64_t> shape;
            for (int64_t s; fields >> s;) shape.push_back(s);
            Tensor t(shape);
            std::ifstream data(dir + "/" + name + ".f32", std::ios::binary);
            data.read(static_cast<char *>(t.data()), t.numel() * sizeof(float));
            if (!data) throw std::runtime_error("cannot read golden array " + name);
            arrays_.emplace(name, t);
        }
    }
    const Tensor &operator[](const std::string &name) const {
        auto it = arrays_.find(name);
        if (it == arrays_.end()) throw std::runtime_error("no golden array " + name);
        return it->second;
    }

private:
    std::map<std::string, Tensor> arrays_;
};

const Golden &golden() {
    static const Golden g;
    return g;
}

class GoldenVectors : public ::testing::TestWithParam<KernelSet> {
protected:
    // Whether the set has interleaved kernels (cmake/HelixKernels.cmake's gaps leave some out).
    bool has_interleaved() const { return GetParam().get().find(DType::Float32, Pairing::Interleaved) != nullptr; }

    RotaryTables tables(const SinusoidalEmbeddings &emb, int64_t n) const { return make_tables(GetParam(), emb, n); }

    static void expect_bitwise_equal(const Tensor &got, const Tensor &want, const std::string &what) {
        ASSERT_EQ(got.shape(), want.shape()) << what;
        int failures = 0;
        ref::for_each_index(want.shape(), [&](const std::vector<int64_t> &idx) {
            if (ref::element(got, idx) != ref::element(want, idx) && failures++ < 3) {
                ADD_FAILURE() << what << " at " << ::testing::PrintToString(idx) << ": " << ref::element(got, idx)
                              << " != torch " << ref::element(want, idx);
            }
        });
    }

    // Within rel_tol * |want|; reports how many elements are not bitwise equal.
    static void expect_relative(const Tensor &got, const Tensor &want, double rel_tol, const std::string &what) {
        ASSERT_EQ(got.shape(), want.shape()) << what;
        int64_t inexact = 0;
        ref::for_each_index(want.shape(), [&](const std::vector<int64_t> &idx) {
            const double w = ref::element(want, idx), g = ref::element(got, idx);
            inexact += g != w;
            ASSERT_LE(std::fabs(g - w), rel_tol * std::fabs(w)) << what << " at " << ::testing::PrintToString(idx);
        });
        RecordProperty(what + "_not_bitwise_equal", std::to_string(inexact) + " of " + std::to_string(want.numel()));
    }

    // x' against torch with the bound of SPEC section 4 (scale s per element); features
    // past the rotary part (partial rotary) bit for bit.
    static void expect_rotation_close(const Tensor &x, const Tensor &got, const Tensor &want, const Tensor &freqs,
                                      const Scale &scale, bool inverse, const std::string &what,
                                      Pairing pairing = Pairing::HalfSplit) {
        ASSERT_EQ(got.shape(), want.shape()) << what;
        const int64_t rotary_dim = freqs.size(1), half = rotary_dim / 2, first_row = freqs.size(0) - x.size(-2);
        ref::for_each_index(want.shape(), [&](const std::vector<int64_t> &idx) {
            const int64_t j = idx.back();
            if (j >= rotary_dim) {
                ASSERT_EQ(ref::element(got, idx), ref::element(want, idx)) << what << " pass-through";
                return;
            }
            std::vector<int64_t> partner = idx;
            partner.back() = pairing == Pairing::Interleaved ? (j ^ 1) : j < half ? j + half : j - half;
            double s = scale_at(scale, first_row + idx[idx.size() - 2], idx.back());
            if (inverse) s = 1.0 / s;
            const double magnitude =
                std::fabs(s) * std::max(std::fabs(ref::element(x, idx)), std::fabs(ref::element(x, partner)));
            ASSERT_LE(std::fabs(double(ref::element(got, idx)) - ref::element(want, idx)), kGoldenTol * magnitude)
                << what << " at " << ::testing::PrintToString(idx);
        });
    }

    void check_apply(const std::string &prefix, const Tensor &freqs, const Scale &scale, const RotaryOptions &options = {}) {
        const Golden &g = golden();
        const Tensor &q = g[prefix + "_q"], &k = g[prefix + "_k"];
        const Tensor q_out(q.shape()), k_out(k.shape());
        run_apply(GetParam(), q, k, freqs, scale, q_out, k_out, options);
        expect_rotation_close(q, q_out, g[prefix + "_q_out"], freqs, scale, false, prefix + " q'", options.pairing);
        expect_rotation_close(k, k_out, g[prefix + "_k_out"], freqs, scale, true, prefix + " k'", options.pairing);
    }
};

// SinusoidalEmbeddings(dim=512, use_xpos=True, scale_base=1000) on a (1, 10, 512) input.
TEST_P(GoldenVectors, SeedSinusoidalEmbeddingsWithXpos) {
    const RotaryTables t = tables(SinusoidalEmbeddings(512, 1000.0, true), 10);
    expect_relative(t.freqs, golden()["seed_sinusoidal_freqs"], kGoldenAngleRelTol, "freqs");
    expect_relative(t.scale, golden()["seed_sinusoidal_scale"], kGoldenScaleRelTol, "scale");
}

// rotate_half on (2, 3, 4): exact.
TEST_P(GoldenVectors, SeedRotateHalf) {
    const Tensor &x = golden()["seed_rotate_half_x"];
    const Tensor out(x.shape());
    run_rotate_half(GetParam(), x, out);
    expect_bitwise_equal(out, golden()["seed_rotate_half_out"], "rotate_half");
}

// apply_rotary_pos_emb on (2, 3, 4) with random freqs and a random positive scale table.
TEST_P(GoldenVectors, SeedApplyRotaryPosEmb) {
    check_apply("seed_apply", golden()["seed_apply_freqs"], golden()["seed_apply_scale"]);
}

// inv_freq equals PyTorch's float32 evaluation element by element (its libm path) bit for
// bit, and its vectorized evaluation within 1 ulp, for several widths and bases.
TEST_P(GoldenVectors, InvFreqEqualsPyTorchFloat32) {
    for (int64_t dim : {2, 64, 80, 128, 256, 512}) {
        for (int theta : {10000, 500000, 1000000}) {
            const RotaryTables t = tables(SinusoidalEmbeddings(dim, std::nullopt, false, theta), 2);
            const Tensor inv_freq = t.freqs.narrow(0, 1, 1).narrow(1, 0, dim / 2);
            const std::string name = "inv_freq_d" + std::to_string(dim) + "_theta" + std::to_string(theta);
            expect_bitwise_equal(inv_freq, Tensor::wrap(golden()[name + "_elementwise"].data(), {1, dim / 2}),
                                 name + "_elementwise");
            expect_relative(t.freqs.narrow(0, 1, 1), Tensor::wrap(golden()[name].data(), {1, dim}), 0x1p-23, name);
        }
    }
}

// Tables and rotations of a 2048-position xPos sequence (scale_base 64) with 50 queries.
TEST_P(GoldenVectors, LongXposSequence) {
    const RotaryTables t = tables(SinusoidalEmbeddings(16, 64.0, true), 2048);
    expect_relative(t.freqs, golden()["xpos_d16_n2048_freqs"], kGoldenAngleRelTol, "freqs");
    expect_relative(t.scale, golden()["xpos_d16_n2048_scale"], kGoldenScaleRelTol, "scale");
    check_apply("xpos_d16_n2048", t.freqs, t.scale);
}

// No xPos, theta 500000, scale absent.
TEST_P(GoldenVectors, PlainRotaryWithoutScale) {
    const RotaryTables t = tables(SinusoidalEmbeddings(128, std::nullopt, false, 500000.0), 40);
    expect_relative(t.freqs, golden()["plain_d128_theta500000_freqs"], kGoldenAngleRelTol, "freqs");
    check_apply("plain_d128_theta500000", t.freqs, Scale());
}

// HF GPT-J's rotate_every_two: exact.
TEST_P(GoldenVectors, GptjRotateEveryTwo) {
    if (!has_interleaved()) GTEST_SKIP() << "no interleaved kernels in this build";
    const Tensor &x = golden()["gptj_rotate_every_two_x"];
    const Tensor out(x.shape());
    run_rotate_half(GetParam(), x, out, Pairing::Interleaved);
    expect_bitwise_equal(out, golden()["gptj_rotate_every_two_out"], "rotate_every_two");
}

// rotary-embedding-torch's interleaved tables (f0 f0 f1 f1 ..., xPos scale likewise) and
// their rotation.
TEST_P(GoldenVectors, InterleavedXpos) {
    if (!has_interleaved()) GTEST_SKIP() << "no interleaved kernels in this build";
    const RotaryTables t = tables(SinusoidalEmbeddings(16, 32.0, true, 10000.0, Pairing::Interleaved), 64);
    expect_relative(t.freqs, golden()["interleaved_xpos_d16_n64_freqs"], kGoldenAngleRelTol, "freqs");
    expect_relative(t.scale, golden()["interleaved_xpos_d16_n64_scale"], kGoldenScaleRelTol, "scale");
    check_apply("interleaved_xpos_d16_n64", t.freqs, t.scale, {Pairing::Interleaved, 0});
}

// Partial rotary as GPT-NeoX/Phi (8 of 24 features, half-split) and rotary-embedding-torch
// (12 of 20, interleaved) write it: the rest passes through.
TEST_P(GoldenVectors, PartialRotary) {
    const RotaryTables neox = tables(SinusoidalEmbeddings(8), 12);
    expect_relative(neox.freqs, golden()["partial_neox_d24_r8_freqs"], kGoldenAngleRelTol, "neox freqs");
    check_apply("partial_neox_d24_r8", neox.freqs, Scale(), {Pairing::HalfSplit, 8});
    if (!has_interleaved()) return;  // as above
    const RotaryTables il = tables(SinusoidalEmbeddings(12, std::nullopt, false, 10000.0, Pairing::Interleaved), 12);
    expect_relative(il.freqs, golden()["partial_interleaved_d20_r12_freqs"], kGoldenAngleRelTol, "interleaved freqs");
    check_apply("partial_interleaved_d20_r12", il.freqs, Scale(), {Pairing::Interleaved, 12});
}

// A rotation by cos/sin tables against torch with SPEC section 4's bound (no scale):
// kGoldenTol * max(|x_j|, |x_pair(j)|); features past rotary_dim bit for bit.
void expect_cos_sin_rotation_close(const Tensor &x, const Tensor &got, const Tensor &want, int64_t rotary_dim,
                                   Pairing pairing, const std::string &what, double scale = 1.0) {
    ASSERT_EQ(got.shape(), want.shape()) << what;
    const int64_t half = rotary_dim / 2;
    int64_t inexact = 0;
    ref::for_each_index(want.shape(), [&](const std::vector<int64_t> &idx) {
        const int64_t j = idx.back();
        const double g = ref::element(got, idx), w = ref::element(want, idx);
        inexact += g != w;
        if (j >= rotary_dim) {
            ASSERT_EQ(g, w) << what << " pass-through at " << ::testing::PrintToString(idx);
            return;
        }
        std::vector<int64_t> partner = idx;
        partner.back() = pairing == Pairing::Interleaved ? (j ^ 1) : j < half ? j + half : j - half;
        const double magnitude =
            scale * std::max(std::fabs(ref::element(x, idx)), std::fabs(ref::element(x, partner)));
        ASSERT_LE(std::fabs(g - w), kGoldenTol * magnitude) << what << " at " << ::testing::PrintToString(idx);
    });
    ::testing::Test::RecordProperty(what + "_not_bitwise_equal", std::to_string(inexact));
}

// flash-attention's apply_rotary_emb_torch with per-sequence offsets (seqlen_offsets), the
// last sequence ending at the table's last row; x (b, s, h, d) viewed as (b, h, s, d);
// partial rotary (16 of 24); int32 and int64 offsets.
TEST_P(GoldenVectors, FlashAttentionSequenceOffsets) {
    for (Pairing pairing : {Pairing::HalfSplit, Pairing::Interleaved}) {
        if (pairing == Pairing::Interleaved && !has_interleaved()) continue;
        for (DType index : {DType::Int32, DType::Int64}) {
            const std::string prefix = std::string("fa_offsets_") + (pairing == Pairing::HalfSplit ? "half_split" : "interleaved");
            const Golden &g = golden();
            const Tensor &x = g[prefix + "_x"];
            const Tensor out(x.shape());
            RotaryOptions options{pairing, 16};
            options.positions = Positions::offsets(integers(g[prefix + "_offsets"], index));
            run_apply_table(GetParam(), x.transpose(1, 2), Tensor(), RotaryTable::cos_sin(g[prefix + "_cos"], g[prefix + "_sin"]),
                            out.transpose(1, 2), Tensor(), options);
            expect_cos_sin_rotation_close(x, out, g[prefix + "_out"], 16, pairing, prefix + " " + to_string(index));
        }
    }
}

// flash-attention varlen: packed sequences of lengths 1, 3, 0 and 7 with offsets.
TEST_P(GoldenVectors, FlashAttentionVarlen) {
    const Golden &g = golden();
    const Tensor &x = g["fa_varlen_x"];
    const Tensor out(x.shape());
    RotaryOptions options;
    options.positions = Positions::varlen(integers(g["fa_varlen_cu_seqlens"]), integers(g["fa_varlen_offsets"]));
    run_apply_table(GetParam(), x, Tensor(), RotaryTable::cos_sin(g["fa_varlen_cos"], g["fa_varlen_sin"]), out, Tensor(),
                    options);
    expect_cos_sin_rotation_close(x, out, g["fa_varlen_out"], 16, Pairing::HalfSplit, "varlen");
}

// vLLM's forward_native: unsorted, repeated positions into cos_sin_cache, partial rotary (16
// of 32), NeoX and GPT-J styles; query (T, 4 * 32) and key (T, 2 * 32) viewed as (h, T, d).
TEST_P(GoldenVectors, VllmCosSinCacheWithPositionIds) {
    for (bool neox : {true, false}) {
        if (!neox && !has_interleaved()) continue;
        const Pairing pairing = neox ? Pairing::HalfSplit : Pairing::Interleaved;
        const std::string prefix = neox ? "vllm_neox" : "vllm_gptj";
        const Golden &g = golden();
        auto heads = [](const Tensor &t, int64_t h) {
            return Tensor::wrap(t.data(), {t.size(0), h, 32}).transpose(0, 1);
        };
        const Tensor &query = g[prefix + "_query"], &key = g[prefix + "_key"];
        const Tensor query_out(query.shape()), key_out(key.shape());
        RotaryOptions options{pairing, 16};
        options.positions = Positions::ids(integers(g[prefix + "_positions"], DType::Int64));
        run_apply_table(GetParam(), heads(query, 4), heads(key, 2), RotaryTable::cos_sin_cache(g[prefix + "_cache"]),
                        heads(query_out, 4), heads(key_out, 2), options);
        expect_cos_sin_rotation_close(heads(query, 4), heads(query_out, 4), heads(g[prefix + "_query_out"], 4), 16,
                                      pairing, prefix + " query");
        expect_cos_sin_rotation_close(heads(key, 2), heads(key_out, 2), heads(g[prefix + "_key_out"], 2), 16, pairing,
                                      prefix + " key");
    }
}

// The backward pass (conjugate) against torch.autograd: through Zeta's apply_rotary_pos_emb
// with xPos (dq = s R(-a) dq', dk = R(-a) dk' / s), and through flash-attention's interleaved
// form with per-sequence offsets.
TEST_P(GoldenVectors, BackwardEqualsTorchAutograd) {
    const Golden &g = golden();
    const Tensor &freqs = g["backward_zeta_xpos_freqs"], &scale = g["backward_zeta_xpos_scale"];
    const Tensor &dq_out = g["backward_zeta_xpos_grad_q_out"], &dk_out = g["backward_zeta_xpos_grad_k_out"];
    const Tensor dq(dq_out.shape()), dk(dk_out.shape());
    RotaryOptions options;
    options.conjugate = true;
    run_apply(GetParam(), dq_out, dk_out, freqs, scale, dq, dk, options);
    expect_rotation_close(dq_out, dq, g["backward_zeta_xpos_grad_q"], freqs, scale, false, "dq");
    expect_rotation_close(dk_out, dk, g["backward_zeta_xpos_grad_k"], freqs, scale, true, "dk");
    if (!has_interleaved()) return;
    const Tensor &grad = g["backward_fa_interleaved_grad_out"];
    const Tensor dx(grad.shape());
    RotaryOptions fa{Pairing::Interleaved, 0};
    fa.conjugate = true;
    fa.positions = Positions::offsets(integers(g["backward_fa_interleaved_offsets"]));
    run_apply_table(GetParam(), grad.transpose(1, 2), Tensor(),
                    RotaryTable::cos_sin(g["backward_fa_interleaved_cos"], g["backward_fa_interleaved_sin"]),
                    dx.transpose(1, 2), Tensor(), fa);
    expect_cos_sin_rotation_close(grad, dx, g["backward_fa_interleaved_grad_x"], 16, Pairing::Interleaved, "fa dx");
}

// Frequency scaling against HF transformers 4.57.6 itself (tests/make_golden.py's
// SCALING_CASES: real models' rope_scaling). helix computes the scaled frequencies in
// double from PyTorch's float32 powers and rounds once; HF rounds after each float32
// operation (and its powers take PyTorch's vectorized powf, within 1 ulp of libm's). So
// inv_freq may differ by a few ulp: the largest distance seen is recorded per case
// (max_ulp) and bounded by kScalingUlp. The attention factor is HF's Python float as
// PyTorch rounds it to float32: bit for bit. The rotation by HF's own rotary module and
// apply_rotary_pos_emb at positions up to seq_len - 1 is within SPEC's bound (times the
// attention factor), through the no-table form with position ids, on HF's frequencies (at
// position 131071 one ulp of a frequency moves the angle by up to 3e-5 rad, so the
// rotation is compared on the same frequencies; helix's own are checked above).
constexpr int64_t kScalingUlp = 4;

int64_t ulp_distance(float a, float b) {
    int32_t x, y;
    std::memcpy(&x, &a, 4);
    std::memcpy(&y, &b, 4);
    return std::llabs(int64_t(x) - int64_t(y));  // both positive here
}

std::vector<double> doubles(const Tensor &t) {
    const float *p = static_cast<const float *>(t.data());
    return std::vector<double>(p, p + t.numel());
}

TEST_P(GoldenVectors, FrequencyScalingEqualsHuggingFace) {
    const Golden &g = golden();
    RopeScaling deepseek = RopeScaling::yarn(40, 4096);
    deepseek.mscale = 0.707;
    deepseek.mscale_all_dim = 0.707;
    RopeScaling ratio = RopeScaling::yarn(4, 4096);
    ratio.mscale = 1.0;
    ratio.mscale_all_dim = 0.5;
    ratio.truncate = false;
    struct Case {
        const char *name;
        int64_t dim;
        double theta;
        RopeScaling scaling;
        std::vector<int64_t> seq_lens;
    };
    const Case cases[] = {
        {"linear", 128, 10000.0, RopeScaling::linear(4), {16384}},
        {"dynamic", 128, 10000.0, RopeScaling::dynamic(2, 4096), {2048, 8192, 16384}},
        {"llama31", 128, 500000.0, RopeScaling::llama3(8, 1, 4, 8192), {131072}},
        {"qwen25_yarn", 128, 1000000.0, RopeScaling::yarn(4, 32768), {131072}},
        {"deepseek_v2_yarn", 64, 10000.0, deepseek, {163840}},
        {"yarn_mscale_ratio", 64, 10000.0, ratio, {16384}},
        // Phi-3.5: max_position_embeddings 131072 over the original 4096 gives factor 32.
        {"phi35_longrope", 96, 10000.0,
         RopeScaling::longrope(doubles(g["scaling_phi35_longrope_short_factor"]),
                               doubles(g["scaling_phi35_longrope_long_factor"]), 32, 4096),
         {4096, 8192}},
    };
    for (const Case &c : cases) {
        const SinusoidalEmbeddings emb(c.dim, std::nullopt, false, c.theta, Pairing::HalfSplit, c.scaling);
        for (int64_t seq_len : c.seq_lens) {
            const std::string tag = "scaling_" + std::string(c.name) + "_n" + std::to_string(seq_len);
            const Tensor inv_freq = emb.inv_freq(seq_len);
            const Tensor &want = g[tag + "_inv_freq"];
            ASSERT_EQ(inv_freq.numel(), want.numel()) << tag;
            int64_t worst = 0;
            for (int64_t i = 0; i < want.numel(); i++) {
                worst = std::max(worst, ulp_distance(static_cast<const float *>(inv_freq.data())[i],
                                                     static_cast<const float *>(want.data())[i]));
            }
            RecordProperty(tag + "_max_ulp", std::to_string(worst));
            EXPECT_LE(worst, kScalingUlp) << tag << " inv_freq";
            EXPECT_EQ(static_cast<float>(emb.attention_factor()), *static_cast<const float *>(g[tag + "_attention"].data()))
                << tag << " attention factor";
            // The table kernel of this set holds the same frequencies (row 1 = 1 * inv_freq).
            const Tensor row = make_tables(GetParam(), emb, seq_len, 1, 1).freqs;
            expect_bitwise_equal(row.narrow(1, 0, c.dim / 2), Tensor::wrap(inv_freq.data(), {1, c.dim / 2}),
                                 tag + " table row");
            const Tensor &q = g[tag + "_q"], &k = g[tag + "_k"];
            const Tensor q_out(q.shape()), k_out(k.shape());
            RotaryOptions options;
            options.positions = Positions::ids(integers(g[tag + "_positions"]));
            const RotaryTable hf = RotaryTable::inv_freq(want).with_attention_factor(emb.attention_factor());
            run_apply_table(GetParam(), q, k, hf, q_out, k_out, options);
            expect_cos_sin_rotation_close(q, q_out, g[tag + "_q_out"], c.dim, Pairing::HalfSplit, tag + " q",
                                          emb.attention_factor());
            expect_cos_sin_rotation_close(k, k_out, g[tag + "_k_out"], c.dim, Pairing::HalfSplit, tag + " k",
                                          emb.attention_factor());
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Schedules, GoldenVectors, ::testing::ValuesIn(kKernelSets), kernel_set_name);

}  // namespace
}  // namespace helix::test
