// helix::cuda::set_context through the hooks Halide's CUDA runtime offers
// (halide_set_cuda_acquire_context / _release_context / _get_stream).
#include "helix/cuda.h"

#include <HalideRuntimeCuda.h>

#include <mutex>

namespace helix::cuda {
namespace {

std::mutex mutex;
void *user_context_handle = nullptr;
void *user_stream = nullptr;
bool installed = false;
halide_cuda_acquire_context_t halide_acquire = nullptr;
halide_cuda_release_context_t halide_release = nullptr;
halide_cuda_get_stream_t halide_get_stream = nullptr;

int acquire(void *user_context, void **ctx, bool create) {
    if (user_context_handle) {
        *ctx = user_context_handle;
        return 0;
    }
    return halide_acquire(user_context, ctx, create);
}

int release(void *user_context) { return user_context_handle ? 0 : halide_release(user_context); }

int get_stream(void *user_context, void *ctx, void **stream) {
    if (user_context_handle) {
        *stream = user_stream;
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
    user_context_handle = cu_context;
    user_stream = cu_context ? cu_stream : nullptr;
}

}  // namespace helix::cuda
