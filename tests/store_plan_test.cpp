// Stores::Auto's per-machine choice (runtime/streaming.h): the calibration keeps the
// candidate with the fastest median, the plan file spares the next process the timing and
// is ignored when it comes from another machine or is damaged, HELIX_STORES overrides it,
// and a plan only applies where streaming can (large outputs that are not their inputs).
#include "streaming.h"
#include "kernels.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

namespace helix {
namespace {

using detail::StorePlan;

std::string temporary_path(const std::string &name) {
    return (std::filesystem::temp_directory_path() / ("helix-" + std::to_string(::getpid()) + "-" + name)).string();
}

std::string read(const std::string &path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// A clock for the calibration: each candidate's time from `times` (by name), counting calls;
// `outlier` is one round in which the named candidate looks 100x faster (the median ignores it).
struct FakeTimer {
    std::map<std::string, double> times;
    std::string outlier;
    int calls = 0;
    double operator()(const StorePlan &p) {
        calls++;
        const std::string name = detail::to_string(p);
        if (name == outlier && calls == 7) return times.at(name) / 100;
        return times.at(name);
    }
};

FakeTimer h8_fastest() { return FakeTimer{{{"ordinary", 3.0}, {"streaming", 2.0}, {"streaming_h8", 1.0}}, "ordinary"}; }

TEST(StorePlan, CandidatesAreOrdinaryAndStreamingTiles) {
    const auto &c = detail::store_plan_candidates();
    ASSERT_GE(c.size(), 2u);
    EXPECT_EQ(detail::to_string(c[0]), "ordinary");
    EXPECT_EQ(detail::to_string(c[1]), "streaming");
    for (const StorePlan &p : c) EXPECT_NE(p.stores, Stores::Auto);
}

TEST(StorePlan, CalibrationKeepsTheFastestMedianAndSavesIt) {
    const std::string path = temporary_path("plan") + "/sub/store-plan";  // directories are made
    FakeTimer timer = h8_fastest();
    const StorePlan plan = detail::calibrate_store_plan(4, std::ref(timer), path);
    EXPECT_EQ(detail::to_string(plan), "streaming_h8");
    // A warm-up and 5 rounds of each candidate.
    EXPECT_EQ(timer.calls, 6 * static_cast<int>(detail::store_plan_candidates().size()));
    EXPECT_EQ(read(path), "helix store plan v1\n" + detail::machine_signature() + "\n4 streaming_h8\n");

    // The next process reads it: no timing.
    FakeTimer never;
    EXPECT_EQ(detail::calibrate_store_plan(4, std::ref(never), path), plan);
    EXPECT_EQ(never.calls, 0);

    // Another class is timed and added beside it.
    FakeTimer ordinary_fastest{{{"ordinary", 1.0}, {"streaming", 2.0}, {"streaming_h8", 3.0}}, "streaming"};
    EXPECT_EQ(detail::to_string(detail::calibrate_store_plan(2, std::ref(ordinary_fastest), path)), "ordinary");
    EXPECT_EQ(read(path), "helix store plan v1\n" + detail::machine_signature() + "\n2 ordinary\n4 streaming_h8\n");
    std::filesystem::remove_all(std::filesystem::path(path).parent_path().parent_path());
}

TEST(StorePlan, AFileFromAnotherMachineOrDamagedIsTimedAgain) {
    const std::string path = temporary_path("foreign");
    for (const std::string &contents :
         {std::string("helix store plan v1\nAnother CPU|64 threads|L2 1048576\n4 ordinary\n"), std::string("garbage\n\x01\x02"),
          "helix store plan v1\n" + detail::machine_signature() + "\n4 no_such_plan\n", std::string()}) {
        std::ofstream(path) << contents;
        FakeTimer timer = h8_fastest();
        EXPECT_EQ(detail::to_string(detail::calibrate_store_plan(4, std::ref(timer), path)), "streaming_h8");
        EXPECT_GT(timer.calls, 0) << contents;
        EXPECT_EQ(read(path), "helix store plan v1\n" + detail::machine_signature() + "\n4 streaming_h8\n");
    }
    std::filesystem::remove(path);
}

TEST(StorePlan, WithoutAFileOrAWritableOneItStillChooses) {
    for (const std::string path : {std::string(), std::string("/proc/helix-cannot-write/store-plan")}) {
        FakeTimer timer = h8_fastest();
        EXPECT_EQ(detail::to_string(detail::calibrate_store_plan(4, std::ref(timer), path)), "streaming_h8");
    }
}

TEST(StorePlan, MachineSignatureNamesTheCpuThreadsAndL2) {
    const std::string s = detail::machine_signature();
    EXPECT_NE(s.find(" threads|L2 "), std::string::npos) << s;
    EXPECT_EQ(s.find('\n'), std::string::npos) << s;
}

TEST(StorePlan, HelixStoresOverride) {
    EXPECT_EQ(detail::stores_override(nullptr), Stores::Auto);
    EXPECT_EQ(detail::stores_override(""), Stores::Auto);
    EXPECT_EQ(detail::stores_override("auto"), Stores::Auto);
    EXPECT_EQ(detail::stores_override("ordinary"), Stores::Ordinary);
    EXPECT_EQ(detail::stores_override("streaming"), Stores::Streaming);
    try {
        detail::stores_override("fast");
        ADD_FAILURE() << "expected helix::Error";
    } catch (const Error &e) {
        EXPECT_STREQ(e.what(), "helix: HELIX_STORES must be auto, ordinary or streaming (got 'fast')");
    }
}

// Auto takes a plan only for large outputs that are not their inputs; Streaming asked for
// explicitly streams (in place too) with the thread's tiles.
TEST(StorePlan, WhereAPlanApplies) {
    const int64_t large = detail::stream_threshold() + 1;
    int timed = 0;
    auto timer = [&](const StorePlan &) { return ++timed, 1.0; };
    EXPECT_EQ(detail::resolve_stores(Stores::Ordinary, large, false, 4, timer), StorePlan{});
    EXPECT_EQ(detail::resolve_stores(Stores::Auto, large, true, 4, timer), StorePlan{});
    EXPECT_EQ(detail::resolve_stores(Stores::Auto, detail::stream_threshold(), false, 4, timer), StorePlan{});
    EXPECT_EQ(timed, 0);
    if (!detail::non_temporal_stores_available()) {
        EXPECT_EQ(detail::resolve_stores(Stores::Streaming, 64, false, 4, timer), StorePlan{});
        return;
    }
    EXPECT_EQ(detail::resolve_stores(Stores::Streaming, 64, false, 4, timer), (StorePlan{Stores::Streaming, 0}));
    EXPECT_EQ(detail::resolve_stores(Stores::Streaming, large, true, 4, timer), (StorePlan{Stores::Streaming, 0}));
    const detail::ScopedStreamTiles tiles(8);
    EXPECT_EQ(detail::resolve_stores(Stores::Streaming, 64, false, 2, timer), (StorePlan{Stores::Streaming, 8}));
    EXPECT_EQ(timed, 0);
}

// The real calibration on this machine with the tuned kernels: it times and picks a
// candidate for each storage class and saves it; Auto's process-wide plan is a candidate too
// and is kept (a second call times nothing).
TEST(StorePlan, CalibratesTheTunedKernelsOnThisMachine) {
    if (!detail::non_temporal_stores_available()) GTEST_SKIP() << "no non-temporal stores on this CPU";
    const std::string path = temporary_path("tuned");
    auto known = [](const StorePlan &plan) {
        for (const StorePlan &p : detail::store_plan_candidates()) {
            if (p == plan) return true;
        }
        return false;
    };
    std::string expected = "helix store plan v1\n" + detail::machine_signature() + "\n";
    for (DType dtype : {DType::BFloat16, DType::Float32}) {  // the file lists 2 before 4
        if (!detail::kernels_tuned().find(dtype, Pairing::HalfSplit)) continue;
        const StorePlan plan = detail::calibrate_store_plan(detail::kernels_tuned(), dtype, path);
        EXPECT_TRUE(known(plan)) << detail::to_string(plan);
        expected += (dtype == DType::Float32 ? "4 " : "2 ") + detail::to_string(plan) + "\n";
        EXPECT_EQ(read(path), expected);

        const StorePlan chosen = detail::auto_store_plan(detail::kernels_tuned(), dtype);
        EXPECT_TRUE(known(chosen)) << detail::to_string(chosen);
        int timed = 0;
        const int element_bytes = dtype == DType::Float32 ? 4 : 2;
        EXPECT_EQ(detail::auto_store_plan(element_bytes, [&](const StorePlan &) { return ++timed, 1.0; }), chosen);
        EXPECT_EQ(timed, 0);
    }
    std::filesystem::remove(path);
}

}  // namespace
}  // namespace helix
