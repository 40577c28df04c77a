#include "streaming.h"

#include "error.h"

#include <HalideRuntime.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <map>
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
// Whole 64-byte lines from a 64-byte-aligned dst, prefetching the lines of [pf, pf + pf_n)
// into L2 on the way (_MM_HINT_T1), one per line copied; function targets, so the runtime
// needs no -march and runs on every x86-64.
template <bool NonTemporal>
__attribute__((target("avx512f"))) void lines_avx512(const char *s, char *d, size_t n, const char *pf, size_t pf_n) {
    for (size_t i = 0; i < n; i += 64) {
        if (i < pf_n) _mm_prefetch(pf + i, _MM_HINT_T1);
        const __m512i v = _mm512_loadu_si512(s + i);
        if constexpr (NonTemporal) _mm512_stream_si512(reinterpret_cast<__m512i *>(d + i), v);
        else _mm512_store_si512(d + i, v);
    }
}
template <bool NonTemporal>
__attribute__((target("avx"))) void lines_avx(const char *s, char *d, size_t n, const char *pf, size_t pf_n) {
    for (size_t i = 0; i < n; i += 32) {
        if (i < pf_n && i % 64 == 0) _mm_prefetch(pf + i, _MM_HINT_T1);
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(s + i));
        if constexpr (NonTemporal) _mm256_stream_si256(reinterpret_cast<__m256i *>(d + i), v);
        else _mm256_store_si256(reinterpret_cast<__m256i *>(d + i), v);
    }
}
template <bool NonTemporal>
void lines_sse2(const char *s, char *d, size_t n, const char *pf, size_t pf_n) {
    for (size_t i = 0; i < n; i += 16) {
        if (i < pf_n && i % 64 == 0) _mm_prefetch(pf + i, _MM_HINT_T1);
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i *>(s + i));
        if constexpr (NonTemporal) _mm_stream_si128(reinterpret_cast<__m128i *>(d + i), v);
        else _mm_store_si128(reinterpret_cast<__m128i *>(d + i), v);
    }
}
template <bool NonTemporal>
void lines(const char *s, char *d, size_t n, const char *pf, size_t pf_n) {
    static const auto copy = __builtin_cpu_supports("avx512f") ? lines_avx512<NonTemporal>
                             : __builtin_cpu_supports("avx")   ? lines_avx<NonTemporal>
                                                               : lines_sse2<NonTemporal>;
    copy(s, d, n, pf, pf_n);
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

void copy_lines(const char *src, char *dst, size_t bytes, [[maybe_unused]] bool non_temporal,
                [[maybe_unused]] const char *prefetch, [[maybe_unused]] size_t prefetch_bytes) {
#if defined(__x86_64__)
    const size_t head = std::min(bytes, (64 - reinterpret_cast<uintptr_t>(dst) % 64) % 64);
    const size_t body = (bytes - head) / 64 * 64;
    std::memcpy(dst, src, head);
    if (non_temporal) lines<true>(src + head, dst + head, body, prefetch, prefetch_bytes);
    else lines<false>(src + head, dst + head, body, prefetch, prefetch_bytes);
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

// ScopedStreamTiles' settings on this thread (0: none).
namespace {
thread_local int forced_heads_per_tile = 0;
thread_local int64_t forced_tile_bytes = 0;
}  // namespace

int64_t cpu_threads() { return std::max(1u, std::thread::hardware_concurrency()); }

int64_t stream_threshold() {
    static const int64_t threshold = [] {
        const int64_t given = env_bytes("HELIX_STREAM_THRESHOLD");
        if (given >= 0) return given;
        return 4 * cpu_threads() * cache_bytes(_SC_LEVEL2_CACHE_SIZE, 1 << 20);
    }();
    return threshold;
}

int64_t stream_tile_bytes() {
    static const int64_t bytes = cache_bytes(_SC_LEVEL2_CACHE_SIZE, 1 << 20) / 4;
    return forced_tile_bytes > 0 ? forced_tile_bytes : bytes;
}

std::string to_string(const StorePlan &plan) {
    if (plan.stores != Stores::Streaming) return "ordinary";
    return plan.heads_per_tile ? "streaming_h" + std::to_string(plan.heads_per_tile) : "streaming";
}

std::string to_string(PlanClass c) {
    switch (c) {
    case PlanClass::Apply32: return "apply_32bit";
    case PlanClass::Apply16: return "apply_16bit";
    case PlanClass::Table: return "table";
    }
    return "?";
}

PlanClass apply_plan_class(DType dtype) { return dtype == DType::Float32 ? PlanClass::Apply32 : PlanClass::Apply16; }

const std::vector<StorePlan> &store_plan_candidates(PlanClass c) {
    static const std::vector<StorePlan> apply{{Stores::Ordinary, 0}, {Stores::Streaming, 0}, {Stores::Streaming, 8}};
    static const std::vector<StorePlan> table{{Stores::Ordinary, 0}, {Stores::Streaming, 0}};
    return c == PlanClass::Table ? table : apply;
}

ScopedStreamTiles::ScopedStreamTiles(int heads_per_tile, int64_t tile_bytes)
    : previous_heads_(forced_heads_per_tile), previous_bytes_(forced_tile_bytes) {
    forced_heads_per_tile = heads_per_tile;
    forced_tile_bytes = tile_bytes;
}
ScopedStreamTiles::~ScopedStreamTiles() {
    forced_heads_per_tile = previous_heads_;
    forced_tile_bytes = previous_bytes_;
}

Stores stores_override(const char *value) {
    const std::string v = value ? value : "";
    if (v.empty() || v == "auto") return Stores::Auto;
    if (v == "ordinary") return Stores::Ordinary;
    if (v == "streaming") return Stores::Streaming;
    throw Error("helix: HELIX_STORES must be auto, ordinary or streaming (got '" + v + "')");
}

std::string machine_signature() {
    std::string model = "unknown";
    if (FILE *f = std::fopen("/proc/cpuinfo", "r")) {
        char line[512];
        while (std::fgets(line, sizeof line, f)) {
            if (std::strncmp(line, "model name", 10) == 0) {
                const char *colon = std::strchr(line, ':');
                model = colon ? std::string(colon + 2, std::strcspn(colon + 2, "\n")) : model;
                break;
            }
        }
        std::fclose(f);
    }
    return model + "|" + std::to_string(cpu_threads()) + " threads|L2 " +
           std::to_string(cache_bytes(_SC_LEVEL2_CACHE_SIZE, 0));
}

std::string plan_file_path() {
    if (const char *given = std::getenv("HELIX_PLAN_FILE")) return std::string(given) == "none" ? "" : given;
    if (const char *xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return std::string(xdg) + "/helix/store-plan";
    if (const char *home = std::getenv("HOME"); home && *home) return std::string(home) + "/.cache/helix/store-plan";
    return "";
}

namespace {

constexpr const char *kPlanFileHeader = "helix store plan v1";

// The plan file: a header, the machine signature, then "<class> <plan>" lines.
std::map<std::string, StorePlan> read_plans(const std::string &path) {
    std::map<std::string, StorePlan> plans;
    std::ifstream in(path);
    std::string header, machine;
    if (!std::getline(in, header) || header != kPlanFileHeader || !std::getline(in, machine) ||
        machine != machine_signature()) {
        return plans;
    }
    std::string name, plan;
    while (in >> name >> plan) {
        for (PlanClass c : {PlanClass::Apply32, PlanClass::Apply16, PlanClass::Table}) {
            for (const StorePlan &p : store_plan_candidates(c)) {
                if (to_string(c) == name && to_string(p) == plan) plans[name] = p;
            }
        }
    }
    return plans;
}

// Best effort: a plan that cannot be saved is timed again by the next process.
void write_plans(const std::string &path, const std::map<std::string, StorePlan> &plans) {
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
    const std::string temporary = path + ".tmp" + std::to_string(getpid());
    {
        std::ofstream out(temporary);
        out << kPlanFileHeader << "\n" << machine_signature() << "\n";
        for (const auto &[name, plan] : plans) out << name << " " << to_string(plan) << "\n";
        if (!out) return;
    }
    std::filesystem::rename(temporary, path, ec);  // atomic: readers see the old or the new file
    if (ec) std::filesystem::remove(temporary, ec);
}

}  // namespace

StorePlan calibrate_store_plan(PlanClass c, const PlanTimer &time_plan, const std::string &path) {
    const std::string name = to_string(c);
    std::map<std::string, StorePlan> plans = path.empty() ? std::map<std::string, StorePlan>{} : read_plans(path);
    if (auto saved = plans.find(name); saved != plans.end()) return saved->second;
    const std::vector<StorePlan> &candidates = store_plan_candidates(c);
    std::vector<std::vector<double>> times(candidates.size());
    for (const StorePlan &p : candidates) time_plan(p);  // warm-up: page faults, first-call costs
    for (int round = 0; round < 5; round++) {
        for (size_t i = 0; i < candidates.size(); i++) times[i].push_back(time_plan(candidates[i]));
    }
    size_t best = 0;
    for (size_t i = 0; i < candidates.size(); i++) {
        std::sort(times[i].begin(), times[i].end());
        if (times[i][2] < times[best][2]) best = i;
    }
    if (!path.empty()) {
        plans = read_plans(path);  // another process may have added another class meanwhile
        plans[name] = candidates[best];
        write_plans(path, plans);
    }
    return candidates[best];
}

StorePlan auto_store_plan(PlanClass c, const PlanTimer &time_plan) {
    static const Stores forced = stores_override(std::getenv("HELIX_STORES"));
    if (forced != Stores::Auto) return {forced, 0};
    // Once per class and process (other threads wait for it); the file spares later processes.
    static std::mutex mutex;
    static std::map<PlanClass, StorePlan> chosen;
    std::lock_guard<std::mutex> lock(mutex);
    if (auto it = chosen.find(c); it != chosen.end()) return it->second;
    const StorePlan plan = calibrate_store_plan(c, time_plan, plan_file_path());
    chosen[c] = plan;
    return plan;
}

StorePlan resolve_stores(Stores requested, int64_t bytes, bool in_place, const std::function<StorePlan()> &auto_plan) {
    if (requested == Stores::Ordinary || !non_temporal_stores_available()) return {};
    if (requested == Stores::Streaming) return {Stores::Streaming, forced_heads_per_tile};
    if (in_place || bytes <= stream_threshold()) return {};
    return auto_plan();
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
