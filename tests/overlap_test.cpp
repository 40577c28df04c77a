// The element-level overlap decisions (runtime/overlap.h) against brute force: every
// byte of every element enumerated, on thousands of random small layouts with negative,
// zero, equal and interleaving strides.
#include "overlap.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <set>
#include <string>

namespace helix::detail {
namespace {

// Every element's first byte, in order of enumeration.
std::vector<int64_t> element_offsets(const MemoryLayout &m) {
    std::vector<int64_t> offsets{static_cast<int64_t>(m.base)};
    for (const MemoryLayout::Dim &d : m.dims) {
        std::vector<int64_t> next;
        for (int64_t o : offsets) {
            for (int64_t i = 0; i < d.extent; i++) next.push_back(o + i * d.stride);
        }
        offsets.swap(next);
    }
    return offsets;
}

bool brute_shares(const MemoryLayout &a, const MemoryLayout &b) {
    std::set<int64_t> bytes;
    for (int64_t o : element_offsets(a)) {
        for (int64_t i = 0; i < a.bytes; i++) bytes.insert(o + i);
    }
    for (int64_t o : element_offsets(b)) {
        for (int64_t i = 0; i < b.bytes; i++) {
            if (bytes.count(o + i)) return true;
        }
    }
    return false;
}

bool brute_self(const MemoryLayout &a) {
    std::set<int64_t> bytes;
    for (int64_t o : element_offsets(a)) {
        for (int64_t i = 0; i < a.bytes; i++) {
            if (!bytes.insert(o + i).second) return true;
        }
    }
    return false;
}

std::string describe(const MemoryLayout &m) {
    std::string s = "base " + std::to_string(static_cast<int64_t>(m.base)) + " bytes " + std::to_string(m.bytes) + " dims";
    for (const MemoryLayout::Dim &d : m.dims) s += " (" + std::to_string(d.extent) + ", " + std::to_string(d.stride) + ")";
    return s;
}

MemoryLayout random_layout(std::mt19937 &rng, int64_t bytes) {
    MemoryLayout m;
    m.bytes = bytes;
    m.base = static_cast<int64_t>(rng() % 64);
    const int rank = 1 + rng() % 4;
    for (int i = 0; i < rank; i++) {
        const int64_t extent = rng() % 5;  // 0 .. 4
        int64_t stride = static_cast<int64_t>(rng() % 25) - 8;
        if (rng() % 3 == 0) stride *= bytes;  // element-aligned strides, as tensors have
        m.dims.push_back({extent == 0 && rng() % 4 ? 1 : extent, stride});
    }
    return m;
}

TEST(Overlap, SharesMemoryMatchesBruteForce) {
    std::mt19937 rng(17);
    int shared = 0;
    for (int i = 0; i < 20000; i++) {
        const int64_t bytes = int64_t(1) << (rng() % 3);
        const MemoryLayout a = random_layout(rng, bytes), b = random_layout(rng, rng() % 2 ? bytes : 4);
        const bool want = brute_shares(a, b);
        shared += want;
        ASSERT_EQ(shares_memory(a, b, 1 << 30), want ? Overlap::Yes : Overlap::No)
            << "case " << i << ": a " << describe(a) << "; b " << describe(b);
    }
    EXPECT_GT(shared, 2000);  // both answers are exercised
}

TEST(Overlap, OverlapsItselfMatchesBruteForce) {
    std::mt19937 rng(18);
    int overlapping = 0;
    for (int i = 0; i < 20000; i++) {
        const MemoryLayout a = random_layout(rng, int64_t(1) << (rng() % 3));
        const bool want = brute_self(a);
        overlapping += want;
        ASSERT_EQ(overlaps_itself(a, 1 << 30), want ? Overlap::Yes : Overlap::No) << "case " << i << ": " << describe(a);
    }
    EXPECT_GT(overlapping, 2000);
}

// Tensor-sized layouts of the kinds helix meets: decided exactly and fast.
TEST(Overlap, LargeTensorLayouts) {
    const int64_t f = 4;  // float32
    const int64_t b = 2, h = 32, n = 4096, d = 128;
    auto layout = [&](int64_t base, std::vector<MemoryLayout::Dim> dims) {
        MemoryLayout m;
        m.bytes = f;
        m.base = base;
        m.dims = std::move(dims);
        return m;
    };
    // q_out and k_out as alternate rows of one buffer.
    const MemoryLayout even = layout(0, {{b, h * 2 * n * d * f}, {h, 2 * n * d * f}, {n, 2 * d * f}, {d, f}});
    const MemoryLayout odd = layout(d * f, {{b, h * 2 * n * d * f}, {h, 2 * n * d * f}, {n, 2 * d * f}, {d, f}});
    EXPECT_EQ(shares_memory(even, odd), Overlap::No);
    EXPECT_EQ(overlaps_itself(even), Overlap::No);
    // The same rows, one of them shifted by one element: they share.
    const MemoryLayout shifted = layout(d * f - f, {{b, h * 2 * n * d * f}, {h, 2 * n * d * f}, {n, 2 * d * f}, {d, f}});
    EXPECT_EQ(shares_memory(even, shifted), Overlap::Yes);
    // q, k, v of a fused (b, n, 3, h, d) buffer, viewed as (b, h, n, d).
    auto qkv = [&](int64_t which) {
        return layout(which * h * d * f, {{b, n * 3 * h * d * f}, {h, d * f}, {n, 3 * h * d * f}, {d, f}});
    };
    EXPECT_EQ(shares_memory(qkv(0), qkv(1)), Overlap::No);
    EXPECT_EQ(shares_memory(qkv(1), qkv(2)), Overlap::No);
    EXPECT_EQ(shares_memory(qkv(1), qkv(1)), Overlap::Yes);
    // A broadcast (stride-0) output overlaps itself; a transposed view does not.
    EXPECT_EQ(overlaps_itself(layout(0, {{h, 0}, {n, d * f}, {d, f}})), Overlap::Yes);
    EXPECT_EQ(overlaps_itself(layout(0, {{n, d * f}, {h, n * d * f}, {d, f}})), Overlap::No);
    // Misaligned by half an element: bytes are shared although no offsets are equal.
    EXPECT_EQ(shares_memory(layout(0, {{n, d * f}, {d, f}}), layout(2, {{n, d * f}, {d, f}})), Overlap::Yes);
}

// A search cut short says Unknown (the operations then refuse the call), never No.
TEST(Overlap, WorkLimitGivesUnknown) {
    MemoryLayout a;
    a.bytes = 1;
    a.dims = {{1000, 7}, {1000, 11}, {1000, 13}};
    MemoryLayout b = a;
    b.base = 5003;
    b.dims = {{1000, 17}, {1000, 19}};
    EXPECT_EQ(shares_memory(a, b, 1 << 30), Overlap::Yes);
    EXPECT_EQ(shares_memory(a, b, 1), Overlap::Unknown);
    MemoryLayout c;
    c.bytes = 4;
    c.dims = {{1000, 4000}, {1000, 4001}, {1000, 4003}};
    EXPECT_EQ(overlaps_itself(c, 1 << 30), Overlap::Yes);
}

}  // namespace
}  // namespace helix::detail
