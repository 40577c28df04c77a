// DLPack tensors as helix tensors: the one conversion (and its messages) behind the C ABI
// (runtime/c_api.cpp) and the Python extension (python/src/helix_module.cpp).
#pragma once

#include "helix/helix.h"

#include <dlpack/dlpack.h>

namespace helix::detail {

// A view of t's memory (undefined for nullptr): dtype float32, float16, bfloat16, int32 or
// int64, device kDLCPU or kDLCUDA, byte_offset honoured, strides in elements (NULL:
// contiguous). Anything else is an Error "helix: <name>: expected ..., given ...".
Tensor from_dlpack(const char *name, const DLTensor *t);

}  // namespace helix::detail
