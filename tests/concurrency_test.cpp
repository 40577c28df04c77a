// Many threads calling every operation at once, with different shapes and kernel sets,
// while another thread keeps changing set_num_threads: each result must equal, bit for
// bit, the one computed alone on one thread; rejected calls must throw their own message
// on every thread. This binary also runs under ThreadSanitizer (sanitize/thread).
#include "streaming.h"
#include "test_util.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <thread>

namespace helix::test {
namespace {

// One call of the API into fresh outputs, which it returns.
struct Workload {
    std::string name;
    std::function<std::vector<Tensor>()> run;
};

bool bitwise_equal(const Tensor &a, const Tensor &b) {
    const size_t bytes = a.numel() * a.element_size();
    return a.shape() == b.shape() && a.dtype() == b.dtype() && (bytes == 0 || std::memcmp(a.data(), b.data(), bytes) == 0);
}

std::vector<Workload> workloads() {
    std::vector<Workload> w;
    std::mt19937 rng(99);
    for (const KernelSet &set : kKernelSets) {
        const detail::Kernels &kernels = set.get();
        const std::string tag = std::string(set.name) + " ";
        for (const auto &[dim, n, xpos] : {std::tuple{8, 3, false}, std::tuple{64, 257, true}, std::tuple{130, 40, true}}) {
            const SinusoidalEmbeddings emb(dim, 64.0, xpos);
            w.push_back({tag + "tables " + std::to_string(dim), [&kernels, emb, n = n] {
                             const Tensor f({n, emb.dim()}), s(emb.use_xpos() ? f.shape() : std::vector<int64_t>{1});
                             detail::sinusoidal_window(kernels, emb, n, 0, f, s);
                             return std::vector<Tensor>{f, s};
                         }});
            const RotaryTables t = make_tables(set, emb, n);
            const Tensor q = random_tensor({2, 4, std::max(1, n / 2), dim}, Layout::HeadsTransposed, rng);
            const Tensor k = random_tensor({2, 2, n, dim}, Layout::PaddedRows, rng);
            w.push_back({tag + "apply " + std::to_string(dim), [&kernels, q, k, t, xpos = xpos] {
                             const Tensor qo(q.shape()), ko(k.shape());
                             detail::apply_rotary_pos_emb(kernels, q, k, t.freqs, xpos ? Scale(t.scale) : Scale(0.5), qo, ko);
                             return std::vector<Tensor>{qo, ko};
                         }});
            w.push_back({tag + "rotate_half " + std::to_string(dim), [&kernels, k] {
                             const Tensor o(k.shape());
                             detail::rotate_half(kernels, k, o);
                             return std::vector<Tensor>{o};
                         }});
        }
        // Positions, table forms and the backward pass: decode steps (on the calling thread),
        // a varlen batch with cos/sin tables, offsets with no table, conjugate.
        {
            // Llama 3.1's scaling with accurate angles: the table kernel takes the host's
            // scaled frequencies, the no-table kernel an attention factor.
            const SinusoidalEmbeddings emb(32, std::nullopt, false, 500000.0, Pairing::HalfSplit,
                                           RopeScaling::llama3(8.0, 1.0, 4.0, 32), AngleMode::Accurate);
            const RotaryTables t = make_tables(set, emb, 64);
            Tensor ids({3, 1}, DType::Int32), offsets({3}, DType::Int64), cu({4}, DType::Int32);
            const int32_t id_values[] = {63, 0, 17}, cu_values[] = {0, 5, 5, 12};
            std::copy(id_values, id_values + 3, static_cast<int32_t *>(ids.data()));
            std::copy(cu_values, cu_values + 4, static_cast<int32_t *>(cu.data()));
            for (int64_t i = 0; i < 3; i++) static_cast<int64_t *>(offsets.data())[i] = 10 * i;
            const Tensor cos({64, 16}), sin({64, 16});
            fill_uniform(cos, rng);
            fill_uniform(sin, rng);
            const Tensor q = random_tensor({3, 4, 1, 32}, Layout::Contiguous, rng);
            const Tensor k = random_tensor({3, 2, 1, 32}, Layout::Contiguous, rng);
            const Tensor tokens = random_tensor({12, 4, 32}, Layout::Contiguous, rng);
            const Tensor inv_freq = emb.inv_freq();
            w.push_back({tag + "decode step with position ids", [&kernels, q, k, t, ids] {
                             const Tensor qo(q.shape()), ko(k.shape());
                             RotaryOptions options;
                             options.positions = Positions::ids(ids);
                             detail::apply_rotary_pos_emb(kernels, q, k, RotaryTable::angles(t.freqs), qo, ko, options);
                             return std::vector<Tensor>{qo, ko};
                         }});
            w.push_back({tag + "varlen cos/sin backward", [&kernels, tokens, cos, sin, cu] {
                             const Tensor out(tokens.shape());
                             RotaryOptions options;
                             options.positions = Positions::varlen(cu);
                             options.conjugate = true;
                             detail::apply_rotary_pos_emb(kernels, tokens, Tensor(), RotaryTable::cos_sin(cos, sin), out,
                                                          Tensor(), options);
                             return std::vector<Tensor>{out};
                         }});
            w.push_back({tag + "offsets, no table", [&kernels, q, k, inv_freq, offsets] {
                             const Tensor qo(q.shape()), ko(k.shape());
                             RotaryOptions options;
                             options.positions = Positions::offsets(offsets);
                             const RotaryTable table =
                                 RotaryTable::inv_freq(inv_freq, 0.5, AngleMode::Accurate).with_attention_factor(1.25);
                             detail::apply_rotary_pos_emb(kernels, q, k, table, qo, ko, options);
                             return std::vector<Tensor>{qo, ko};
                         }});
        }
        // The other switches: each storage type the set has, interleaved, partial rotary.
        for (DType dtype : element_types(set)) {
            const SinusoidalEmbeddings emb(16, 32.0, true, 10000.0, Pairing::Interleaved);
            const RotaryTables t = make_tables(set, emb, 90);
            const Tensor q = random_tensor({1, 3, 40, 24}, Layout::Contiguous, rng, dtype);
            const Tensor k = random_tensor({1, 2, 90, 24}, Layout::PaddedRows, rng, dtype);
            for (Stores stores : stores_choices(set)) {
                // Streaming also with one head per 1 KiB tile: chains of tiles per task.
                for (int heads_per_tile : stores == Stores::Streaming ? std::vector<int>{0, 1} : std::vector<int>{0}) {
                    w.push_back({tag + to_string(dtype) + " interleaved partial apply, stores " + to_string(stores) +
                                     " heads per tile " + std::to_string(heads_per_tile),
                                 [&kernels, q, k, t, stores, heads_per_tile] {
                                     const detail::ScopedStreamTiles tiles(heads_per_tile, heads_per_tile ? 1024 : 0);
                                     const Tensor qo(q.shape(), q.dtype()), ko(k.shape(), k.dtype());
                                     RotaryOptions options{Pairing::Interleaved, 16};
                                     options.stores = stores;
                                     detail::apply_rotary_pos_emb(kernels, q, k, t.freqs, t.scale, qo, ko, options);
                                     return std::vector<Tensor>{qo, ko};
                                 }});
                }
            }
        }
    }
    return w;
}

TEST(Concurrency, EveryOperationOnManyThreadsWhileTheThreadCountChanges) {
    const std::vector<Workload> work = workloads();
    const int before = set_num_threads(1);
    std::vector<std::vector<Tensor>> expected;
    for (const Workload &w : work) expected.push_back(w.run());
    set_num_threads(before);

    constexpr int kThreads = 8, kRounds = 20;
    std::atomic<bool> stop{false};
    std::thread changer([&] {
        for (int i = 0; !stop.load(); i++) set_num_threads(1 + i % 4);
    });
    std::atomic<int> mismatches{0}, wrong_errors{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; t++) {
        threads.emplace_back([&, t] {
            for (int round = 0; round < kRounds; round++) {
                for (size_t i = 0; i < work.size(); i++) {
                    const size_t which = (i * 7 + t * 3 + round) % work.size();
                    const std::vector<Tensor> got = work[which].run();
                    for (size_t o = 0; o < got.size(); o++) {
                        if (!bitwise_equal(got[o], expected[which][o])) {
                            mismatches++;
                            ADD_FAILURE() << work[which].name << " output " << o << " on thread " << t;
                        }
                    }
                    // A rejected call names its own argument, whatever the other threads do.
                    try {
                        rotate_half(Tensor({2, 2 * t + 3}));
                        wrong_errors++;
                    } catch (const Error &e) {
                        wrong_errors += std::string(e.what()).find("shape (2, " + std::to_string(2 * t + 3) + ")") ==
                                        std::string::npos;
                    }
                }
            }
        });
    }
    for (std::thread &t : threads) t.join();
    stop = true;
    changer.join();
    set_num_threads(before);
    EXPECT_EQ(mismatches.load(), 0);
    EXPECT_EQ(wrong_errors.load(), 0);
}

// Stores::Auto's first large call calibrates once per process: threads asking at once wait
// for that one calibration and all get its plan.
TEST(Concurrency, OneStorePlanCalibrationForManyThreads) {
    setenv("HELIX_PLAN_FILE", "none", 1);  // time it here, whatever an earlier run saved
    std::atomic<int> timed{0};
    std::vector<detail::StorePlan> plans(8);
    std::vector<std::thread> threads;
    for (size_t i = 0; i < plans.size(); i++) {
        threads.emplace_back([&, i] {
            plans[i] = detail::auto_store_plan(detail::PlanClass::Apply32, [&](const detail::StorePlan &p) {
                timed++;
                return p.stores == Stores::Ordinary ? 1.0 : 2.0;
            });
        });
    }
    for (std::thread &t : threads) t.join();
    const char *forced = std::getenv("HELIX_STORES");
    if (!forced || !*forced) {
        EXPECT_EQ(timed.load(), 6 * static_cast<int>(detail::store_plan_candidates(detail::PlanClass::Apply32).size()));
    }
    for (const detail::StorePlan &p : plans) EXPECT_EQ(p, plans[0]);
}

}  // namespace
}  // namespace helix::test
