// A decode step on the CPU costs the kernel and little else (helix.h's promise on
// apply_rotary_pos_emb): after a first call of its shape on a thread, a call makes no heap
// allocation (operator new, or Halide's malloc, which the kernels and tensors use) and
// wakes no thread of the pool (every task runs on the calling thread). Counted by hooks this
// binary installs for the whole process; positive controls prove the hooks see both.
#include "helix/helix.h"

#include <HalideRuntime.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

namespace {

std::atomic<bool> window_open{false};
std::atomic<int64_t> allocations{0}, pool_tasks{0};

void *counted(size_t bytes) {
    if (window_open.load(std::memory_order_relaxed)) allocations++;
    if (void *p = std::malloc(bytes ? bytes : 1)) return p;
    throw std::bad_alloc();
}

void *halide_counting_malloc(void *, size_t bytes) {
    if (window_open.load(std::memory_order_relaxed)) allocations++;
    // Halide's own malloc aligns to 128 bytes (its vector loads may assume it).
    return std::aligned_alloc(128, (bytes + 127) / 128 * 128);
}
void halide_counting_free(void *, void *p) { std::free(p); }

int counting_do_task(void *user_context, halide_task_t f, int idx, uint8_t *closure) {
    if (window_open.load(std::memory_order_relaxed)) pool_tasks++;
    return halide_default_do_task(user_context, f, idx, closure);
}

const bool hooks_installed = [] {
    halide_set_custom_malloc(halide_counting_malloc);
    halide_set_custom_free(halide_counting_free);
    halide_set_custom_do_task(counting_do_task);
    return true;
}();

// Counts what happens inside its lifetime.
struct Window {
    Window() {
        allocations = 0;
        pool_tasks = 0;
        window_open = true;
    }
    ~Window() { window_open = false; }
};

}  // namespace

void *operator new(size_t bytes) { return counted(bytes); }
void *operator new[](size_t bytes) { return counted(bytes); }
void operator delete(void *p) noexcept { std::free(p); }
void operator delete[](void *p) noexcept { std::free(p); }
void operator delete(void *p, size_t) noexcept { std::free(p); }
void operator delete[](void *p, size_t) noexcept { std::free(p); }

namespace helix {
namespace {

Tensor int32_scalar_ids(int32_t position) {
    Tensor ids({1, 1}, DType::Int32);
    *static_cast<int32_t *>(ids.data()) = position;
    return ids;
}

// One decode step, (1, 32, 1, 128) q and (1, 8, 1, 128) k at position p from position ids,
// in each table form and storage type, out of place and in place.
TEST(DecodeStep, AllocatesNothingAndRunsOnTheCallingThread) {
    ASSERT_TRUE(hooks_installed);
    set_num_threads(2);
    const int64_t n = 4096, d = 128, p = 4000;
    const SinusoidalEmbeddings emb(d, std::nullopt, false, 500000.0);
    const RotaryTables tables = emb.forward(n);
    const Tensor inv_freq = emb.inv_freq();
    const Tensor cos({n, d / 2}), sin({n, d / 2});
    const RotaryTable forms[] = {RotaryTable::angles(tables.freqs), RotaryTable::cos_sin(cos, sin),
                                 RotaryTable::inv_freq(inv_freq)};
    RotaryOptions options;
    options.positions = Positions::ids(int32_scalar_ids(p));
    for (DType dtype : kernel_element_types()) {
        const Tensor q({1, 32, 1, d}, dtype), k({1, 8, 1, d}, dtype);
        const Tensor q_out({1, 32, 1, d}, dtype), k_out({1, 8, 1, d}, dtype);
        for (const RotaryTable &table : forms) {
            for (bool in_place : {false, true}) {
                const Tensor &qo = in_place ? q : q_out, &ko = in_place ? k : k_out;
                apply_rotary_pos_emb(q, k, table, qo, ko, options);  // the first call of the shape
                Window window;
                for (int step = 0; step < 10; step++) apply_rotary_pos_emb(q, k, table, qo, ko, options);
                EXPECT_EQ(allocations.load(), 0) << to_string(dtype) << " " << to_string(table.form())
                                                 << (in_place ? " in place" : "");
                EXPECT_EQ(pool_tasks.load(), 0) << to_string(dtype) << " " << to_string(table.form());
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
        Window window;
        apply_rotary_pos_emb(q, k, forms[0], q, k, options);
        EXPECT_EQ(allocations.load(), 0) << to_string(positions.kind());
        EXPECT_EQ(pool_tasks.load(), 0) << to_string(positions.kind());
    }
}

// The hooks see what they count: an allocation, and the pool's tasks of a prefill-sized call.
TEST(DecodeStep, TheHooksSeeAllocationsAndPoolTasks) {
    set_num_threads(2);
    {
        Window window;
        std::vector<int> v(3);
        EXPECT_GT(allocations.load(), 0);
    }
    const SinusoidalEmbeddings emb(128);
    const RotaryTables tables = emb.forward(1024);
    const Tensor q({1, 32, 1024, 128}), k({1, 8, 1024, 128});
    Window window;
    apply_rotary_pos_emb(q, k, tables.freqs, {}, q, k);
    EXPECT_GT(pool_tasks.load(), 0);
}

}  // namespace
}  // namespace helix
