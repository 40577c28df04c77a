// helix::cuda::set_context and ScopedContext through the hooks Halide's CUDA runtime
// offers (halide_set_cuda_acquire_context / _release_context / _get_stream). Every helix
// call carries its context and stream in its user_context (CallContext, fixed when the
// call starts); the hooks read them there, so threads with different streams never
// share state. Without a caller context the hooks hand over to Halide's own defaults,
// called by name: nothing has to be saved from the setters (no window in which a hook
// could call a function pointer not yet stored).
#include "helix/cuda.h"

#include "error.h"

#include <HalideRuntimeCuda.h>

#include <cstdint>
#include <mutex>

extern "C" {
// Halide's runtime defines these (weak) and calls them unless a hook replaces them.
int halide_default_cuda_acquire_context(void *user_context, void **ctx, bool create);
int halide_default_cuda_release_context(void *user_context);
int halide_default_cuda_get_stream(void *user_context, void *ctx, void **stream);
}

namespace helix::cuda {
namespace {

using detail::GpuContext;

// The context of a Halide call: a helix call's own, or (for Halide calls outside one, such
// as a buffer freeing its device memory, user_context nullptr) what is in force now.
GpuContext caller_context(void *user_context) {
    if (const detail::CallContext *call = detail::CallContext::from(user_context)) return call->gpu_context();
    return detail::current_gpu_context();
}

// Which acquisitions of this thread were the caller's context (release must match its
// acquire even if the default changes in between): a bit stack, nested calls are shallow.
thread_local uint64_t caller_acquired = 0;
thread_local int acquire_depth = 0;

int acquire(void *user_context, void **ctx, bool create) {
    const GpuContext g = caller_context(user_context);
    if (acquire_depth < 64) caller_acquired = (caller_acquired & ~(uint64_t(1) << acquire_depth)) |
                                              (uint64_t(g.context != nullptr) << acquire_depth);
    acquire_depth++;
    if (g.context) {
        *ctx = g.context;
        return 0;
    }
    return halide_default_cuda_acquire_context(user_context, ctx, create);
}

int release(void *user_context) {
    const int depth = --acquire_depth;
    const bool ours = depth < 64 ? (caller_acquired >> depth) & 1 : false;
    return ours ? 0 : halide_default_cuda_release_context(user_context);
}

// Halide asks for the stream of the context it acquired: the caller's stream goes with
// the caller's context only.
int get_stream(void *user_context, void *ctx, void **stream) {
    const GpuContext g = caller_context(user_context);
    if (g.context && g.context == ctx) {
        *stream = g.stream;
        return 0;
    }
    return halide_default_cuda_get_stream(user_context, ctx, stream);
}

void install_hooks() {
    static std::once_flag once;
    std::call_once(once, [] {
        halide_set_cuda_acquire_context(acquire);
        halide_set_cuda_release_context(release);
        halide_set_cuda_get_stream(get_stream);
    });
}

}  // namespace

void set_context(void *cu_context, void *cu_stream) {
    install_hooks();
    detail::set_default_gpu_context({cu_context, cu_stream});
}

ScopedContext::ScopedContext(void *cu_context, void *cu_stream) {
    install_hooks();
    const GpuContext outer = detail::exchange_thread_gpu_context({cu_context, cu_stream});
    outer_context_ = outer.context;
    outer_stream_ = outer.stream;
}

ScopedContext::~ScopedContext() { detail::exchange_thread_gpu_context({outer_context_, outer_stream_}); }

}  // namespace helix::cuda
