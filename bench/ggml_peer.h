// ggml's rope as a peer of helix_bench (built with -DHELIX_GGML_SOURCE_DIR, bench/CMakeLists.txt).
#pragma once

#include <cstdint>
#include <memory>

namespace helix::bench {

// ggml's version (ggml_version()), for the run's context.
const char *ggml_peer_version();

// One rotary case run by ggml_rope_ext on ggml's CPU backend: mode GGML_ROPE_TYPE_NEOX
// (half-split pairing), angles formed from the positions (theta = pos * 10000^(-2i/d), no
// table, no YaRN), q at positions n - q_rows .. n - 1 and k at 0 .. n - 1, out of place.
// The tensors are the caller's buffers in ggml's natural layout: q (batch, q_rows, q_heads, d)
// and k (batch, n, k_heads, d), row-major (ggml's ne0 = d, ne1 = heads, ne2 = seq,
// ne3 = batch), float32 or IEEE float16. The graph, its plan and work buffer are made once,
// so compute() is the kernels and ggml's thread hand-off only.
class GgmlRope {
public:
    // Builds the graph and checks one computation against a double-precision reference
    // (aborts with a message if it differs).
    GgmlRope(int64_t batch, int64_t q_heads, int64_t k_heads, int64_t q_rows, int64_t n, int64_t d, bool float16,
             int threads, const void *q, const void *k, void *q_out, void *k_out);
    ~GgmlRope();
    void compute();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace helix::bench
