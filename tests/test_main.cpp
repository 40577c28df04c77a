// GoogleTest main for helix. With HELIX_TEST_ISA=avx512|avx2|sse41 the multi-target
// dispatchers are forced to that branch (and the test binary says SKIP, exit 77, when
// the CPU lacks it), so ctest runs the whole suite once per ISA branch.
#include "kernels.h"

#include <HalideRuntime.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

bool has(const uint64_t *features, int feature) { return features[feature >> 6] & (uint64_t(1) << (feature & 63)); }

enum class Isa { Avx512, Avx2, Sse41 };
Isa forced_isa;
struct Query {
    bool avx512, avx2, accepted;
};
std::vector<Query> queries;

// A branch is accepted only if it is the forced one (and the CPU can run it); refusing
// every branch selects the last, baseline one.
int forced_can_use(int count, const uint64_t *features) {
    const bool avx512 = has(features, halide_target_feature_avx512_skylake);
    const bool avx2 = has(features, halide_target_feature_avx2);
    bool accept = false;
    if (forced_isa == Isa::Avx512) accept = avx512;
    if (forced_isa == Isa::Avx2) accept = avx2 && !avx512;
    accept = accept && halide_default_can_use_target_features(count, features);
    queries.push_back({avx512, avx2, accept});
    return accept;
}

bool cpu_supports(int feature) {
    uint64_t features[(halide_target_feature_end + 63) / 64] = {};
    for (int f : {int(halide_target_feature_sse41), int(halide_target_feature_avx), int(halide_target_feature_f16c),
                  int(halide_target_feature_fma), int(halide_target_feature_avx2), feature}) {
        features[f >> 6] |= uint64_t(1) << (f & 63);
    }
    return halide_default_can_use_target_features(int(sizeof(features) / sizeof(features[0])), features);
}

}  // namespace

// Calls every kernel of every set once (a dispatcher decides at its first call), then
// checks that each dispatcher consulted picked the forced branch.
TEST(IsaDispatch, EveryDispatcherTookTheForcedBranch) {
    const char *isa = std::getenv("HELIX_TEST_ISA");
    if (!isa) GTEST_SKIP() << "HELIX_TEST_ISA not set: the CPU's own dispatch was used";
    using namespace helix;
    for (const detail::Kernels *kernels : {&detail::kernels_tuned(), &detail::kernels_baseline()}) {
        for (bool xpos : {false, true}) {
            const SinusoidalEmbeddings emb(8, 16.0, xpos);
            const Tensor freqs({4, 8}), scale(xpos ? std::vector<int64_t>{4, 8} : std::vector<int64_t>{1});
            detail::sinusoidal_window(*kernels, emb, 4, 0, freqs, scale);
            const Tensor q({2, 4, 8}), k({2, 4, 8}), q_out({2, 4, 8}), k_out({2, 4, 8});
            detail::apply_rotary_pos_emb(*kernels, q, k, freqs, xpos ? Scale(scale) : Scale(2.0), q_out, k_out);
        }
        detail::rotate_half(*kernels, Tensor({2, 8}), Tensor({2, 8}));
    }
    ASSERT_FALSE(queries.empty()) << "no multi-target dispatcher consulted the hook";
    for (const Query &q : queries) {
        if (forced_isa == Isa::Avx512) EXPECT_EQ(q.accepted, q.avx512);
        if (forced_isa == Isa::Avx2) EXPECT_EQ(q.accepted, q.avx2 && !q.avx512);
        if (forced_isa == Isa::Sse41) EXPECT_FALSE(q.accepted);
    }
    int accepted = 0;
    for (const Query &q : queries) accepted += q.accepted;
    std::printf("[ISA] %s: %zu dispatcher queries, %d accepted\n", isa, queries.size(), accepted);
}

int main(int argc, char **argv) {
    ::testing::InitGoogleTest(&argc, argv);
    if (const char *isa = std::getenv("HELIX_TEST_ISA")) {
        int required = halide_target_feature_sse41;
        if (!std::strcmp(isa, "avx512")) {
            forced_isa = Isa::Avx512;
            required = halide_target_feature_avx512_skylake;
        } else if (!std::strcmp(isa, "avx2")) {
            forced_isa = Isa::Avx2;
            required = halide_target_feature_avx2;
        } else if (!std::strcmp(isa, "sse41")) {
            forced_isa = Isa::Sse41;
        } else {
            std::fprintf(stderr, "HELIX_TEST_ISA must be avx512, avx2 or sse41, not %s\n", isa);
            return 2;
        }
        if (!cpu_supports(required)) {
            std::printf("[SKIP] this CPU cannot run the %s branch\n", isa);
            return 77;
        }
        halide_set_custom_can_use_target_features(forced_can_use);
    }
    return RUN_ALL_TESTS();
}
