// GoogleTest main for helix. With HELIX_TEST_ISA=<branch> the multi-target dispatchers
// are forced to that branch (and the test binary says SKIP, exit 77, when the CPU lacks
// it), so ctest runs the whole suite once per branch: avx512, avx2, sse41 (the x86-64
// baseline), arm_dot_prod, neon (the AArch64 baseline).
#include "test_util.h"

#include <HalideRuntime.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

bool has(const uint64_t *features, int feature) { return features[feature >> 6] & (uint64_t(1) << (feature & 63)); }

// A branch and the rule that recognises its candidate among a dispatcher's queries; the
// baselines are never queried (the dispatcher falls back to them), so they accept nothing.
struct Branch {
    const char *name;
    int feature;  // the feature the branch needs from the CPU (-1: none)
    bool (*is_candidate)(const uint64_t *features);
};
const Branch kBranches[] = {
    {"avx512", halide_target_feature_avx512_skylake,
     [](const uint64_t *f) { return has(f, halide_target_feature_avx512_skylake); }},
    {"avx2", halide_target_feature_avx2,
     [](const uint64_t *f) { return has(f, halide_target_feature_avx2) && !has(f, halide_target_feature_avx512_skylake); }},
    {"sse41", -1, [](const uint64_t *) { return false; }},
    {"arm_dot_prod", halide_target_feature_arm_dot_prod,
     [](const uint64_t *f) { return has(f, halide_target_feature_arm_dot_prod); }},
    {"neon", -1, [](const uint64_t *) { return false; }},
};
const Branch *forced = nullptr;

struct Query {
    bool candidate, accepted;
};
std::vector<Query> queries;

// Accepts only the forced branch's candidate, and only if the CPU can run it.
int forced_can_use(int count, const uint64_t *features) {
    const bool candidate = forced->is_candidate(features);
    const bool accept = candidate && halide_default_can_use_target_features(count, features);
    queries.push_back({candidate, accept});
    return accept;
}

bool cpu_supports(int feature) {
    if (feature < 0) return true;
    uint64_t features[(halide_target_feature_end + 63) / 64] = {};
    features[feature >> 6] |= uint64_t(1) << (feature & 63);
    return halide_default_can_use_target_features(int(sizeof(features) / sizeof(features[0])), features);
}

}  // namespace
#if !defined(HELIX_TEST_GPU_CUDA) && !defined(HELIX_TEST_GPU_OPENCL)
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
    for (const Query &q : queries) EXPECT_EQ(q.accepted, q.candidate);
    int accepted = 0;
    for (const Query &q : queries) accepted += q.accepted;
    std::printf("[ISA] %s: %zu dispatcher queries, %d accepted\n", isa, queries.size(), accepted);
}
#endif

int main(int argc, char **argv) {
    ::testing::InitGoogleTest(&argc, argv);
#if defined(HELIX_TEST_GPU_CUDA) || defined(HELIX_TEST_GPU_OPENCL)
    // A GPU suite needs its device: without one it says why and ctest reports SKIPPED.
    const helix::Device device = helix::test::kKernelSets[0].device;
    std::string why;
    if (!helix::device_available(device, &why)) {
        std::printf("[SKIP] no usable %s device: %s\n", helix::to_string(device).c_str(), why.c_str());
        return 77;
    }
#endif
    if (const char *isa = std::getenv("HELIX_TEST_ISA")) {
        for (const Branch &b : kBranches) {
            if (!std::strcmp(isa, b.name)) forced = &b;
        }
        if (!forced) {
            std::fprintf(stderr, "HELIX_TEST_ISA=%s names no branch\n", isa);
            return 2;
        }
        if (!cpu_supports(forced->feature)) {
            std::printf("[SKIP] this CPU cannot run the %s branch\n", isa);
            return 77;
        }
        halide_set_custom_can_use_target_features(forced_can_use);
    }
    return RUN_ALL_TESTS();
}
