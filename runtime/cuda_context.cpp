// helix::cuda::set_context through the hooks Halide's CUDA runtime offers
// (halide_set_cuda_acquire_context / _release_context / _get_stream).
#include "helix/cuda.h"

#include <HalideRuntimeCuda.h>

#include <atomic>
#include <list>
#include <mutex>

namespace helix::cuda {
namespace {

// The caller's (context, stream), swapped as one immutable pair so a kernel launched
// while set_context runs sees either the old pair or the new one, never a mix. Pairs
// are kept for the life of the process (set_context is called rarely).
struct Pair {
    void *context, *stream;
};
std::mutex mutex;
std::list<Pair> pairs;
std::atomic<const Pair *> current{nullptr};
bool installed = false;
halide_cuda_acquire_context_t halide_acquire = nullptr;
halide_cuda_release_context_t halide_release = nullptr;
halide_cuda_get_stream_t halide_get_stream = nullptr;

int acquire(void *user_context, void **ctx, bool create) {
    if (const Pair *p = current.load()) {
        *ctx = p->context;
        return 0;
    }
    return halide_acquire(user_context, ctx, create);
}

int release(void *user_context) { return current.load() ? 0 : halide_release(user_context); }

// Halide asks for the stream of the context it acquired: the caller's stream goes with
// the caller's context only.
int get_stream(void *user_context, void *ctx, void **stream) {
    const Pair *p = current.load();
    if (p && p->context == ctx) {
        *stream = p->stream;
        return 0;
    }
    return halide_get_stream(user_context, ctx, stream);
}

}  // namespace

void set_context(void *cu_context, void *cu_stream) {
    std::lock_guard<std::mutex> lock(mutex);
    if (!installed) {
        halide_acquire = halide_set_cuda_acquire_context(acquire);
        halide_release = halide_set_cuda_release_context(release);
        halide_get_stream = halide_set_cuda_get_stream(get_stream);
        installed = true;
    }
    if (cu_context) {
        pairs.push_back({cu_context, cu_stream});
        current.store(&pairs.back());
    } else {
        current.store(nullptr);
    }
}

}  // namespace helix::cuda
