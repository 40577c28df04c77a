// helix_demo: the seed's usage examples, a bfloat16 in-place partial interleaved call,
// then RoPE with xPos on q and k of (1, 32, 4096, 128) float32: the error against the
// float64 reference and the throughput next to a plain copy of the same bytes.
#include "copies.h"  // bench/copies.h: the copy roofline's copies
#include "reference.h"      // tests/reference.h: the float64 reference

#include <helix/helix.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

namespace {

using helix::Tensor;

void print_row(const char *label, const Tensor &t, std::initializer_list<int64_t> row_index, int count) {
    std::printf("  %s", label);
    std::vector<int64_t> idx(row_index);
    idx.push_back(0);
    for (int j = 0; j < count; j++) {
        idx.back() = j;
        std::printf(" %9.5f", helix::ref::element(t, idx));
    }
    std::printf(" ...\n");
}

Tensor arange(const std::vector<int64_t> &shape) {
    Tensor t(shape);
    float v = 0;
    helix::ref::for_each_index(shape, [&](const std::vector<int64_t> &idx) { helix::ref::element(t, idx) = v++; });
    return t;
}

template <typename F>
double best_seconds(int reps, F &&f) {
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        const auto t0 = std::chrono::steady_clock::now();
        f();
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return best;
}

}  // namespace

int main() {
    std::printf("== SinusoidalEmbeddings(dim=512, use_xpos=True, scale_base=1000) on x (1, 10, 512)\n");
    const helix::SinusoidalEmbeddings emb512(512, 1000.0, true);
    const helix::RotaryTables seed = emb512.forward(Tensor({1, 10, 512}));
    std::printf("  freqs %s, scale %s\n", seed.freqs.shape_string().c_str(), seed.scale.shape_string().c_str());
    print_row("freqs[9, :6]", seed.freqs, {9}, 6);
    print_row("scale[9, :6]", seed.scale, {9}, 6);

    std::printf("== rotate_half(x), x = arange(24).reshape(2, 3, 4)\n");
    const Tensor x = arange({2, 3, 4});
    const Tensor rx = helix::rotate_half(x);
    std::printf("  out %s\n", rx.shape_string().c_str());
    print_row("x[1, 2]  ", x, {1, 2}, 4);
    print_row("out[1, 2]", rx, {1, 2}, 4);

    std::printf("== apply_rotary_pos_emb(q, k, freqs, scale) on (2, 3, 4), tables of SinusoidalEmbeddings(4, xpos)\n");
    const helix::RotaryTables small = helix::SinusoidalEmbeddings(4, 2.0, true).forward(3);
    const Tensor q_small = arange({2, 3, 4}), k_small = arange({2, 3, 4});
    const auto [q_rot, k_rot] = helix::apply_rotary_pos_emb(q_small, k_small, small.freqs, small.scale);
    std::printf("  q' %s, k' %s\n", q_rot.shape_string().c_str(), k_rot.shape_string().c_str());
    print_row("q'[1, 2]", q_rot, {1, 2}, 4);
    print_row("k'[1, 2]", k_rot, {1, 2}, 4);

    std::printf("== bfloat16 q, k of (1, 4, 16, 128) rotated in place, GPT-J style (interleaved pairs), first 64 features\n");
    {
        const helix::RotaryOptions options{helix::Pairing::Interleaved, 64};
        const helix::SinusoidalEmbeddings emb64(64, std::nullopt, false, 10000.0, helix::Pairing::Interleaved);
        const helix::RotaryTables t = emb64.forward(16);
        const Tensor qb({1, 4, 16, 128}, helix::DType::BFloat16), kb({1, 4, 16, 128}, helix::DType::BFloat16);
        std::mt19937 g(3);
        std::uniform_real_distribution<float> u(-1, 1);
        for (const Tensor *t16 : {&qb, &kb}) {
            helix::ref::for_each_index(t16->shape(), [&](const std::vector<int64_t> &i) { helix::ref::store(*t16, i, u(g)); });
        }
        const Tensor q_before = qb.contiguous();
        helix::apply_rotary_pos_emb(qb, kb, t.freqs, {}, qb, kb, options);  // outputs = inputs: in place
        std::printf("  q[0, 1, 15, :4]   before %9.5f %9.5f %9.5f %9.5f\n", helix::ref::value(q_before, {0, 1, 15, 0}),
                    helix::ref::value(q_before, {0, 1, 15, 1}), helix::ref::value(q_before, {0, 1, 15, 2}),
                    helix::ref::value(q_before, {0, 1, 15, 3}));
        std::printf("                    after  %9.5f %9.5f %9.5f %9.5f\n", helix::ref::value(qb, {0, 1, 15, 0}),
                    helix::ref::value(qb, {0, 1, 15, 1}), helix::ref::value(qb, {0, 1, 15, 2}),
                    helix::ref::value(qb, {0, 1, 15, 3}));
        // Against float64, in bfloat16 ulps; features 64.. must be untouched.
        double worst_ulps = 0;
        bool passed_through = true;
        helix::ref::for_each_index(qb.shape(), [&](const std::vector<int64_t> &i) {
            const int64_t j = i[3], row = i[2];
            const double x = helix::ref::value(q_before, i), got = helix::ref::value(qb, i);
            if (j >= 64) {
                passed_through &= got == x;
                return;
            }
            std::vector<int64_t> p = i;
            p[3] = j ^ 1;
            const double a = helix::ref::element(t.freqs, {row, j});
            const double want = x * std::cos(a) + (j % 2 ? 1.0 : -1.0) * helix::ref::value(q_before, p) * std::sin(a);
            worst_ulps = std::max(worst_ulps, std::fabs(got - want) / helix::ref::ulp(helix::DType::BFloat16, want));
        });
        std::printf("  q': max error %.2f bfloat16 ulp of the float64 result (bound 1); features 64..127 %s\n",
                    worst_ulps, passed_through ? "untouched" : "CHANGED");
        if (worst_ulps > 1.0 || !passed_through) return 1;
    }

    {
        // Serving: a decode step (each sequence's new token at its own position, position
        // ids), a packed varlen prefill (cu_seqlens), and training's backward pass.
        std::printf("== positions: a decode step, a varlen prefill, a backward pass (Llama-style theta 500000)\n");
        const int64_t d = 128;
        const helix::SinusoidalEmbeddings emb(d, std::nullopt, false, 500000.0);
        const helix::RotaryTable no_table = helix::RotaryTable::inv_freq(emb.inv_freq());  // angles in the kernel
        const Tensor q({4, 32, 1, d}), k({4, 8, 1, d});  // 4 sequences, one new token each
        Tensor ids({4, 1}, helix::DType::Int32);
        const int32_t steps[] = {17, 4095, 0, 1000};
        std::copy(steps, steps + 4, static_cast<int32_t *>(ids.data()));
        q.at({1, 0, 0, 0}) = 1.0f;
        helix::RotaryOptions decode;
        decode.positions = helix::Positions::ids(ids);
        helix::apply_rotary_pos_emb(q, k, no_table, q, k, decode);  // in place
        const double angle = 4095.0 * static_cast<const float *>(emb.inv_freq().data())[0];
        std::printf("  decode step, sequence 1 at position 4095: q'[1, 0, 0, 0] = %.6f (cos %.6f)\n",
                    q.at({1, 0, 0, 0}), std::cos(static_cast<float>(angle)));

        // Sequences of 3, 0 and 5 tokens packed into (8, 32, d), each from position 0.
        const Tensor packed({8, 32, d}), rotated({8, 32, d}), back({8, 32, d});
        for (int64_t t = 0; t < 8; t++) packed.at({t, 0, 1}) = 1.0f;
        Tensor cu({4}, helix::DType::Int32);
        const int32_t bounds[] = {0, 3, 3, 8};
        std::copy(bounds, bounds + 4, static_cast<int32_t *>(cu.data()));
        helix::RotaryOptions varlen;
        varlen.positions = helix::Positions::varlen(cu);
        const helix::RotaryTables table = emb.forward(4096);
        const helix::RotaryTable angles = helix::RotaryTable::angles(table.freqs);
        helix::apply_rotary_pos_emb(packed, Tensor(), angles, rotated, Tensor(), varlen);
        std::printf("  varlen: token 3 (first of the third sequence) q'[3, 0, 1] = %.6f (position 0: unchanged)\n",
                    rotated.at({3, 0, 1}));
        // The backward pass (conjugate) of the same call takes the gradient back: here R(-a) R(a) = 1.
        varlen.conjugate = true;
        helix::apply_rotary_pos_emb(rotated, Tensor(), angles, back, Tensor(), varlen);
        double worst = 0;
        for (int64_t t = 0; t < 8; t++) worst = std::max(worst, std::fabs(back.at({t, 0, 1}) - 1.0));
        std::printf("  backward of the varlen call: max |x - R(-a) R(a) x| = %.2g\n", worst);
        if (worst > 1e-5) return 1;
    }

    {
        // Long context: Llama 3.1's table (theta 500000, rope_scaling llama3: factor 8, low and
        // high frequency factors 1 and 4, original context 8192) and the error of its angles
        // against float64 at long positions: the float32 product (fp32, what PyTorch and HF
        // form) and the exact one reduced modulo 2 pi (accurate).
        std::printf("== long context: Llama 3.1 (theta 500000, llama3 scaling) fp32 vs accurate angles\n");
        const int64_t d = 128;
        const helix::RopeScaling llama31 = helix::RopeScaling::llama3(8.0, 1.0, 4.0, 8192);
        const helix::SinusoidalEmbeddings fp32(d, std::nullopt, false, 500000.0, helix::Pairing::HalfSplit, llama31);
        const helix::SinusoidalEmbeddings accurate(d, std::nullopt, false, 500000.0, helix::Pairing::HalfSplit, llama31,
                                                   helix::AngleMode::Accurate);
        const helix::Tensor inv_freq = fp32.inv_freq();
        const float *inv = static_cast<const float *>(inv_freq.data());
        const std::vector<double> exact_inv = fp32.inv_freq_f64();  // float64 frequencies
        std::printf("  inv_freq[0, 32, 48, 63] = %.9g %.9g %.9g %.9g (attention factor %g)\n", inv[0], inv[32], inv[48],
                    inv[63], fp32.attention_factor());
        for (int bits : {16, 18, 20}) {
            const int64_t position = (int64_t(1) << bits) - 1;  // 2^k itself times a float is exact
            double worst[2] = {0, 0};
            for (int m = 0; m < 2; m++) {
                const helix::Tensor freqs({1, d}), scale({1});
                (m ? accurate : fp32).window(position + 1, position, freqs, scale);
                for (int64_t j = 0; j < d / 2; j++) {
                    const double exact = static_cast<double>(position) * exact_inv[j];
                    const double a = freqs.at({0, j});
                    worst[m] = std::max({worst[m], std::fabs(std::cos(a) - std::cos(exact)),
                                         std::fabs(std::sin(a) - std::sin(exact))});
                }
            }
            std::printf("  position 2^%d - 1: max |cos, sin error| vs float64: fp32 %.2e, accurate %.2e\n", bits,
                        worst[0], worst[1]);
            if (worst[1] > 1e-6) return 1;
        }
    }

    const int64_t b = 1, h = 32, n = 4096, d = 128;
    std::printf("== RoPE with xPos (scale_base 512) on q, k of (%lld, %lld, %lld, %lld) float32\n", (long long)b,
                (long long)h, (long long)n, (long long)d);
    const helix::SinusoidalEmbeddings emb(d, 512.0, true);
    const helix::RotaryTables tables = emb.forward(n);
    const Tensor q({b, h, n, d}), k({b, h, n, d}), q_out({b, h, n, d}), k_out({b, h, n, d});
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> dist(-1, 1);
    for (const Tensor *t : {&q, &k}) {
        float *p = static_cast<float *>(t->data());
        std::generate(p, p + t->numel(), [&] { return dist(rng); });
    }
    helix::apply_rotary_pos_emb(q, k, tables.freqs, tables.scale, q_out, k_out);

    // Error in units of the SPEC section 4 bound scale * max(|x_j|, |x_pair|), and absolute.
    std::vector<double> cos_t(n * d), sin_t(n * d);
    for (int64_t i = 0; i < n * d; i++) {
        cos_t[i] = std::cos(double(static_cast<const float *>(tables.freqs.data())[i]));
        sin_t[i] = std::sin(double(static_cast<const float *>(tables.freqs.data())[i]));
    }
    double worst_relative = 0, worst_absolute = 0;
    for (int pass = 0; pass < 2; pass++) {
        const Tensor &in = pass ? k : q, &out = pass ? k_out : q_out;
        const float *xp = static_cast<const float *>(in.data()), *op = static_cast<const float *>(out.data());
        const float *sp = static_cast<const float *>(tables.scale.data());
        for (int64_t row = 0; row < b * h * n; row++) {
            const int64_t pos = row % n;
            for (int64_t j = 0; j < d; j++) {
                const int64_t partner = j < d / 2 ? j + d / 2 : j - d / 2, e = pos * d + j;
                const double s = pass ? 1.0 / sp[e] : sp[e];
                const double rotated = j < d / 2 ? -xp[row * d + partner] : xp[row * d + partner];
                const double want = (xp[row * d + j] * cos_t[e] + rotated * sin_t[e]) * s;
                const double err = std::fabs(op[row * d + j] - want);
                const double bound = s * std::max(std::fabs(xp[row * d + j]), std::fabs(xp[row * d + partner]));
                worst_absolute = std::max(worst_absolute, err);
                if (bound > 0) worst_relative = std::max(worst_relative, err / bound);
            }
        }
    }
    std::printf("  max error vs float64 reference: %.3g absolute, %.3g x scale x max(|x_j|, |x_pair|) (SPEC bound 4e-06)\n",
                worst_absolute, worst_relative);

    const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
    const double bytes = 4.0 * q.numel() * sizeof(float);  // read q, k; write q', k'
    const double t_rope = best_seconds(10, [&] { helix::apply_rotary_pos_emb(q, k, tables.freqs, tables.scale, q_out, k_out); });
    // The roofline: the fastest of the copies (which one wins differs between machines).
    double t_copy = 1e30;
    const char *best_copy = "";
    for (const helix::bench::CopyKind kind : helix::bench::copy_kinds()) {
        const double t = best_seconds(10, [&] {
            helix::bench::parallel_copy(q, q_out, threads, kind);
            helix::bench::parallel_copy(k, k_out, threads, kind);
        });
        if (t < t_copy) t_copy = t, best_copy = helix::bench::copy_name(kind);
    }
    std::printf("  apply_rotary_pos_emb: %.2f ms, %.2f GB/s (read q, k + write q', k' = %.0f MB)\n", t_rope * 1e3,
                bytes / t_rope / 1e9, bytes / 1e6);
    std::printf("  best copy of the same bytes (%s, %u threads): %.2f ms, %.2f GB/s -> helix at %.0f%% of copy\n",
                best_copy, threads, t_copy * 1e3, bytes / t_copy / 1e9, 100.0 * t_copy / t_rope);
    return worst_relative <= 4e-6 ? 0 : 1;
}
