// Stores without read-for-ownership for large outputs (SPEC section 5). Halide 21 has no
// streaming-store directive, so the kernels stay as they are and write a cache-sized tile
// of rows into a per-thread scratch buffer; these helpers then stream the tile out with
// non-temporal stores (each output line written once, never read first).
#pragma once

#include "helix/helix.h"

#include <cstddef>
#include <cstdint>
#include <functional>

namespace helix::detail {

// Copies `bytes` from src to dst (any alignment) with the widest stores the CPU has:
// non-temporal when `non_temporal` and the CPU has them (x86-64), else ordinary. Issues no
// fence: call stream_fence() before the data is read by another thread.
void copy_lines(const char *src, char *dst, size_t bytes, bool non_temporal);
void stream_fence();
// Whether copy_lines can bypass the caches on this CPU (x86-64: SSE2 and up).
bool non_temporal_stores_available();

// The stores of a call: `requested`, unless Auto: then Ordinary, except with
// HELIX_STORES=streaming, which streams outputs of more than stream_threshold() bytes that
// are not their own inputs (on CPUs with non-temporal stores). Whether streaming pays
// differs between machines (bench/README.md): it is not the default.
Stores resolve_stores(Stores requested, int64_t bytes, bool in_place);
// HELIX_STREAM_THRESHOLD (bytes) when set, else 4x the L2 caches of the threads that run
// the kernels: what is larger would not be in their caches for the next reader anyway.
int64_t stream_threshold();
// Scratch bytes for one tile of rows: a quarter of this CPU's L2 (the tile is written and
// read back while it is there).
int64_t stream_tile_bytes();

// While alive, Halide parallel loops started on this thread run serially on it: a tile
// task of the streamed path runs a whole kernel, already inside the thread pool.
class SerialKernels {
public:
    SerialKernels();
    ~SerialKernels();
    SerialKernels(const SerialKernels &) = delete;
    SerialKernels &operator=(const SerialKernels &) = delete;

private:
    bool previous_;
};

// Runs task(i) for i in [0, count) on Halide's thread pool; the first helix::Error thrown
// by a task is rethrown here once all have finished.
void parallel_tasks(int count, const std::function<void(int)> &task);

// A per-thread scratch buffer of at least `bytes`, 64-byte aligned, kept between calls.
char *thread_scratch(size_t bytes);

}  // namespace helix::detail
