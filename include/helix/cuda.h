// CUDA specifics of helix::helix_cuda. Tensors on Device::CUDA live in device memory;
// the kernels run there with no host round trip, and copies are explicit (Tensor::to,
// Tensor::copy_from, Tensor::wrap_device for existing CUdeviceptr memory).
//
// Which CUDA context and stream a helix call uses is decided when the call starts and
// travels with it (as Halide's user_context) to every launch, copy and allocation it
// makes: the innermost ScopedContext of the calling thread, else the process-wide
// default of set_context, else Halide's own context and its default stream. Contexts and
// streams are passed as void * (a CUcontext, a CUstream) so this header needs no CUDA headers.
#pragma once

namespace helix::cuda {

// The process-wide default: helix's CUDA calls run in cu_context on cu_stream (nullptr =
// the context's default stream), as PyTorch or any CUDA runtime code would share theirs.
// set_context(nullptr) returns to Halide's own context. Safe to call while other threads
// run helix calls: each call sees the old default or the new one, never a mix.
void set_context(void *cu_context, void *cu_stream = nullptr);

// For the helix calls this thread makes while the guard lives: cu_context and cu_stream
// (for callers whose current stream is per thread, as PyTorch's is). Guards nest; the
// destructor restores what was in force before; a null cu_context defers to the default.
// Not copyable; destroy it on the thread that made it.
class ScopedContext {
public:
    explicit ScopedContext(void *cu_context, void *cu_stream = nullptr);
    ~ScopedContext();
    ScopedContext(const ScopedContext &) = delete;
    ScopedContext &operator=(const ScopedContext &) = delete;

private:
    void *outer_context_, *outer_stream_;  // what was in force on this thread before
};

}  // namespace helix::cuda
