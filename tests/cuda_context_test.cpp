// helix::cuda::set_context and ScopedContext, through the hooks Halide's CUDA runtime
// calls (halide_cuda_acquire_context, _get_stream, _release_context). No GPU is needed:
// with a caller context the hooks never reach the driver, so the contexts and streams
// here are distinct fake handles. Many threads at once, each with its own stream, while
// another thread swaps the process-wide default: every call must see its own pair whole
// (this binary also runs under ThreadSanitizer).
#include "helix/cuda.h"

#include "error.h"

#include <HalideRuntimeCuda.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

// The entry points Halide's CUDA runtime calls around every launch, copy and allocation
// (defined in the runtime, not declared by its headers); they run the hooks.
extern "C" {
int halide_cuda_acquire_context(void *user_context, void **ctx, bool create);
int halide_cuda_release_context(void *user_context);
int halide_cuda_get_stream(void *user_context, void *ctx, void **stream);
}

namespace helix::test {
namespace {

void *handle(uintptr_t v) { return reinterpret_cast<void *>(v); }

// The (context, stream) Halide's runtime gets for a call with this user_context.
std::pair<void *, void *> seen_by_halide(void *user_context) {
    void *ctx = nullptr, *stream = nullptr;
    EXPECT_EQ(halide_cuda_acquire_context(user_context, &ctx, false), 0);
    EXPECT_EQ(halide_cuda_get_stream(user_context, ctx, &stream), 0);
    EXPECT_EQ(halide_cuda_release_context(user_context), 0);
    return {ctx, stream};
}

class CudaContext : public ::testing::Test {
protected:
    void TearDown() override { cuda::set_context(nullptr); }
};

TEST_F(CudaContext, TheDefaultReachesEveryCall) {
    cuda::set_context(handle(0x1000), handle(0x1001));
    detail::CallContext call;
    EXPECT_EQ(seen_by_halide(&call), std::make_pair(handle(0x1000), handle(0x1001)));
    // Halide calls outside a helix call (a buffer freeing its memory) see it too.
    EXPECT_EQ(seen_by_halide(nullptr), std::make_pair(handle(0x1000), handle(0x1001)));
}

TEST_F(CudaContext, ScopedContextsNestAndRestore) {
    cuda::set_context(handle(0x1000), handle(0x1001));
    {
        cuda::ScopedContext outer(handle(0x2000), handle(0x2001));
        detail::CallContext in_outer;
        {
            cuda::ScopedContext inner(handle(0x3000), handle(0x3001));
            detail::CallContext in_inner;
            EXPECT_EQ(seen_by_halide(&in_inner), std::make_pair(handle(0x3000), handle(0x3001)));
        }
        EXPECT_EQ(seen_by_halide(&in_outer), std::make_pair(handle(0x2000), handle(0x2001)));
        detail::CallContext after_inner;
        EXPECT_EQ(seen_by_halide(&after_inner), std::make_pair(handle(0x2000), handle(0x2001)));
    }
    detail::CallContext after;
    EXPECT_EQ(seen_by_halide(&after), std::make_pair(handle(0x1000), handle(0x1001)));
}

// A call keeps the context it started with, whatever happens on its thread meanwhile.
TEST_F(CudaContext, ACallKeepsTheContextItStartedWith) {
    std::unique_ptr<detail::CallContext> call;
    {
        cuda::ScopedContext scope(handle(0x4000), handle(0x4001));
        call = std::make_unique<detail::CallContext>();
    }
    cuda::set_context(handle(0x5000), handle(0x5001));
    EXPECT_EQ(seen_by_halide(call.get()), std::make_pair(handle(0x4000), handle(0x4001)));
}

// The stream goes with its context only: another context gets Halide's own stream logic.
TEST_F(CudaContext, TheStreamBelongsToItsContext) {
    cuda::ScopedContext scope(handle(0x6000), handle(0x6001));
    detail::CallContext call;
    void *stream = handle(0xdead);
    EXPECT_EQ(halide_cuda_get_stream(&call, handle(0x6000), &stream), 0);
    EXPECT_EQ(stream, handle(0x6001));
}

TEST_F(CudaContext, ThreadsWithTheirOwnStreamsWhileTheDefaultChanges) {
    constexpr int kThreads = 8, kCalls = 2000;
    std::atomic<bool> stop{false};
    cuda::set_context(handle(0x10000), handle(0x10001));
    std::thread changer([&] {
        for (uintptr_t i = 0; !stop.load(); i++) cuda::set_context(handle(0x10000 + 2 * (i % 16)), handle(0x10001 + 2 * (i % 16)));
    });
    std::vector<std::thread> threads;
    std::atomic<int> mismatches{0};
    for (int t = 0; t < kThreads; t++) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < kCalls; i++) {
                if (t % 2) {  // odd threads: a stream of their own
                    cuda::ScopedContext scope(handle(0x100 * (t + 1)), handle(0x100 * (t + 1) + 1));
                    detail::CallContext call;
                    const auto [ctx, stream] = seen_by_halide(&call);
                    mismatches += ctx != handle(0x100 * (t + 1)) || stream != handle(0x100 * (t + 1) + 1);
                } else {  // even threads: the default, whichever it is, but whole
                    detail::CallContext call;
                    const auto [ctx, stream] = seen_by_halide(&call);
                    const uintptr_t c = reinterpret_cast<uintptr_t>(ctx), s = reinterpret_cast<uintptr_t>(stream);
                    mismatches += c == 0 ? 0 : (s != c + 1);
                }
            }
        });
    }
    for (std::thread &t : threads) t.join();
    stop = true;
    changer.join();
    EXPECT_EQ(mismatches.load(), 0);
}

}  // namespace
}  // namespace helix::test
