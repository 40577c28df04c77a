// CUDA specifics of helix::helix_cuda. Tensors on Device::CUDA live in device memory;
// the kernels run there with no host round trip, and copies are explicit (Tensor::to,
// Tensor::copy_from, Tensor::wrap_device for existing CUdeviceptr memory).
#pragma once

namespace helix::cuda {

// Runs helix's CUDA kernels and copies in the caller's context (a CUcontext) on the
// caller's stream (a CUstream; nullptr = the context's default stream), as PyTorch or
// any CUDA runtime code would share theirs. set_context(nullptr) returns to Halide's own
// context. Both are passed as void * so this header needs no CUDA headers.
void set_context(void *cu_context, void *cu_stream = nullptr);

}  // namespace helix::cuda
