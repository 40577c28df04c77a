// Fault injection through the public API: allocation failures (a halide_malloc that fails
// on demand, which also backs Tensor's host memory) and Halide runtime errors injected
// into the thread pool (a halide_do_par_for that fails on demand). Each must surface as
// helix::Error with the runtime's message, leave the outputs untouched where the failure
// precedes every write (see the README's Reliability section), leak nothing (this binary
// also runs under AddressSanitizer's leak checker) and leave helix working for the next call.
#include "test_util.h"

#include <HalideRuntime.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <functional>
#include <vector>

namespace helix::test {
namespace {

// Allocation faults: fail every allocation, or only the n-th from now (1-based).
std::atomic<bool> fail_all_mallocs{false};
std::atomic<int> mallocs_until_failure{0};
std::atomic<int> mallocs_seen{0};

void *injected_malloc(void *user_context, size_t bytes) {
    mallocs_seen++;
    if (fail_all_mallocs.load() || mallocs_until_failure.fetch_sub(1) == 1) return nullptr;
    return halide_default_malloc(user_context, bytes);
}

// Runtime errors in the thread pool: the n-th parallel loop from now fails before it runs
// a task, reporting through halide_error as the runtime does.
std::atomic<int> par_fors_until_failure{0};

int injected_do_par_for(void *user_context, halide_task_t task, int min, int size, uint8_t *closure) {
    if (par_fors_until_failure.fetch_sub(1) == 1) {
        halide_error(user_context, "injected failure of halide_do_par_for");
        return halide_error_code_generic_error;
    }
    return halide_default_do_par_for(user_context, task, min, size, closure);
}

class Faults : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        halide_set_custom_malloc(injected_malloc);
        halide_set_custom_do_par_for(injected_do_par_for);
    }
    static void TearDownTestSuite() {
        halide_set_custom_malloc(halide_default_malloc);
        halide_set_custom_do_par_for(halide_default_do_par_for);
    }
    void TearDown() override {
        fail_all_mallocs = false;
        mallocs_until_failure = 0;
        par_fors_until_failure = 0;
    }
};

void fill(const Tensor &t, float v) { Halide::Runtime::Buffer<float>(t.to_halide()).fill(v); }
bool all_equal(const Tensor &t, float v) {
    bool same = true;
    ref::for_each_index(t.shape(), [&](const std::vector<int64_t> &idx) { same &= ref::element(t, idx) == v; });
    return same;
}

template <typename F>
std::string error_of(F &&call) {
    try {
        call();
    } catch (const Error &e) {
        return e.what();
    }
    return "";
}

// The operations of one test: big enough for parallel loops and heap allocations (d 512:
// apply_rotary's coefficient tiles, 32 KiB, are past Halide's 16 KiB pseudostack).
struct Calls {
    std::mt19937 rng{12};
    SinusoidalEmbeddings emb{512, 256.0, true};
    RotaryTables t = emb.forward(512);
    Tensor q = random_tensor({1, 4, 512, 512}, Layout::Contiguous, rng);
    Tensor k = random_tensor({1, 2, 512, 512}, Layout::Contiguous, rng);
    Tensor q_out{q.shape()}, k_out{k.shape()}, freqs{t.freqs.shape()}, scale{t.scale.shape()}, r_out{q.shape()};

    void apply() const { apply_rotary_pos_emb(q, k, t.freqs, t.scale, q_out, k_out); }
    void tables() const { emb.forward(512, freqs, scale); }
    void rotate() const { rotate_half(q, r_out); }
    void mark_outputs() const {
        for (const Tensor *o : {&q_out, &k_out, &freqs, &scale, &r_out}) fill(*o, -7.0f);
    }
    bool outputs_untouched() const {
        bool untouched = true;
        for (const Tensor *o : {&q_out, &k_out, &freqs, &scale, &r_out}) untouched &= all_equal(*o, -7.0f);
        return untouched;
    }
    void check_results() const {
        check_rotation(q, q_out, t.freqs, t.scale, false, 4e-6, "q' after a fault");
        check_rotation(k, k_out, t.freqs, t.scale, true, 4e-6, "k' after a fault");
    }
};

TEST_F(Faults, TensorAllocationFailureIsAnError) {
    fail_all_mallocs = true;
    const std::string message = error_of([] { Tensor t({1024, 1024}); });
    fail_all_mallocs = false;
    EXPECT_NE(message.find("helix::Tensor: could not allocate"), std::string::npos) << message;
    EXPECT_NE(message.find("bytes of host memory"), std::string::npos) << message;
    const Tensor t({1024, 1024});  // and the next one works
    EXPECT_EQ(t.at({1023, 1023}), 0.0f);
}

// Every allocation inside the kernels fails: each call is an Error naming the runtime's
// out-of-memory message, nothing is written (every task fails before its first write),
// and the same calls then succeed with the right values.
TEST_F(Faults, KernelAllocationFailuresAreErrorsAndWriteNothing) {
    const Calls c;
    c.mark_outputs();
    mallocs_seen = 0;
    fail_all_mallocs = true;
    const std::string apply_error = error_of([&] { c.apply(); });
    const std::string table_error = error_of([&] { c.tables(); });
    fail_all_mallocs = false;
    ASSERT_GT(mallocs_seen.load(), 0) << "the kernels allocated nothing: this test would test nothing";
    EXPECT_NE(apply_error.find("helix::apply_rotary_pos_emb: Halide runtime error"), std::string::npos) << apply_error;
    EXPECT_NE(apply_error.find("Out of memory"), std::string::npos) << apply_error;
    EXPECT_TRUE(c.outputs_untouched());
    c.apply();
    c.tables();
    c.check_results();
}

// The n-th allocation of a call fails, for every n the call makes: an Error each time (a
// parallel kernel may have written part of its outputs by then), then the call works.
TEST_F(Faults, EachSingleAllocationFailureIsAnError) {
    const Calls c;
    mallocs_seen = 0;
    c.apply();
    const int per_call = mallocs_seen.load();
    ASSERT_GT(per_call, 0);
    for (int n = 1; n <= per_call; n++) {
        mallocs_until_failure = n;
        const std::string message = error_of([&] { c.apply(); });
        mallocs_until_failure = 0;
        EXPECT_NE(message.find("Out of memory"), std::string::npos) << "allocation " << n << ": " << message;
    }
    c.apply();
    c.check_results();
}

// The decode kernels (small CPU outputs whose rotary part has at most the kernel table's
// decode_max_pairs pairs) are built without Halide's argument checks, which is safe only
// because they allocate nothing (tests/check_decode_objects.cmake checks their objects):
// with every allocation failing, a decode step still runs, right, in each table form (the
// no-table one in fp32 and accurate angles, with xPos too), pairing and storage type, at d
// = 6 and 2 * max - 2 (a vector tail), 128 and 2 * max. One pair wider, the checked kernel
// takes it, and its allocation's failure is the error.
TEST_F(Faults, DecodeKernelsAllocateNothing) {
    const int64_t max_pairs = detail::tuned_kernels().typed.at(0).decode_max_pairs;
    ASSERT_GT(max_pairs, 0) << "the tuned set has no decode kernels";
    std::mt19937 rng(3);
    for (const int64_t d : {int64_t(6), int64_t(128), 2 * max_pairs - 2, 2 * max_pairs, 2 * max_pairs + 2}) {
        for (Pairing pairing : {Pairing::HalfSplit, Pairing::Interleaved}) {
            // Two table rows; the step's one row at position 1 (start(1)).
            const SinusoidalEmbeddings emb(d, std::nullopt, false, 10000.0, pairing);
            const SinusoidalEmbeddings accurate(d, std::nullopt, false, 10000.0, pairing, {}, AngleMode::Accurate);
            const SinusoidalEmbeddings xpos(d, 64.0, true, 10000.0, pairing);
            const RotaryTables t = emb.forward(2), tx = xpos.forward(2);
            const Tensor cos({2, d / 2}), sin({2, d / 2});
            for (int64_t r = 0; r < 2; r++) {
                for (int64_t i = 0; i < d / 2; i++) {  // pair i's angle: feature i or 2i of the table
                    const double angle = t.freqs.at({r, pairing == Pairing::HalfSplit ? i : 2 * i});
                    cos.at({r, i}) = static_cast<float>(std::cos(angle));
                    sin.at({r, i}) = static_cast<float>(std::sin(angle));
                }
            }
            RotaryOptions options;
            options.pairing = pairing;
            options.positions = Positions::start(1);
            struct Case {
                RotaryTable table;
                const RotaryTables &expected;
            };
            const Case cases[] = {{RotaryTable::angles(t.freqs), t},
                                  {RotaryTable::cos_sin(cos, sin), t},
                                  {RotaryTable::inv_freq(emb.inv_freq()), t},
                                  {RotaryTable::inv_freq(accurate, 2), t},
                                  {RotaryTable::inv_freq(xpos, 2), tx}};
            for (DType dtype : kernel_element_types()) {
                if (!detail::tuned_kernels().find(dtype, pairing)) continue;
                const Tensor q = random_tensor({1, 4, 1, d}, Layout::Contiguous, rng, dtype);
                const Tensor k = random_tensor({1, 2, 1, d}, Layout::Contiguous, rng, dtype);
                const Tensor q_out(q.shape(), dtype), k_out(k.shape(), dtype);
                for (const Case &c : cases) {
                    const std::string what = "d " + std::to_string(d) + " " + to_string(pairing) + " " +
                                             to_string(dtype) + " " + to_string(c.table.form());
                    fail_all_mallocs = true;
                    const std::string message =
                        error_of([&] { apply_rotary_pos_emb(q, k, c.table, q_out, k_out, options); });
                    fail_all_mallocs = false;
                    if (d / 2 > max_pairs) {
                        EXPECT_NE(message.find("Out of memory"), std::string::npos) << what << ": " << message;
                        continue;
                    }
                    ASSERT_EQ(message, "") << what;
                    const Scale scale = c.expected.scale.numel() > 1 ? Scale(c.expected.scale) : Scale();
                    check_rotation(q, q_out, c.expected.freqs, scale, false, 4e-6, "q' " + what, options);
                    check_rotation(k, k_out, c.expected.freqs, scale, true, 4e-6, "k' " + what, options);
                }
            }
        }
    }
}

// A runtime error injected into the first parallel loop of each operation: an Error with
// that message through the public API, outputs untouched, and the next call works.
TEST_F(Faults, RuntimeErrorsMidCallAreErrorsAndWriteNothing) {
    const Calls c;
    c.mark_outputs();
    struct Case {
        const char *op;
        std::function<void()> call;
    };
    for (const Case &op : {Case{"apply_rotary_pos_emb", [&] { c.apply(); }}, Case{"rotate_half", [&] { c.rotate(); }},
                           Case{"SinusoidalEmbeddings(use_xpos)", [&] { c.tables(); }}}) {
        par_fors_until_failure = 1;
        const std::string message = error_of(op.call);
        EXPECT_LE(par_fors_until_failure.load(), 0) << op.op << " ran no parallel loop: nothing was injected";
        par_fors_until_failure = 0;
        EXPECT_NE(message.find(std::string("helix::") + op.op + ": Halide runtime error"), std::string::npos) << message;
        EXPECT_NE(message.find("injected failure of halide_do_par_for"), std::string::npos) << message;
        EXPECT_TRUE(c.outputs_untouched()) << op.op;
    }
    c.apply();
    c.check_results();
    c.rotate();
    EXPECT_EQ(c.r_out.at({0, 1, 2, 3}), -c.q.at({0, 1, 2, 259}));
}

}  // namespace
}  // namespace helix::test
