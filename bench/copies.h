// The copies behind the copy roofline (SPEC section 5: the best copy of the same bytes), split
// over `threads` threads like the kernels, shared by helix_bench and helix_demo:
//   memcpy           glibc's (non-temporal stores of its own above a size it picks);
//   ordinary_stores  a vector loop of loads and plain stores: each destination line is read
//                    for ownership first (what Halide 21 emits);
//   non_temporal     a vector loop of streaming stores (no read for ownership).
// The two vector loops are written for x86-64; elsewhere memcpy is the only copy.
// Which one is fastest differs between machines (on one AMD EPYC the non-temporal copy ran
// 1.4x memcpy), so the roofline is the fastest of them, measured in the same run.
#pragma once

#include <helix/helix.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace helix::bench {

enum class CopyKind { Memcpy, OrdinaryStores, NonTemporal };

inline const char *copy_name(CopyKind kind) {
    switch (kind) {
    case CopyKind::Memcpy: return "memcpy";
    case CopyKind::OrdinaryStores: return "ordinary_stores";
    case CopyKind::NonTemporal: return "non_temporal";
    }
    return "?";
}

// The copies this machine can run.
inline std::vector<CopyKind> copy_kinds() {
#if defined(__x86_64__)
    return {CopyKind::Memcpy, CopyKind::OrdinaryStores, CopyKind::NonTemporal};
#else
    return {CopyKind::Memcpy};
#endif
}

namespace detail {

// One thread's part. The vector loops take the widest vectors the CPU has (function
// targets, so the bench needs no -march); they copy a 64-byte-aligned destination span of
// whole 64-byte lines, the head and tail around it go through memcpy.
#if defined(__x86_64__)
__attribute__((target("avx512f"))) inline void lines_avx512(const char *s, char *d, size_t n, bool nt) {
    for (size_t i = 0; i < n; i += 64) {
        const __m512i v = _mm512_loadu_si512(s + i);
        if (nt) _mm512_stream_si512(reinterpret_cast<__m512i *>(d + i), v);
        else _mm512_store_si512(d + i, v);
    }
}
__attribute__((target("avx"))) inline void lines_avx(const char *s, char *d, size_t n, bool nt) {
    for (size_t i = 0; i < n; i += 32) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(s + i));
        if (nt) _mm256_stream_si256(reinterpret_cast<__m256i *>(d + i), v);
        else _mm256_store_si256(reinterpret_cast<__m256i *>(d + i), v);
    }
}
inline void lines_sse2(const char *s, char *d, size_t n, bool nt) {
    for (size_t i = 0; i < n; i += 16) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i *>(s + i));
        if (nt) _mm_stream_si128(reinterpret_cast<__m128i *>(d + i), v);
        else _mm_store_si128(reinterpret_cast<__m128i *>(d + i), v);
    }
}
#endif

inline void copy_part([[maybe_unused]] CopyKind kind, const char *src, char *dst, size_t bytes) {
#if defined(__x86_64__)
    if (kind != CopyKind::Memcpy) {
        const bool nt = kind == CopyKind::NonTemporal;
        const size_t head = std::min(bytes, (64 - reinterpret_cast<uintptr_t>(dst) % 64) % 64);
        const size_t body = (bytes - head) / 64 * 64;
        std::memcpy(dst, src, head);
        if (__builtin_cpu_supports("avx512f")) lines_avx512(src + head, dst + head, body, nt);
        else if (__builtin_cpu_supports("avx")) lines_avx(src + head, dst + head, body, nt);
        else lines_sse2(src + head, dst + head, body, nt);
        if (nt) _mm_sfence();
        std::memcpy(dst + head + body, src + head + body, bytes - head - body);
        return;
    }
#endif
    std::memcpy(dst, src, bytes);
}

}  // namespace detail

// Copies the bytes of CPU tensor src into dst (same size), split over `threads` threads.
inline void parallel_copy(const Tensor &src, const Tensor &dst, unsigned threads, CopyKind kind = CopyKind::Memcpy) {
    const size_t bytes = size_t(src.numel()) * size_t(src.element_size());
    // Chunks of whole 64-byte lines, so no two threads write one line.
    const size_t chunk = (bytes / threads + 63) / 64 * 64;
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < threads; t++) {
        const size_t begin = std::min(bytes, t * chunk), end = std::min(bytes, begin + chunk);
        pool.emplace_back([&, begin, end] {
            detail::copy_part(kind, static_cast<const char *>(src.data()) + begin, static_cast<char *>(dst.data()) + begin,
                              end - begin);
        });
    }
    for (auto &t : pool) t.join();
}

}  // namespace helix::bench
