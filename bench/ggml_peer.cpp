// ggml's rope as a peer (ggml_peer.h): one graph of two ggml_rope_ext nodes (q and k), computed
// with ggml's CPU graph plan and one thread pool shared by every case, both made once.
#include "ggml_peer.h"

#include <ggml-cpu.h>
#include <ggml.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace helix::bench {

namespace {

// The pool the peers' graphs run on (llama.cpp keeps one too): threads created once, so an
// iteration pays ggml's hand-off to them, not thread creation. Sized by the first call: every
// peer runs with helix's thread count.
ggml_threadpool *thread_pool(int threads) {
    static ggml_threadpool *pool = [threads] {
        ggml_threadpool_params params = ggml_threadpool_params_default(threads);
        return ggml_threadpool_new(&params);
    }();
    return pool;
}

struct Rotation {
    ggml_tensor *x, *out;
    int64_t first_position;
};

float load(const ggml_tensor *t, int64_t i) {
    return t->type == GGML_TYPE_F16 ? ggml_fp16_to_fp32(static_cast<const ggml_fp16_t *>(t->data)[i])
                                    : static_cast<const float *>(t->data)[i];
}

// Checks the output of the rows of the first, middle and last position of every head of the
// first and last sequence against the rotation in double precision: theta_i =
// pos * 10000^(-2i/d), out_i = x_i cos - x_{i+d/2} sin, out_{i+d/2} = x_{i+d/2} cos + x_i sin.
// Allowed: 1e-4 of the largest output, plus what float32 angles cost (ggml forms theta_i by i
// float32 multiplications of pos by powf(10000, -2/d): off by less than theta_i (i+1) 2^-22,
// a few 1e-3 radians at position 16K, which moves a pair by up to its magnitude times that),
// plus float16's rounding of the stores. Returns the largest error over its allowance.
double worst_error(const Rotation &r) {
    const int64_t d = r.x->ne[0], heads = r.x->ne[1], seq = r.x->ne[2], batch = r.x->ne[3], half = d / 2;
    const double store = r.out->type == GGML_TYPE_F16 ? std::ldexp(1.0, -11) : 0.0;
    struct Sample {
        double ref, got, allowed;
    };
    std::vector<Sample> samples;
    double max_ref = 0;
    for (const int64_t b : {int64_t(0), batch - 1}) {
        for (const int64_t s : {int64_t(0), seq / 2, seq - 1}) {
            const double pos = double(r.first_position + s);
            for (int64_t h = 0; h < heads; h++) {
                const int64_t row = ((b * seq + s) * heads + h) * d;
                for (int64_t i = 0; i < half; i++) {
                    const double theta = pos * std::pow(10000.0, -2.0 * double(i) / double(d));
                    const double x1 = load(r.x, row + i), x2 = load(r.x, row + i + half);
                    const double angle_error = std::hypot(x1, x2) * theta * double(i + 1) * std::ldexp(1.0, -22);
                    const double ref1 = x1 * std::cos(theta) - x2 * std::sin(theta);
                    const double ref2 = x2 * std::cos(theta) + x1 * std::sin(theta);
                    samples.push_back({ref1, load(r.out, row + i), angle_error + store * std::abs(ref1)});
                    samples.push_back({ref2, load(r.out, row + i + half), angle_error + store * std::abs(ref2)});
                    max_ref = std::max({max_ref, std::abs(ref1), std::abs(ref2)});
                }
            }
        }
    }
    double worst = 0;
    for (const Sample &e : samples) worst = std::max(worst, std::abs(e.got - e.ref) / (1e-4 * max_ref + e.allowed));
    return worst;
}

}  // namespace

const char *ggml_peer_version() { return ggml_version(); }

struct GgmlRope::Impl {
    ggml_context *ctx = nullptr;
    ggml_cgraph *graph = nullptr;
    ggml_cplan plan{};
    std::vector<uint8_t> work;
    std::vector<int32_t> q_positions, k_positions;
    Rotation q, k;
};

GgmlRope::GgmlRope(int64_t batch, int64_t q_heads, int64_t k_heads, int64_t q_rows, int64_t n, int64_t d,
                   bool float16, int threads, const void *q, const void *k, void *q_out, void *k_out)
    : impl_(std::make_unique<Impl>()) {
    Impl &m = *impl_;
    // Tensor and graph headers only: the data are the caller's buffers and the positions.
    const ggml_init_params params{8 * ggml_tensor_overhead() + ggml_graph_overhead(), nullptr, /*no_alloc=*/true};
    m.ctx = ggml_init(params);
    const ggml_type type = float16 ? GGML_TYPE_F16 : GGML_TYPE_F32;
    auto rope = [&](const void *x, void *out, int64_t heads, int64_t seq, int64_t first, std::vector<int32_t> &pos) {
        ggml_tensor *t = ggml_new_tensor_4d(m.ctx, type, d, heads, seq, batch);
        t->data = const_cast<void *>(x);
        for (int64_t s = 0; s < seq; s++) pos.push_back(static_cast<int32_t>(first + s));
        ggml_tensor *p = ggml_new_tensor_1d(m.ctx, GGML_TYPE_I32, seq);
        p->data = pos.data();
        ggml_tensor *r = ggml_rope_ext(m.ctx, t, p, /*freq_factors=*/nullptr, static_cast<int>(d), GGML_ROPE_TYPE_NEOX,
                                       /*n_ctx_orig=*/0, /*freq_base=*/10000.0f, /*freq_scale=*/1.0f,
                                       /*ext_factor=*/0.0f, /*attn_factor=*/1.0f, /*beta_fast=*/32.0f,
                                       /*beta_slow=*/1.0f);
        r->data = out;
        return Rotation{t, r, first};
    };
    m.q = rope(q, q_out, q_heads, q_rows, n - q_rows, m.q_positions);
    m.k = rope(k, k_out, k_heads, n, 0, m.k_positions);
    m.graph = ggml_new_graph(m.ctx);
    ggml_build_forward_expand(m.graph, m.q.out);
    ggml_build_forward_expand(m.graph, m.k.out);
    ggml_threadpool *pool = thread_pool(threads);
    m.plan = ggml_graph_plan(m.graph, threads, pool);
    m.work.resize(m.plan.work_size);
    m.plan.work_data = m.work.data();

    compute();
    for (const Rotation *r : {&m.q, &m.k}) {
        const double worst = worst_error(*r);
        if (!(worst <= 1)) {  // NaN included
            std::fprintf(stderr,
                         "ggml_rope_ext differs from the reference rotation (%s, %s of d %lld from position %lld): "
                         "%.3g times the allowed error\n",
                         float16 ? "float16" : "float32", r == &m.q ? "q" : "k", static_cast<long long>(d),
                         static_cast<long long>(r->first_position), worst);
            std::abort();
        }
    }
}

GgmlRope::~GgmlRope() { ggml_free(impl_->ctx); }

void GgmlRope::compute() {
    if (ggml_graph_compute(impl_->graph, &impl_->plan) != GGML_STATUS_SUCCESS) {
        std::fprintf(stderr, "ggml_graph_compute failed\n");
        std::abort();
    }
}

}  // namespace helix::bench
