// A decode step on the CPU costs the kernel and little else (helix.h's promise on
// apply_rotary_pos_emb): after a first call of its shape on a thread, a call makes no heap
// allocation (malloc and its kin, which operator new and Halide's default allocator call:
// this binary replaces them with counting ones) and wakes no thread of the pool (every
// Halide task runs on the calling thread). Positive controls prove the counters see both.
#include "helix/helix.h"

#include <HalideRuntime.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <string>
#include <vector>

extern "C" {
void *__libc_malloc(size_t);
void *__libc_calloc(size_t, size_t);
void *__libc_realloc(void *, size_t);
void *__libc_memalign(size_t, size_t);
void __libc_free(void *);
}

namespace {

std::atomic<bool> window_open{false};
std::atomic<int64_t> allocations{0}, pool_tasks{0};

void count() {
    if (window_open.load(std::memory_order_relaxed)) allocations++;
}

int counting_do_task(void *user_context, halide_task_t f, int idx, uint8_t *closure) {
    if (window_open.load(std::memory_order_relaxed)) pool_tasks++;
    return halide_default_do_task(user_context, f, idx, closure);
}

const bool hooks_installed = [] {
    halide_set_custom_do_task(counting_do_task);
    return true;
}();

// What happens while f runs.
struct Counts {
    int64_t allocations, pool_tasks;
};

template <typename F>
Counts counted_over(F &&f) {
    allocations = pool_tasks = 0;
    window_open = true;
    f();
    window_open = false;
    return {allocations.load(), pool_tasks.load()};
}

}  // namespace

extern "C" {
void *malloc(size_t bytes) {
    count();
    return __libc_malloc(bytes);
}
void *calloc(size_t n, size_t bytes) {
    count();
    return __libc_calloc(n, bytes);
}
void *realloc(void *p, size_t bytes) {
    count();
    return __libc_realloc(p, bytes);
}
void *memalign(size_t alignment, size_t bytes) {
    count();
    return __libc_memalign(alignment, bytes);
}
void *aligned_alloc(size_t alignment, size_t bytes) {
    count();
    return __libc_memalign(alignment, bytes);
}
int posix_memalign(void **p, size_t alignment, size_t bytes) {
    count();
    *p = __libc_memalign(alignment, bytes);
    return *p ? 0 : ENOMEM;
}
void free(void *p) { __libc_free(p); }
}

namespace helix {
namespace {

Tensor int32_scalar_ids(int32_t position) {
    Tensor ids({1, 1}, DType::Int32);
    *static_cast<int32_t *>(ids.data()) = position;
    return ids;
}

// One decode step, (1, 32, 1, 128) q and (1, 8, 1, 128) k at position p from position ids,
// in each table form (and no-table with xPos) and storage type, out of place and in place.
TEST(DecodeStep, AllocatesNothingAndRunsOnTheCallingThread) {
    ASSERT_TRUE(hooks_installed);
    set_num_threads(2);
    const int64_t n = 4096, d = 128, p = 4000;
    const SinusoidalEmbeddings emb(d, std::nullopt, false, 500000.0);
    const RotaryTables tables = emb.forward(n);
    const Tensor inv_freq = emb.inv_freq();
    const Tensor cos({n, d / 2}), sin({n, d / 2});
    const SinusoidalEmbeddings xpos(d, 512.0, true, 500000.0);
    const RotaryTable forms[] = {RotaryTable::angles(tables.freqs), RotaryTable::cos_sin(cos, sin),
                                 RotaryTable::inv_freq(inv_freq), RotaryTable::inv_freq(xpos, n)};
    RotaryOptions options;
    options.positions = Positions::ids(int32_scalar_ids(p));
    for (DType dtype : kernel_element_types()) {
        const Tensor q({1, 32, 1, d}, dtype), k({1, 8, 1, d}, dtype);
        const Tensor q_out({1, 32, 1, d}, dtype), k_out({1, 8, 1, d}, dtype);
        for (const RotaryTable &table : forms) {
            for (bool in_place : {false, true}) {
                const Tensor &qo = in_place ? q : q_out, &ko = in_place ? k : k_out;
                apply_rotary_pos_emb(q, k, table, qo, ko, options);  // the first call of the shape
                const Counts counts = counted_over([&] {
                    for (int step = 0; step < 10; step++) apply_rotary_pos_emb(q, k, table, qo, ko, options);
                });
                const std::string what = to_string(dtype) + " " + to_string(table.form()) + (in_place ? " in place" : "");
                EXPECT_EQ(counts.allocations, 0) << what;
                EXPECT_EQ(counts.pool_tasks, 0) << what;
            }
        }
    }
    // A start offset and int32 per-sequence offsets are free too.
    const Tensor q({1, 32, 1, d}), k({1, 8, 1, d});
    Tensor offsets({1}, DType::Int32);
    *static_cast<int32_t *>(offsets.data()) = p;
    for (const Positions &positions : {Positions::start(p), Positions::offsets(offsets)}) {
        options.positions = positions;
        apply_rotary_pos_emb(q, k, forms[0], q, k, options);
        const Counts counts = counted_over([&] { apply_rotary_pos_emb(q, k, forms[0], q, k, options); });
        EXPECT_EQ(counts.allocations, 0) << to_string(positions.kind());
        EXPECT_EQ(counts.pool_tasks, 0) << to_string(positions.kind());
    }
}

// rotate_half of a decode step's q runs on the calling thread too.
TEST(DecodeStep, RotateHalfOfADecodeStepRunsOnTheCallingThread) {
    set_num_threads(2);
    const Tensor q({1, 32, 1, 128});
    rotate_half(q, q);
    EXPECT_EQ(counted_over([&] { rotate_half(q, q); }).pool_tasks, 0);
    const Tensor big({1, 32, 1024, 128});  // and a prefill's does use the pool (the hook's control)
    EXPECT_GT(counted_over([&] { rotate_half(big, big); }).pool_tasks, 0);
}

// The hooks see what they count: an allocation, and the pool's tasks of a prefill-sized call.
TEST(DecodeStep, TheHooksSeeAllocationsAndPoolTasks) {
    set_num_threads(2);
    const Counts made = counted_over([] {
        std::vector<int> v(3);
        const Tensor t({64, 64});
    });
    EXPECT_GT(made.allocations, 2);  // the vector's and the tensor's
    const SinusoidalEmbeddings emb(128);
    const RotaryTables tables = emb.forward(1024);
    const Tensor q({1, 32, 1024, 128}), k({1, 8, 1024, 128});
    EXPECT_GT(counted_over([&] { apply_rotary_pos_emb(q, k, tables.freqs, {}, q, k); }).pool_tasks, 0);
}

// Large outputs run on the thread pool, but their kernels' per-vector temporaries (the pair
// of a vector, computed before its two stores) live on the stack: a heap allocation per
// vector made rotate_half 7x slower (found by the bench; its pair was bounded over a range of
// heads through a fused task index: 32770 allocations a call here). rotate_half and
// apply_rotary of (1, 8, 512, 128): 8192 vectors per call; the allocations allowed are the
// tasks' own (apply's coefficient tiles: two per 16-row task, 66 a call).
TEST(LargeOutputs, NoHeapAllocationPerVector) {
    ASSERT_TRUE(hooks_installed);
    const Tensor x({1, 8, 512, 128}), out({1, 8, 512, 128});
    const RotaryTables tables = SinusoidalEmbeddings(128).forward(512);
    for (DType dtype : kernel_element_types()) {
        const Tensor xd(x.shape(), dtype), od(x.shape(), dtype);
        rotate_half(xd, od);
        const Counts rh = counted_over([&] { rotate_half(xd, od); });
        EXPECT_LE(rh.allocations, 128) << "rotate_half " << to_string(dtype);
        RotaryOptions ordinary;
        ordinary.stores = Stores::Ordinary;
        apply_rotary_pos_emb(xd, Tensor(), RotaryTable::angles(tables.freqs), od, Tensor(), ordinary);
        const Counts apply = counted_over(
            [&] { apply_rotary_pos_emb(xd, Tensor(), RotaryTable::angles(tables.freqs), od, Tensor(), ordinary); });
        EXPECT_LE(apply.allocations, 128) << "apply_rotary " << to_string(dtype);
    }
}

}  // namespace
}  // namespace helix
