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

using detail::PlanClass;
const PlanClass kClasses[] = {PlanClass::Apply16, PlanClass::Apply32, PlanClass::Table};  // as the file lists them

int candidates(PlanClass c) { return static_cast<int>(detail::store_plan_candidates(c).size()); }

TEST(StorePlan, CandidatesAreOrdinaryAndStreamingTiles) {
    for (PlanClass pc : kClasses) {
        const auto &c = detail::store_plan_candidates(pc);
        ASSERT_GE(c.size(), 2u);
        EXPECT_EQ(detail::to_string(c[0]), "ordinary");
        EXPECT_EQ(detail::to_string(c[1]), "streaming");
        for (const StorePlan &p : c) EXPECT_NE(p.stores, Stores::Auto);
    }
    EXPECT_EQ(detail::apply_plan_class(DType::Float32), PlanClass::Apply32);
    EXPECT_EQ(detail::apply_plan_class(DType::BFloat16), PlanClass::Apply16);
    EXPECT_EQ(detail::apply_plan_class(DType::Float16), PlanClass::Apply16);
}

TEST(StorePlan, CalibrationKeepsTheFastestMedianAndSavesIt) {
    const std::string path = temporary_path("plan") + "/sub/store-plan";  // directories are made
    FakeTimer timer = h8_fastest();
    const StorePlan plan = detail::calibrate_store_plan(PlanClass::Apply32, std::ref(timer), path);
    EXPECT_EQ(detail::to_string(plan), "streaming_h8");
    // A warm-up and 5 rounds of each candidate.
    EXPECT_EQ(timer.calls, 6 * candidates(PlanClass::Apply32));
    EXPECT_EQ(read(path), "helix store plan v1\n" + detail::machine_signature() + "\napply_32bit streaming_h8\n");

    // The next process reads it: no timing.
    FakeTimer never;
    EXPECT_EQ(detail::calibrate_store_plan(PlanClass::Apply32, std::ref(never), path), plan);
    EXPECT_EQ(never.calls, 0);

    // Other classes are timed and added beside it.
    FakeTimer ordinary_fastest{{{"ordinary", 1.0}, {"streaming", 2.0}, {"streaming_h8", 3.0}}, "streaming"};
    EXPECT_EQ(detail::to_string(detail::calibrate_store_plan(PlanClass::Apply16, std::ref(ordinary_fastest), path)),
              "ordinary");
    FakeTimer streaming_fastest{{{"ordinary", 2.0}, {"streaming", 1.0}}, "ordinary"};
    EXPECT_EQ(detail::to_string(detail::calibrate_store_plan(PlanClass::Table, std::ref(streaming_fastest), path)),
              "streaming");
    EXPECT_EQ(streaming_fastest.calls, 6 * candidates(PlanClass::Table));
    EXPECT_EQ(read(path), "helix store plan v1\n" + detail::machine_signature() +
                              "\napply_16bit ordinary\napply_32bit streaming_h8\ntable streaming\n");
    std::filesystem::remove_all(std::filesystem::path(path).parent_path().parent_path());
}

TEST(StorePlan, AFileFromAnotherMachineOrDamagedIsTimedAgain) {
    const std::string path = temporary_path("foreign");
    for (const std::string &contents :
         {std::string("helix store plan v1\nAnother CPU|64 threads|L2 1048576\napply_32bit ordinary\n"),
          std::string("garbage\n\x01\x02"),
          "helix store plan v1\n" + detail::machine_signature() + "\napply_32bit no_such_plan\n",
          "helix store plan v1\n" + detail::machine_signature() + "\ntable streaming_h8\n",  // not a table plan
          std::string()}) {
        std::ofstream(path) << contents;
        FakeTimer timer = h8_fastest();
        EXPECT_EQ(detail::to_string(detail::calibrate_store_plan(PlanClass::Apply32, std::ref(timer), path)),
                  "streaming_h8");
        EXPECT_GT(timer.calls, 0) << contents;
        EXPECT_EQ(read(path), "helix store plan v1\n" + detail::machine_signature() + "\napply_32bit streaming_h8\n");
    }
    std::filesystem::remove(path);
}

TEST(StorePlan, WithoutAFileOrAWritableOneItStillChooses) {
    for (const std::string path : {std::string(), std::string("/proc/helix-cannot-write/store-plan")}) {
        FakeTimer timer = h8_fastest();
        EXPECT_EQ(detail::to_string(detail::calibrate_store_plan(PlanClass::Apply32, std::ref(timer), path)),
                  "streaming_h8");
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
    int asked = 0;
    const StorePlan streaming_h8{Stores::Streaming, 8};
    auto plan = [&] { return ++asked, streaming_h8; };
    EXPECT_EQ(detail::resolve_stores(Stores::Ordinary, large, false, plan), StorePlan{});
    EXPECT_EQ(detail::resolve_stores(Stores::Auto, large, true, plan), StorePlan{});
    EXPECT_EQ(detail::resolve_stores(Stores::Auto, detail::stream_threshold(), false, plan), StorePlan{});
    EXPECT_EQ(asked, 0);
    if (!detail::non_temporal_stores_available()) {
        EXPECT_EQ(detail::resolve_stores(Stores::Streaming, 64, false, plan), StorePlan{});
        EXPECT_EQ(detail::resolve_stores(Stores::Auto, large, false, plan), StorePlan{});
        return;
    }
    EXPECT_EQ(detail::resolve_stores(Stores::Auto, large, false, plan), streaming_h8);
    EXPECT_EQ(asked, 1);
    EXPECT_EQ(detail::resolve_stores(Stores::Streaming, 64, false, plan), (StorePlan{Stores::Streaming, 0}));
    EXPECT_EQ(detail::resolve_stores(Stores::Streaming, large, true, plan), (StorePlan{Stores::Streaming, 0}));
    const detail::ScopedStreamTiles tiles(8);
    EXPECT_EQ(detail::resolve_stores(Stores::Streaming, 64, false, plan), streaming_h8);
    EXPECT_EQ(asked, 1);
}

// The real calibration on this machine with the tuned kernels: it times and picks a
// candidate for each class and saves it; Auto's process-wide plan is a candidate too and is
// kept (a second call times nothing).
TEST(StorePlan, CalibratesTheTunedKernelsOnThisMachine) {
    if (!detail::non_temporal_stores_available()) GTEST_SKIP() << "no non-temporal stores on this CPU";
    const std::string path = temporary_path("tuned");
    auto known = [](PlanClass c, const StorePlan &plan) {
        for (const StorePlan &p : detail::store_plan_candidates(c)) {
            if (p == plan) return true;
        }
        return false;
    };
    std::string expected = "helix store plan v1\n" + detail::machine_signature() + "\n";
    for (PlanClass c : kClasses) {
        const StorePlan plan = detail::calibrate_store_plan(detail::kernels_tuned(), c, path);
        EXPECT_TRUE(known(c, plan)) << detail::to_string(plan);
        expected += detail::to_string(c) + " " + detail::to_string(plan) + "\n";
        EXPECT_EQ(read(path), expected);

        const StorePlan chosen = detail::auto_store_plan(detail::kernels_tuned(), c);
        EXPECT_TRUE(known(c, chosen)) << detail::to_string(chosen);
        int timed = 0;
        EXPECT_EQ(detail::auto_store_plan(c, [&](const StorePlan &) { return ++timed, 1.0; }), chosen);
        EXPECT_EQ(timed, 0);
    }
    std::filesystem::remove(path);
}

}  // namespace
}  // namespace helix
