// The plain C++ peer: Zeta's apply_rotary_pos_emb as a straightforward loop nest, the way
// one writes it without a kernel library (compiled with -O3 -march=native, OpenMP over
// heads with the same thread count as helix). Tables (N, d) as SinusoidalEmbeddings gives.
#include <cmath>
#include <cstdint>

void rope_cpp_loop(const float *q, const float *k, const float *freqs, const float *scale, float *q_out,
                   float *k_out, int64_t q_rows, int64_t k_rows, int64_t n, int64_t lq, int64_t d, int threads) {
    const int64_t half = d / 2;
    auto rotate = [&](const float *x, float *out, int64_t rows, int64_t len, int64_t first, bool inverse) {
#pragma omp parallel for num_threads(threads)
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t i = 0; i < len; i++) {
                const float *row = x + (r * len + i) * d;
                float *o = out + (r * len + i) * d;
                const float *f = freqs + (first + i) * d;
                const float *s = scale + (first + i) * d;
                for (int64_t j = 0; j < d; j++) {
                    const float rotated = j < half ? -row[j + half] : row[j - half];
                    const float sj = inverse ? 1.0f / s[j] : s[j];
                    o[j] = row[j] * std::cos(f[j]) * sj + rotated * std::sin(f[j]) * sj;
                }
            }
        }
    };
    rotate(q, q_out, q_rows, lq, n - lq, false);
    rotate(k, k_out, k_rows, n, 0, true);
}
