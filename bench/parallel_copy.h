// The copy roofline's copy: memcpy of a CPU tensor split over `threads` threads (the thread
// count the kernels use), shared by helix_bench and helix_demo.
#pragma once

#include <helix/helix.h>

#include <algorithm>
#include <cstring>
#include <thread>
#include <vector>

namespace helix::bench {

inline void parallel_copy(const Tensor &src, const Tensor &dst, unsigned threads) {
    const size_t bytes = src.numel() * src.to_halide().type().bytes(), chunk = (bytes + threads - 1) / threads;
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < threads; t++) {
        const size_t begin = std::min(bytes, t * chunk), end = std::min(bytes, begin + chunk);
        pool.emplace_back([&, begin, end] {
            std::memcpy(static_cast<char *>(dst.data()) + begin, static_cast<const char *>(src.data()) + begin, end - begin);
        });
    }
    for (auto &t : pool) t.join();
}

}  // namespace helix::bench
