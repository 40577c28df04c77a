#include "streaming.h"

#include "error.h"

#include <HalideRuntime.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <unistd.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace helix::detail {
namespace {

#if defined(__x86_64__)
// Whole 64-byte lines from a 64-byte-aligned dst; function targets, so the runtime needs
// no -march and runs on every x86-64.
template <bool NonTemporal>
__attribute__((target("avx512f"))) void lines_avx512(const char *s, char *d, size_t n) {
    for (size_t i = 0; i < n; i += 64) {
        const __m512i v = _mm512_loadu_si512(s + i);
        if constexpr (NonTemporal) _mm512_stream_si512(reinterpret_cast<__m512i *>(d + i), v);
        else _mm512_store_si512(d + i, v);
    }
}
template <bool NonTemporal>
__attribute__((target("avx"))) void lines_avx(const char *s, char *d, size_t n) {
    for (size_t i = 0; i < n; i += 32) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(s + i));
        if constexpr (NonTemporal) _mm256_stream_si256(reinterpret_cast<__m256i *>(d + i), v);
        else _mm256_store_si256(reinterpret_cast<__m256i *>(d + i), v);
    }
}
template <bool NonTemporal>
void lines_sse2(const char *s, char *d, size_t n) {
    for (size_t i = 0; i < n; i += 16) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i *>(s + i));
        if constexpr (NonTemporal) _mm_stream_si128(reinterpret_cast<__m128i *>(d + i), v);
        else _mm_store_si128(reinterpret_cast<__m128i *>(d + i), v);
    }
}
template <bool NonTemporal>
void lines(const char *s, char *d, size_t n) {
    static const auto copy = __builtin_cpu_supports("avx512f") ? lines_avx512<NonTemporal>
                             : __builtin_cpu_supports("avx")   ? lines_avx<NonTemporal>
                                                               : lines_sse2<NonTemporal>;
    copy(s, d, n);
}
#endif

// A Halide parallel loop on a thread inside SerialKernels runs serially there.
thread_local bool serial_kernels = false;
halide_do_par_for_t next_do_par_for = nullptr;

int do_par_for(void *user_context, halide_task_t f, int min, int size, uint8_t *closure) {
    if (!serial_kernels) return next_do_par_for(user_context, f, min, size, closure);
    for (int i = min; i < min + size; i++) {
        if (int rc = f(user_context, i, closure)) return rc;
    }
    return 0;
}

// The allocations of a kernel running inside SerialKernels (a decode step, a streamed
// tile) come from a per-thread arena, so such a call makes no heap allocation after the
// thread's first. Halide frees a kernel's buffers before it returns, on the thread that
// allocated them; the arena is reused once all its blocks are free. What does not fit, and
// every other allocation (a user_context other than a kernel call's: tensors pass none),
// goes to the handler in place before.
constexpr size_t kArenaBytes = 64 * 1024, kArenaAlignment = 128;  // Halide's own alignment

struct Arena {
    char *memory = nullptr;
    size_t top = 0;
    int live = 0;
    ~Arena() { std::free(memory); }
    bool owns(const void *p) const { return memory && p >= memory && p < memory + kArenaBytes; }
};
thread_local Arena arena;
halide_malloc_t next_malloc = nullptr;
halide_free_t next_free = nullptr;

void *arena_malloc(void *user_context, size_t bytes) {
    if (serial_kernels && user_context) {
        if (!arena.memory) arena.memory = static_cast<char *>(std::aligned_alloc(kArenaAlignment, kArenaBytes));
        const size_t size = (bytes + kArenaAlignment - 1) / kArenaAlignment * kArenaAlignment;
        if (arena.memory && size <= kArenaBytes - arena.top) {
            char *p = arena.memory + arena.top;
            arena.top += size;
            arena.live++;
            return p;
        }
    }
    return next_malloc(user_context, bytes);
}

void arena_free(void *user_context, void *p) {
    if (!arena.owns(p)) {
        next_free(user_context, p);
    } else if (--arena.live == 0) {
        arena.top = 0;
    }
}

// Installed before main (before any thread can run a kernel), chaining to the handlers in
// place then; a program that installs its own later only loses the serial shortcut and the
// arena.
const bool hooks_installed = [] {
    next_do_par_for = halide_set_custom_do_par_for(do_par_for);
    next_malloc = halide_set_custom_malloc(arena_malloc);
    next_free = halide_set_custom_free(arena_free);
    return true;
}();

int64_t env_bytes(const char *name) {
    const char *v = std::getenv(name);
    if (!v || !*v) return -1;
    char *end = nullptr;
    const long long n = std::strtoll(v, &end, 10);
    return *end == '\0' && n >= 0 ? n : -1;
}

int64_t cache_bytes(int name, int64_t fallback) {
    const long v = sysconf(name);
    return v > 0 ? v : fallback;
}

}  // namespace

void copy_lines(const char *src, char *dst, size_t bytes, [[maybe_unused]] bool non_temporal) {
#if defined(__x86_64__)
    const size_t head = std::min(bytes, (64 - reinterpret_cast<uintptr_t>(dst) % 64) % 64);
    const size_t body = (bytes - head) / 64 * 64;
    std::memcpy(dst, src, head);
    if (non_temporal) lines<true>(src + head, dst + head, body);
    else lines<false>(src + head, dst + head, body);
    std::memcpy(dst + head + body, src + head + body, bytes - head - body);
#else
    std::memcpy(dst, src, bytes);
#endif
}

void stream_fence() {
#if defined(__x86_64__)
    _mm_sfence();
#endif
}

bool non_temporal_stores_available() {
#if defined(__x86_64__)
    return true;
#else
    return false;
#endif
}

int64_t stream_threshold() {
    static const int64_t threshold = [] {
        const int64_t given = env_bytes("HELIX_STREAM_THRESHOLD");
        if (given >= 0) return given;
        const int64_t threads = std::max(1u, std::thread::hardware_concurrency());
        return 4 * threads * cache_bytes(_SC_LEVEL2_CACHE_SIZE, 1 << 20);
    }();
    return threshold;
}

int64_t stream_tile_bytes() {
    static const int64_t bytes = cache_bytes(_SC_LEVEL2_CACHE_SIZE, 1 << 20) / 4;
    return bytes;
}

Stores resolve_stores(Stores requested, int64_t bytes, bool in_place) {
    static const bool stream_large = [] {
        const char *v = std::getenv("HELIX_STORES");
        return v && std::string(v) == "streaming";
    }();
    if (requested != Stores::Auto) return requested;
    return stream_large && !in_place && non_temporal_stores_available() && bytes > stream_threshold()
               ? Stores::Streaming
               : Stores::Ordinary;
}

SerialKernels::SerialKernels() : previous_(serial_kernels) { serial_kernels = true; }
SerialKernels::~SerialKernels() { serial_kernels = previous_; }

namespace {
struct Tasks {
    const std::function<void(int)> *task;
    std::mutex mutex;
    std::exception_ptr error;
    // Halide's thread pool orders the caller's writes before the tasks and the tasks before
    // the caller's return, but its synchronization is uninstrumented: these two edges make
    // that order visible to ThreadSanitizer. Published (release) by the caller, acquired by
    // each task first; each task releases `finished` last, acquired by the caller after.
    std::atomic<bool> published{false};
    std::atomic<int> finished{0};
};

int run_task(void *, int i, uint8_t *closure) {
    Tasks &tasks = *reinterpret_cast<Tasks *>(closure);
    (void)tasks.published.load(std::memory_order_acquire);
    int rc = 0;
    try {
        (*tasks.task)(i);
    } catch (...) {
        std::lock_guard<std::mutex> lock(tasks.mutex);
        if (!tasks.error) tasks.error = std::current_exception();
        rc = -1;
    }
    tasks.finished.fetch_add(1, std::memory_order_release);
    return rc;
}
}  // namespace

void parallel_tasks(int count, const std::function<void(int)> &task) {
    Tasks tasks{&task, {}, {}};
    tasks.published.store(true, std::memory_order_release);
    const int rc = halide_do_par_for(nullptr, run_task, 0, count, reinterpret_cast<uint8_t *>(&tasks));
    (void)tasks.finished.load(std::memory_order_acquire);
    if (tasks.error) std::rethrow_exception(tasks.error);
    if (rc) throw Error("helix: a parallel task failed (Halide runtime error " + std::to_string(rc) + ")");
}

char *thread_scratch(size_t bytes) {
    struct Free {
        void operator()(char *p) const { std::free(p); }
    };
    thread_local std::unique_ptr<char, Free> buffer;
    thread_local size_t capacity = 0;
    if (bytes > capacity) {
        capacity = (bytes + 63) / 64 * 64;
        buffer.reset(static_cast<char *>(std::aligned_alloc(64, capacity)));
        if (!buffer) {
            capacity = 0;
            throw Error("helix: cannot allocate " + std::to_string(bytes) + " bytes of scratch");
        }
    }
    return buffer.get();
}

}  // namespace helix::detail
