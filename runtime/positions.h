// The table rows of the rows of q and k (helix::Positions), checked and laid out as the
// kernels take them: an int32 (n, b) array, one row per row and batch of the stream.
#pragma once

#include "helix/helix.h"

#include <HalideRuntime.h>

#include <cstdint>

namespace helix::detail {

// The positions of one stream, ready for a kernel. On the CPU they live in a per-thread
// scratch of the given slot (one per stream; it grows to the largest call on the thread
// and is never freed, so a repeated call allocates nothing); on a device, in a device copy.
class StreamRows {
public:
    // Resolves p for x, the stream as the kernel sees it ((..., n, d) with b = size(-4), 1
    // below rank 4), on x's device. Every position must lie in [0, limit) (the table's
    // rows, or 2^31 without a table); `aligned_first` is the first row of Positions'
    // Aligned kind. Errors name `name` (positions or k_positions).
    StreamRows(const char *op, const char *name, const Positions &p, const Tensor &x, int64_t limit,
               int64_t aligned_first, int slot);
    // Rows [first, first + count) of every batch of a CPU stream's positions (a tile).
    StreamRows(const StreamRows &whole, int64_t first, int64_t count);
    StreamRows(const StreamRows &) = delete;
    StreamRows &operator=(const StreamRows &) = delete;

    halide_buffer_t *raw() { return device_.defined() ? device_buffer() : &buf_; }

private:
    halide_buffer_t *device_buffer();

    halide_dimension_t dims_[2];
    halide_buffer_t buf_{};
    Tensor device_;  // the device copy, when x lives on a device
};

// Positions::Varlen takes (total, h, d) tensors: the kernels see them as (h, total, d).
Tensor varlen_view(const Tensor &t);

}  // namespace helix::detail
