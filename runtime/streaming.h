// Stores without read-for-ownership for large outputs (SPEC section 5). Halide 21 has no
// streaming-store directive, so the kernels stay as they are and write a cache-sized tile
// of rows into a per-thread scratch buffer; these helpers then stream the tile out with
// non-temporal stores (each output line written once, never read first).
#pragma once

#include "helix/helix.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace helix::detail {

// Copies `bytes` from src to dst (any alignment) with the widest stores the CPU has:
// non-temporal when `non_temporal` and the CPU has them (x86-64), else ordinary. Issues no
// fence: call stream_fence() before the data is read by another thread. Meanwhile it
// prefetches up to `bytes` of [prefetch, prefetch + prefetch_bytes) into L2 (x86-64): the
// input of the next tile is read while this one's output drains.
void copy_lines(const char *src, char *dst, size_t bytes, bool non_temporal, const char *prefetch = nullptr,
                size_t prefetch_bytes = 0);
void stream_fence();
// The CPU's logical threads (at least 1).
int64_t cpu_threads();
// Whether copy_lines can bypass the caches on this CPU (x86-64: SSE2 and up).
bool non_temporal_stores_available();

// How a large output is written: one of its class's store_plan_candidates(), which this
// machine's calibration picks (SPEC section 5: chosen where the library runs, by
// measurement). Streaming tiles hold `heads_per_tile` heads (of every batch) of a block of
// rows, or every head when 0: fewer heads per tile means fewer input streams per task, more
// heads means the coefficients of a row are formed once for more of them.
struct StorePlan {
    Stores stores = Stores::Ordinary;  // Ordinary or Streaming
    int heads_per_tile = 0;
    bool operator==(const StorePlan &o) const { return stores == o.stores && heads_per_tile == o.heads_per_tile; }
};
std::string to_string(const StorePlan &plan);  // "ordinary", "streaming", "streaming_h8"

// The kinds of output with a plan of their own: apply_rotary's of 32- and 16-bit elements
// (read and written), the tables (write only).
enum class PlanClass { Apply32, Apply16, Table };
std::string to_string(PlanClass c);  // "apply_32bit", "apply_16bit", "table"
PlanClass apply_plan_class(DType dtype);
const std::vector<StorePlan> &store_plan_candidates(PlanClass c);

// Seconds of one call of the class's calibration problem with a plan forced.
using PlanTimer = std::function<double(const StorePlan &)>;

// The plan of a call: ordinary for `requested` Ordinary and on CPUs without non-temporal
// stores; `requested` Streaming streams with the thread's tiles (ScopedStreamTiles, else
// every head); Auto is ordinary for outputs that are their inputs or of at most
// stream_threshold() bytes, else auto_plan() (the class's auto_store_plan).
StorePlan resolve_stores(Stores requested, int64_t bytes, bool in_place, const std::function<StorePlan()> &auto_plan);

// Auto's plan for outputs above the threshold: HELIX_STORES=ordinary|streaming forces one
// (streaming with every head per tile); else the class's plan saved for this machine in
// the plan file (plan_file_path()), else the fastest candidate timed once in this process
// with time_plan, then saved. An unknown HELIX_STORES is an Error.
StorePlan auto_store_plan(PlanClass c, const PlanTimer &time_plan);

// The calibration itself, for a given file ("" for none): reads the class's plan from
// `path` if the file was written on this machine (the same machine_signature()), else times
// every candidate (a warm-up, then 5 rounds, interleaved), keeps the fastest median and
// rewrites the file with it.
StorePlan calibrate_store_plan(PlanClass c, const PlanTimer &time_plan, const std::string &path);
// The CPU model, logical CPUs and L2 size: a plan file from another machine is not used.
std::string machine_signature();
// HELIX_PLAN_FILE when set ("none": no file), else $XDG_CACHE_HOME/helix/store-plan or
// ~/.cache/helix/store-plan.
std::string plan_file_path();
// HELIX_STORES's meaning: Auto for unset, empty or "auto", Ordinary, Streaming; else Error.
Stores stores_override(const char *value);

// While alive, Stores::Streaming calls on this thread use tiles of `heads_per_tile` heads
// and, when tile_bytes > 0, that many bytes (the calibration, the benchmark's rows per
// candidate and the tests).
class ScopedStreamTiles {
public:
    explicit ScopedStreamTiles(int heads_per_tile, int64_t tile_bytes = 0);
    ~ScopedStreamTiles();
    ScopedStreamTiles(const ScopedStreamTiles &) = delete;
    ScopedStreamTiles &operator=(const ScopedStreamTiles &) = delete;

private:
    int previous_heads_;
    int64_t previous_bytes_;
};

// HELIX_STREAM_THRESHOLD (bytes) when set, else 4x the L2 caches of the threads that run
// the kernels: what is larger would not be in their caches for the next reader anyway.
int64_t stream_threshold();
// Scratch bytes for one tile of rows: a quarter of this CPU's L2 (the tile is written and
// read back while it is there), unless ScopedStreamTiles says otherwise.
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
