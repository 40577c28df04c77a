// The copies behind the copy roofline (SPEC section 5: the best copy of the same bytes), split
// over `threads` threads like the kernels, shared by helix_bench and helix_demo (and the fills
// of a write-only kernel's roofline, below):
//   memcpy           glibc's (non-temporal stores of its own above a size it picks);
//   ordinary_stores  a vector loop of loads and plain stores: each destination line is read
//                    for ownership first (what Halide 21 emits);
//   non_temporal     a vector loop of streaming stores (no read for ownership).
// The two vector loops are runtime/streaming.h's line copy (x86-64); elsewhere memcpy is the only copy.
// Which one is fastest differs between machines (on one AMD EPYC the non-temporal copy ran
// 1.4x memcpy), so the roofline is the fastest of them, measured in the same run.
#pragma once

#include <helix/helix.h>

#include "streaming.h"

#include <algorithm>
#include <cstddef>
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

// One thread's part: runtime/streaming.h's line copy (the widest vectors the CPU has;
// a 64-byte-aligned destination span of whole lines, the head and tail through memcpy).
inline void copy_part(CopyKind kind, const char *src, char *dst, size_t bytes) {
    if (kind == CopyKind::Memcpy) {
        std::memcpy(dst, src, bytes);
        return;
    }
    const bool nt = kind == CopyKind::NonTemporal;
    helix::detail::copy_lines(src, dst, bytes, nt);
    if (nt) helix::detail::stream_fence();
}

}  // namespace detail

namespace detail {

// part(begin, end) for `threads` byte ranges of [0, bytes) on threads of their own: chunks
// of whole 64-byte lines, so no two threads write one line.
template <typename Part>
void split_over_threads(size_t bytes, unsigned threads, Part &&part) {
    const size_t chunk = (bytes / threads + 63) / 64 * 64;
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < threads; t++) {
        const size_t begin = std::min(bytes, t * chunk), end = std::min(bytes, begin + chunk);
        pool.emplace_back([&part, begin, end] { part(begin, end); });
    }
    for (auto &t : pool) t.join();
}

}  // namespace detail

// Copies the bytes of CPU tensor src into dst (same size), split over `threads` threads.
inline void parallel_copy(const Tensor &src, const Tensor &dst, unsigned threads, CopyKind kind = CopyKind::Memcpy) {
    const auto *from = static_cast<const char *>(src.data());
    auto *to = static_cast<char *>(dst.data());
    detail::split_over_threads(size_t(src.numel()) * size_t(src.element_size()), threads,
                               [&](size_t begin, size_t end) { detail::copy_part(kind, from + begin, to + begin, end - begin); });
}

// The fills behind a write-only kernel's roofline (the tables): the same three ways of
// storing, writing `bytes` of zeros and reading nothing.
namespace detail {

#if defined(__x86_64__)
template <bool NonTemporal>
__attribute__((target("avx512f"))) void fill_avx512(char *d, size_t n) {
    const __m512i zero = _mm512_setzero_si512();
    for (size_t i = 0; i < n; i += 64) {
        if constexpr (NonTemporal) _mm512_stream_si512(reinterpret_cast<__m512i *>(d + i), zero);
        else _mm512_store_si512(d + i, zero);
    }
}
template <bool NonTemporal>
void fill_sse2(char *d, size_t n) {
    const __m128i zero = _mm_setzero_si128();
    for (size_t i = 0; i < n; i += 16) {
        if constexpr (NonTemporal) _mm_stream_si128(reinterpret_cast<__m128i *>(d + i), zero);
        else _mm_store_si128(reinterpret_cast<__m128i *>(d + i), zero);
    }
}
#endif

// One thread's part: memset, or whole 64-byte lines of vector stores (head and tail by memset).
inline void fill_part(CopyKind kind, char *dst, size_t bytes) {
#if defined(__x86_64__)
    if (kind != CopyKind::Memcpy) {
        const size_t head = std::min(bytes, (64 - reinterpret_cast<uintptr_t>(dst) % 64) % 64);
        const size_t body = (bytes - head) / 64 * 64;
        std::memset(dst, 0, head);
        const bool avx512 = __builtin_cpu_supports("avx512f");
        if (kind == CopyKind::NonTemporal) avx512 ? fill_avx512<true>(dst + head, body) : fill_sse2<true>(dst + head, body);
        else avx512 ? fill_avx512<false>(dst + head, body) : fill_sse2<false>(dst + head, body);
        std::memset(dst + head + body, 0, bytes - head - body);
        if (kind == CopyKind::NonTemporal) helix::detail::stream_fence();
        return;
    }
#endif
    std::memset(dst, 0, bytes);
}

}  // namespace detail

inline const char *fill_name(CopyKind kind) {
    switch (kind) {
    case CopyKind::Memcpy: return "memset";
    case CopyKind::OrdinaryStores: return "ordinary_stores";
    case CopyKind::NonTemporal: return "non_temporal";
    }
    return "?";
}

// Fills CPU tensor dst with zeros, split over `threads` threads.
inline void parallel_fill(const Tensor &dst, unsigned threads, CopyKind kind) {
    auto *to = static_cast<char *>(dst.data());
    detail::split_over_threads(size_t(dst.numel()) * size_t(dst.element_size()), threads,
                               [&](size_t begin, size_t end) { detail::fill_part(kind, to + begin, end - begin); });
}

}  // namespace helix::bench
