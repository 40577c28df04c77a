// Whether strided tensors share memory, decided on elements rather than byte ranges
// (SPEC section 3): two outputs that interleave without a common element are fine, an
// output with a stride-0 (or otherwise self-overlapping) dimension is not. Both questions
// are bounded linear Diophantine problems (as in NumPy's shares_memory): exact, with a
// work limit past which the answer is Unknown (callers then treat it as overlap).
#pragma once

#include <cstdint>
#include <vector>

namespace helix::detail {

// The bytes of a tensor: elements of `bytes` bytes at base + sum_i stride_i * x_i,
// 0 <= x_i < extent_i, all in bytes, in one allocation.
struct MemoryLayout {
    struct Dim {
        int64_t extent, stride;
    };
    uint64_t allocation = 0;
    __int128 base = 0;
    int64_t bytes = 1;
    std::vector<Dim> dims;
};

enum class Overlap { No, Yes, Unknown };

// Default work limit: enough for any layout helix's operations produce (nested strides
// need a handful of steps per dimension), small enough to stay well below a millisecond.
constexpr int64_t kOverlapWork = 1 << 16;

// Whether some byte belongs to an element of a and to an element of b.
Overlap shares_memory(const MemoryLayout &a, const MemoryLayout &b, int64_t max_work = kOverlapWork);
// Whether two different elements of a share a byte.
Overlap overlaps_itself(const MemoryLayout &a, int64_t max_work = kOverlapWork);

}  // namespace helix::detail
