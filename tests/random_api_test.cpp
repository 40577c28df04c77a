// Randomized API test: a seeded generator of thousands of calls over the whole argument
// space of the three operations (ranks, extents 0/1/odd/large, padded, transposed,
// reversed and broadcast views, every scale form, q shorter than k, windows of tables,
// storage types, pairings, partial rotary, in place and partly in place, positions
// (start, offsets, ids; q's and k's own), table forms and the backward pass),
// run on every kernel set of this binary (and, through ctest's HELIX_TEST_ISA runs, every
// ISA branch). A case is valid by construction or carries exactly one defect:
//   valid     -> the call succeeds and matches the float64 reference (SPEC section 4);
//   defective -> helix::Error naming the defective argument, and no output written.
// A failing case prints its seed; HELIX_RANDOM_SEED=<seed> runs that case alone, and
// HELIX_RANDOM_CASES=<n> sets the number of cases per kernel set (default 1500).
#include "streaming.h"
#include "test_util.h"

#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>

namespace helix::test {
namespace {

constexpr float kSentinel = -12345.0f;  // what outputs hold before a call

struct Generator {
    std::mt19937 rng;
    std::vector<Tensor> storage;  // memory behind wrapped views, alive for the case
    std::string log;              // what the case is, for the failure message

    explicit Generator(uint64_t seed) : rng(static_cast<uint32_t>(seed)) {}
    int64_t below(int64_t n) { return static_cast<int64_t>(rng() % static_cast<uint64_t>(n)); }
    bool chance(int percent) { return below(100) < percent; }
    template <typename T>
    T pick(std::initializer_list<T> options) {
        return *(options.begin() + below(static_cast<int64_t>(options.size())));
    }

    int64_t extent() { return chance(5) ? 0 : chance(5) ? 200 + below(300) : pick<int64_t>({1, 1, 2, 3, 5, 7, 16}); }
    int64_t even_dim() { return pick<int64_t>({2, 2, 4, 6, 8, 10, 16, 34, 64, 80, 128}); }

    // A tensor of `shape` in a random layout; inputs may also broadcast (stride 0).
    Tensor view(const std::vector<int64_t> &shape, bool input, DType dtype = DType::Float32) {
        const int rank = static_cast<int>(shape.size());
        enum { Contiguous, Padded, Transposed, Reversed, Broadcast } kind =
            static_cast<decltype(Contiguous)>(below(input ? 5 : 4));
        Tensor t;
        if (kind == Padded && rank >= 1) {
            std::vector<int64_t> wide = shape;
            const int64_t offset = 1 + below(3);
            wide.back() += offset + below(3);
            t = Tensor(wide, dtype).narrow(-1, offset, shape.back());
            log += " padded";
        } else if (kind == Transposed && rank >= 3) {
            std::vector<int64_t> swapped = shape;
            std::swap(swapped[rank - 2], swapped[rank - 3]);
            t = Tensor(swapped, dtype).transpose(-2, -3);
            log += " transposed";
        } else if (kind == Reversed && rank >= 2 && shape[rank - 2] > 0) {
            // Rows in reverse order: a negative row stride.
            storage.emplace_back(shape, dtype);
            const Tensor &s = storage.back();
            std::vector<int64_t> strides = s.strides();
            strides[rank - 2] = -strides[rank - 2];
            char *last_row = static_cast<char *>(s.data()) + (shape[rank - 2] - 1) * s.stride(-2) * s.element_size();
            t = Tensor::wrap(s.numel() ? last_row : s.data(), shape, strides, dtype);
            log += " reversed";
        } else if (kind == Broadcast && rank >= 3 && shape[0] > 1) {
            std::vector<int64_t> one = shape;
            one[0] = 1;
            storage.emplace_back(one, dtype);
            std::vector<int64_t> strides = storage.back().strides();
            strides[0] = 0;
            t = Tensor::wrap(storage.back().data(), shape, strides, dtype);
            log += " broadcast";
        } else {
            t = Tensor(shape, dtype);
        }
        if (input) {
            fill_uniform(t, rng, -2.0f, 2.0f);
        } else {
            ref::for_each_index(shape, [&](const std::vector<int64_t> &i) { ref::store(t, i, kSentinel); });
        }
        return t;
    }

    // A tensor with stride 2 in its last dimension (unsupported).
    Tensor strided_features(const std::vector<int64_t> &shape, DType dtype = DType::Float32) {
        std::vector<int64_t> wide = shape;
        wide.back() *= 2;
        storage.emplace_back(wide, dtype);
        std::vector<int64_t> strides = storage.back().strides();
        strides.back() = 2;
        return Tensor::wrap(storage.back().data(), shape, strides, dtype);
    }

    // An output whose first dimension (extent > 1) has stride 0: it overlaps itself.
    Tensor self_overlapping(const std::vector<int64_t> &shape, DType dtype = DType::Float32) {
        std::vector<int64_t> one = shape;
        one[0] = 1;
        storage.emplace_back(one, dtype);
        std::vector<int64_t> strides = storage.back().strides();
        strides[0] = 0;
        return Tensor::wrap(storage.back().data(), shape, strides, dtype);
    }

    std::vector<int64_t> leading(int max_dims) {
        std::vector<int64_t> dims;
        const int count = static_cast<int>(below(max_dims + 1));
        for (int i = 0; i < count; i++) dims.push_back(chance(10) ? 0 : pick<int64_t>({1, 2, 3, 4}));
        return dims;
    }
};

// The values of a CPU tensor, in index order (empty for others).
std::vector<double> contents(const Tensor &t) {
    std::vector<double> v;
    if (!t.defined() || t.device() != Device::CPU || !t.data()) return v;
    ref::for_each_index(t.shape(), [&](const std::vector<int64_t> &i) { v.push_back(ref::value(t, i)); });
    return v;
}

bool broadcasts(const Tensor &t) {
    for (int i = 0; i < t.rank(); i++) {
        if (t.size(i) > 1 && t.stride(i) == 0) return true;
    }
    return false;
}

bool same_bits(const std::vector<double> &a, const std::vector<double> &b) {
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0);
}

// What a case did: the call, its outputs, the argument named by its defect ("" = valid),
// and the check of a successful call.
struct Case {
    std::function<void()> call;
    std::vector<Tensor> outputs;
    std::string defect;
    std::function<void()> check;
};

// A storage type and pairing the set has kernels for, at random.
std::pair<DType, Pairing> pick_kernels(const KernelSet &set, Generator &g) {
    const std::vector<DType> types = element_types(set);
    const DType dtype = types[g.below(static_cast<int64_t>(types.size()))];
    const Pairing pairing =
        g.chance(50) && set.get().find(dtype, Pairing::Interleaved) ? Pairing::Interleaved : Pairing::HalfSplit;
    g.log += to_string(dtype) + " " + to_string(pairing) + " ";
    return {dtype, pairing};
}

// The positions of one stream of a positioned case: how helix is told, and the position
// of an element (computed here, independently).
struct PositionsPlan {
    Positions positions;
    std::function<int64_t(const std::vector<int64_t> &)> of;
};

// Random positions for a (..., rows, d) tensor of rank 2 to 4 on an n-row table (n > 0):
// a start, per-sequence offsets (int32/int64) or position ids ((rows,) or (b, rows)).
PositionsPlan random_positions(Generator &g, const Tensor &x, int64_t n, const std::string &name) {
    const int rank = x.rank();
    const int64_t rows = x.size(-2), batches = rank == 4 ? x.size(0) : 1;
    auto row_of = [rank](const std::vector<int64_t> &i) { return i[rank - 2]; };
    auto batch_of = [rank](const std::vector<int64_t> &i) { return rank == 4 ? i[0] : 0; };
    const DType index = g.chance(50) ? DType::Int64 : DType::Int32;
    auto put = [&](Tensor &t, int64_t i, int64_t v) {
        if (index == DType::Int64) static_cast<int64_t *>(t.data())[i] = v;
        else static_cast<int32_t *>(t.data())[i] = static_cast<int32_t>(v);
    };
    switch (g.below(3)) {
    case 0: {
        const int64_t first = g.below(n - rows + 1);
        g.log += "; " + name + " start " + std::to_string(first);
        return {Positions::start(first), [=](const std::vector<int64_t> &i) { return first + row_of(i); }};
    }
    case 1: {
        Tensor offsets({batches}, index);
        std::vector<int64_t> values;
        for (int64_t b = 0; b < batches; b++) put(offsets, b, values.emplace_back(g.below(n - rows + 1)));
        g.log += "; " + name + " offsets " + to_string(index);
        return {Positions::offsets(offsets),
                [=](const std::vector<int64_t> &i) { return values[batch_of(i)] + row_of(i); }};
    }
    default: {
        const bool per_batch = g.chance(50);
        Tensor ids(per_batch ? std::vector<int64_t>{batches, rows} : std::vector<int64_t>{rows}, index);
        std::vector<int64_t> values;
        for (int64_t e = 0; e < ids.numel(); e++) put(ids, e, values.emplace_back(g.below(n)));
        g.log += "; " + name + " ids " + to_string(index) + (per_batch ? " per batch" : "");
        return {Positions::ids(ids), [=](const std::vector<int64_t> &i) {
                    return values[(per_batch ? batch_of(i) * rows : 0) + row_of(i)];
                }};
    }
    }
}

Case apply_case(const KernelSet &set, Generator &g) {
    const auto picked = pick_kernels(set, g);
    const DType dtype = picked.first;
    const Pairing pairing = picked.second;
    const int64_t d = g.even_dim(), n = g.extent(), lq = n ? 1 + g.below(n) : 0;
    const int64_t rotary_dim = g.chance(30) ? 2 * (1 + g.below(d / 2)) : d;  // partial rotary: even, <= d
    RotaryOptions options{pairing, rotary_dim == d && g.chance(50) ? 0 : rotary_dim};
    if (set.device == Device::CPU) options.stores = g.pick<Stores>({Stores::Auto, Stores::Ordinary, Stores::Streaming});
    // Streaming's tiles (streaming.h): heads per tile, and small tiles for many of them.
    const int heads_per_tile = options.stores == Stores::Streaming ? g.pick<int>({0, 1, 8}) : 0;
    const int64_t tile_bytes = options.stores == Stores::Streaming && g.chance(50) ? 4096 : 0;
    const bool xpos = g.chance(50), random_angles = g.chance(25);
    const int scaling_kind = static_cast<int>(g.below(4));
    const RopeScaling scaling = scaling_kind == 0   ? RopeScaling()
                                : scaling_kind == 1 ? RopeScaling::linear(2.0)
                                : scaling_kind == 2 ? RopeScaling::llama3(8.0, 1.0, 4.0, 64)
                                                    : RopeScaling::yarn(4.0, 64);
    const AngleMode angles = g.chance(30) ? AngleMode::Accurate : AngleMode::Fp32;
    const SinusoidalEmbeddings emb(rotary_dim, g.pick<double>({8.0, 64.0, 512.0}), xpos, g.pick<double>({10.0, 1e4, 5e5}),
                                   pairing, scaling, angles);
    RotaryTables t = make_tables(set, emb, n);
    if (random_angles) {
        std::uniform_real_distribution<float> angle(-3000.0f, 3000.0f);
        ref::for_each_index(t.freqs.shape(), [&](const std::vector<int64_t> &i) { ref::element(t.freqs, i) = angle(g.rng); });
    }
    auto shape = [&](int64_t rows) {
        std::vector<int64_t> s = g.leading(2);
        s.push_back(rows);
        s.push_back(d);
        return s;
    };
    g.log += "apply d " + std::to_string(d) + " rotary_dim " + std::to_string(rotary_dim) + " N " + std::to_string(n) +
             " Lq " + std::to_string(lq) + " stores " + to_string(options.stores) + " heads per tile " +
             std::to_string(heads_per_tile) + " tile bytes " + std::to_string(tile_bytes) + (xpos ? " xpos" : "") +
             (random_angles ? " random angles" : "") + " scaling " + to_string(scaling.type) + " angles " +
             to_string(angles) + "; q";
    Tensor q = g.view(shape(lq), true, dtype);
    g.log += "; k";
    Tensor k = g.view(shape(n), true, dtype);
    Tensor freqs = t.freqs;
    Scale scale;
    switch (g.below(6)) {
    case 0: g.log += "; no scale"; break;
    case 1: scale = Scale(0.25 + 2.0 * std::uniform_real_distribution<double>()(g.rng)); g.log += "; scalar scale"; break;
    case 2: {
        const Tensor one({1});
        one.at({0}) = 1.5f;
        scale = Scale(one);
        g.log += "; one-element scale";
        break;
    }
    case 3: {
        const Tensor row({1, rotary_dim});
        fill_uniform(row, g.rng, 0.5f, 2.0f);
        scale = Scale(row);
        g.log += "; (1, rotary_dim) scale";
        break;
    }
    case 4: {
        const Tensor column({n, 1});
        fill_uniform(column, g.rng, 0.5f, 2.0f);
        scale = Scale(column);
        g.log += "; (N, 1) scale";
        break;
    }
    default: scale = xpos ? Scale(t.scale) : Scale(); g.log += "; table scale"; break;
    }
    g.log += "; q_out";
    Tensor q_out = g.view(q.shape(), false, dtype);
    g.log += "; k_out";
    Tensor k_out = g.view(k.shape(), false, dtype);

    // In place (15%): each output exactly its own input, unless that input broadcasts.
    if (g.chance(15)) {
        if (!broadcasts(q)) q_out = q;
        if (!broadcasts(k)) k_out = k;
        g.log += "; in place";
    }
    const Tensor q_before = q.contiguous(), k_before = k.contiguous();  // what in place overwrites

    // Positioned (40%, with a table of rows): positions for q (and k's own, or the same),
    // a table form, the backward pass.
    const bool positioned = n > 0 && g.chance(40);
    RotaryTable::Form form = RotaryTable::Form::Angles;
    Tensor cos, sin;
    const Tensor inv_freq = emb.inv_freq(n);
    const std::vector<double> inv_freq_f64 = emb.inv_freq_f64(n);
    float attention = 1.0f;
    PositionsPlan q_plan, k_plan;
    if (positioned) {
        form = g.pick<RotaryTable::Form>({RotaryTable::Form::Angles, RotaryTable::Form::CosSin, RotaryTable::Form::InvFreq});
        options.conjugate = g.chance(50);
        if (g.chance(25)) attention = g.pick<float>({0.5f, 1.25f});
        g.log += "; form " + to_string(form) + (options.conjugate ? " conjugate" : "") + " attention " +
                 std::to_string(attention);
        if (form != RotaryTable::Form::Angles && (scale.tensor().defined() && scale.tensor().size(0) > 1)) {
            scale = Scale();  // a table of rows only for angles here
            g.log += " (no scale)";
        }
        cos = Tensor({n, rotary_dim / 2});
        sin = Tensor({n, rotary_dim / 2});
        ref::for_each_index(cos.shape(), [&](const std::vector<int64_t> &i) {
            const double a = ref::element(freqs, {i[0], pairing == Pairing::HalfSplit ? i[1] : 2 * i[1]});
            ref::element(cos, i) = static_cast<float>(std::cos(a));
            ref::element(sin, i) = static_cast<float>(std::sin(a));
        });
        q_plan = random_positions(g, q, n, "q");
        const bool shared = g.chance(30) && q.rank() == k.rank() && q.size(-2) == k.size(-2) &&
                            (k.rank() < 4 || k.size(0) == q.size(0));
        k_plan = shared ? q_plan : random_positions(g, k, n, "k");
        options.positions = q_plan.positions;
        if (!shared) options.k_positions = k_plan.positions;
        if (shared) g.log += "; k at q's positions";
    }

    std::string defect;
    if (positioned && g.chance(35)) {
        Tensor bad_ids({q.size(-2)}, DType::Int32);
        switch (g.below(4)) {
        case 0:
            if (form != RotaryTable::Form::InvFreq) {
                options.positions = Positions::start(n - q.size(-2) + 1);  // one row past the table
                defect = "positions";
            }
            break;
        case 1:
            options.positions = Positions::ids(Tensor({q.size(-2)}));  // float32
            defect = "positions";
            break;
        case 2:
            if (q.size(-2) > 0) {
                static_cast<int32_t *>(bad_ids.data())[0] = -1 - static_cast<int32_t>(g.below(3));
                options.positions = Positions::ids(bad_ids);
                defect = "positions";
            }
            break;
        default:
            options.positions = Positions::offsets(Tensor({(q.rank() == 4 ? q.size(0) : 1) + 1}, DType::Int32));
            defect = "positions";
        }
        if (!defect.empty()) g.log += "; defect in " + defect;
    } else if (g.chance(35)) {
        switch (positioned ? g.pick<int64_t>({1, 2, 3, 7, 8, 9, 10, 11, 12, 14}) : g.below(15)) {
        case 0: freqs = Tensor({n, rotary_dim, 1}); defect = "freqs"; break;
        case 1: q = g.view({d}, true, dtype); defect = "q"; break;
        case 2: k = g.view({1, 1, 1, n, d}, true, dtype); defect = "k"; break;
        case 3: k = g.view({n, d + 2}, true, dtype); defect = "k"; break;
        case 4: q = g.view({n + 1, d}, true, dtype); defect = "q"; break;
        case 5: k = g.view({n + 1 + g.below(3), d}, true, dtype); defect = "k"; break;
        case 6: scale = Scale(Tensor({n + 2, rotary_dim})); defect = "scale"; break;
        case 7: scale = Scale(g.pick<double>({0.0, -1.0, double(NAN), 1e39, 1e-50})); defect = "scale"; break;
        case 8: k = Tensor(k.shape(), dtype == DType::Float16 ? DType::BFloat16 : DType::Float16); defect = "k"; break;
        case 9: q = g.strided_features(q.shape(), dtype); defect = "q"; break;
        case 10: k_out = Tensor({n + 1, d}, dtype); defect = "k_out"; break;
        case 11:
            if (k.numel() > 0 && n >= 2) {  // k_out one row below k in one buffer: partly in place
                std::vector<int64_t> taller = k.shape();
                taller[taller.size() - 2] += 1;
                g.log += "; partly in place over";
                const Tensor buffer = g.view(taller, true, dtype);
                k = buffer.narrow(-2, 0, n);
                k_out = buffer.narrow(-2, 1, n);
                defect = "k_out";
            }
            break;
        case 12: options.rotary_dim = g.pick<int64_t>({d + 2, rotary_dim - 1, -2}); defect = "rotary_dim"; break;
        case 13: freqs = Tensor({n, rotary_dim + 2}); defect = "freqs"; break;
        default:
            if (q.numel() > 1 && q.size(0) > 1) {
                q_out = g.self_overlapping(q.shape(), dtype);
                defect = "q_out";
            }
        }
        if (!defect.empty()) g.log += "; defect in " + defect;
    }
    const KernelSet *s = &set;
    if (positioned) {
        // Accurate no-table from the embedding: its double frequencies (high and low parts).
        const bool from_emb = form == RotaryTable::Form::InvFreq && angles == AngleMode::Accurate && !xpos;
        const RotaryTable table = (form == RotaryTable::Form::Angles   ? RotaryTable::angles(freqs, scale)
                                   : form == RotaryTable::Form::CosSin ? RotaryTable::cos_sin(cos, sin, scale)
                                   : from_emb                          ? RotaryTable::inv_freq(emb, n, scale)
                                                                       : RotaryTable::inv_freq(inv_freq, scale, angles))
                                      .with_attention_factor(attention);
        auto coefficients = [=](const PositionsPlan &plan, bool inverse) {
            return [=](const std::vector<int64_t> &i) {
                const int64_t p = plan.of(i), j = i.back(), f = ref::frequency_of(j, rotary_dim, pairing);
                double c, sn;
                if (form == RotaryTable::Form::CosSin) {
                    c = ref::element(cos, {p, f});
                    sn = ref::element(sin, {p, f});
                } else {
                    const double inv = from_emb ? inv_freq_f64[static_cast<size_t>(f)] : ref::element(inv_freq, {f});
                    const double a = form == RotaryTable::Form::Angles ? double(ref::element(freqs, {p, j}))
                                     : angles == AngleMode::Accurate   ? double(p) * inv
                                                                       : double(float(p) * float(inv));
                    c = std::cos(a);
                    sn = std::sin(a);
                }
                const double sc = scale_at(scale, p, j);
                return Coefficients{c, options.conjugate ? -sn : sn, (inverse ? 1.0 / sc : sc) * attention};
            };
        };
        return Case{[=] {
                        const detail::ScopedStreamTiles tiles(heads_per_tile, tile_bytes);
                        run_apply_table(*s, q, k, table, q_out, k_out, options);
                    },
                    {q_out, k_out},
                    defect,
                    [=] {
                        check_rotation_with(q_before, q_out, coefficients(q_plan, false), 4e-6, "q'", options);
                        check_rotation_with(k_before, k_out, coefficients(k_plan, true), 4e-6, "k'", options);
                    }};
    }
    return Case{[=] {
                    const detail::ScopedStreamTiles tiles(heads_per_tile, tile_bytes);
                    run_apply(*s, q, k, freqs, scale, q_out, k_out, options);
                },
                {q_out, k_out},
                defect,
                [=] {
                    check_rotation(q_before, q_out, freqs, scale, false, 4e-6, "q'", options);
                    check_rotation(k_before, k_out, freqs, scale, true, 4e-6, "k'", options);
                }};
}

Case rotate_half_case(const KernelSet &set, Generator &g) {
    const auto picked = pick_kernels(set, g);
    const DType dtype = picked.first;
    const Pairing pairing = picked.second;
    std::vector<int64_t> shape = g.leading(3);
    shape.push_back(g.even_dim());
    g.log += "rotate_half rank " + std::to_string(shape.size()) + "; x";
    Tensor x = g.view(shape, true, dtype);
    g.log += "; out";
    Tensor out = g.view(shape, false, dtype);
    if (g.chance(15) && !broadcasts(x)) {
        out = x;
        g.log += "; in place";
    }
    const Tensor x_before = x.contiguous();
    std::string defect;
    if (g.chance(35)) {
        switch (g.below(6)) {
        case 0: x = g.view({1, 1, 1, 1, 2}, true, dtype); defect = "x"; break;
        case 1: x = g.view({2, 3}, true, dtype); out = g.view({2, 3}, false, dtype); defect = "x"; break;
        case 2: out = Tensor({shape.back() + 2}, dtype); defect = "out"; break;
        case 3:
            if (x.numel() > 0) {  // out one element on from x in one buffer: partly in place
                std::vector<int64_t> taller = shape;
                taller.insert(taller.begin(), 2);
                g.log += "; partly in place";
                g.storage.emplace_back(taller, dtype);
                const Tensor &buffer = g.storage.back();
                fill_uniform(buffer, g.rng);
                std::vector<int64_t> strides = buffer.strides();
                strides.erase(strides.begin());
                x = Tensor::wrap(buffer.data(), shape, strides, dtype);
                out = Tensor::wrap(static_cast<char *>(buffer.data()) + buffer.element_size(), shape, strides, dtype);
                defect = "out";
            }
            break;
        case 4: x = g.strided_features(shape, dtype); defect = "x"; break;
        default:
            if (shape.size() > 1 && shape[0] > 1 && x.numel() > 1) {
                out = g.self_overlapping(shape, dtype);
                defect = "out";
            }
        }
        if (!defect.empty()) g.log += "; defect in " + defect;
    }
    const KernelSet *s = &set;
    return Case{[=] { run_rotate_half(*s, x, out, pairing); },
                {out},
                defect,
                [=] {
                    const int64_t half = x.size(-1) / 2;
                    const bool split = pairing == Pairing::HalfSplit;
                    ref::for_each_index(x.shape(), [&](const std::vector<int64_t> &i) {
                        std::vector<int64_t> p = i;
                        const int64_t j = i.back();
                        const bool first = split ? j < half : j % 2 == 0;
                        p.back() = split ? (first ? j + half : j - half) : (j ^ 1);
                        const double want = first ? -ref::value(x_before, p) : ref::value(x_before, p);
                        ASSERT_EQ(ref::value(out, i), want);
                    });
                }};
}

Case tables_case(const KernelSet &set, Generator &g) {
    const int64_t d = g.even_dim(), seq_len = g.extent(), start = seq_len ? g.below(seq_len) : 0;
    const int64_t rows = seq_len ? g.below(seq_len - start + 1) : 0;
    const bool xpos = g.chance(50);
    const double theta = g.pick<double>({10.0, 1e4, 5e5, 1e6}), scale_base = g.pick<double>({4.0, 64.0, 8192.0});
    const Pairing pairing = g.chance(50) ? Pairing::Interleaved : Pairing::HalfSplit;
    const SinusoidalEmbeddings emb(d, scale_base, xpos, theta, pairing);
    // CPU stores, and small tiles for many of them when streaming.
    const Stores stores =
        set.device == Device::CPU ? g.pick<Stores>({Stores::Auto, Stores::Ordinary, Stores::Streaming}) : Stores::Auto;
    const int64_t tile_bytes = stores == Stores::Streaming && g.chance(50) ? 4096 : 0;
    g.log += to_string(pairing) + " tables d " + std::to_string(d) + " seq_len " + std::to_string(seq_len) + " window [" +
             std::to_string(start) + ", +" + std::to_string(rows) + ")" + (xpos ? " xpos" : "") + " stores " +
             to_string(stores) + " tile bytes " + std::to_string(tile_bytes) + "; freqs";
    Tensor freqs = g.view({rows, d}, false);
    g.log += "; scale";
    Tensor scale = g.view(xpos ? std::vector<int64_t>{rows, d} : std::vector<int64_t>{1}, false);
    int64_t first = start, len = seq_len;
    std::string defect;
    if (g.chance(35)) {
        switch (g.below(5)) {
        case 0: len = -1 - g.below(5); defect = "seq_len"; break;
        case 1: first = seq_len - rows + 1 + g.below(3); defect = "start"; break;
        case 2: freqs = Tensor({rows, d + 2}); defect = "freqs"; break;
        case 3: scale = Tensor({rows + 1, d}); defect = "scale"; break;
        default:
            if (rows > 1) {
                freqs = g.self_overlapping({rows, d});
                defect = "freqs";
            }
        }
        if (!defect.empty()) g.log += "; defect in " + defect;
    }
    const KernelSet *s = &set;
    return Case{[=] {
                    const detail::ScopedStreamTiles tiles(0, tile_bytes);
                    run_tables(*s, emb, len, first, freqs, scale, stores);
                },
                {freqs, scale},
                defect,
                [=] {
                    ref::for_each_index(freqs.shape(), [&](const std::vector<int64_t> &i) {
                        const float want = ref::angle(first + i[0], i[1], d, theta, pairing), got = ref::element(freqs, i);
                        ASSERT_EQ(std::memcmp(&want, &got, sizeof want), 0) << "freqs" << ::testing::PrintToString(i);
                        if (xpos) {
                            const double w = ref::xpos_scale(first + i[0], i[1], d, len, scale_base, pairing);
                            const double sc = ref::element(scale, i);
                            if (w < FLT_MAX) {
                                ASSERT_LE(std::fabs(sc - w), std::max(2.4e-7 * w, 4 * 0x1p-149)) << "scale";
                            }
                        }
                    });
                    if (!xpos) ASSERT_EQ(ref::element(scale, {0}), 1.0f);
                }};
}

// Runs case `seed`; returns false (after reporting) when it fails.
bool run_case(const KernelSet &set, uint64_t seed, int &valid, int &defective) {
    Generator g(seed);
    const int kind = static_cast<int>(g.below(3));
    const Case c = kind == 0 ? apply_case(set, g) : kind == 1 ? rotate_half_case(set, g) : tables_case(set, g);
    const std::string where = std::string(set.name) + " seed " + std::to_string(seed) + " (" + g.log +
                              "); reproduce with HELIX_RANDOM_SEED=" + std::to_string(seed);
    if (std::getenv("HELIX_RANDOM_SEED")) std::printf("[RANDOM] %s\n", where.c_str());  // the case rerun alone
    std::fflush(stdout);
    const bool failed_before = ::testing::Test::HasFailure();
    std::vector<std::vector<double>> before;
    for (const Tensor &o : c.outputs) before.push_back(contents(o));
    try {
        c.call();
        if (!c.defect.empty()) {
            ADD_FAILURE() << where << ": accepted although " << c.defect << " is defective";
            return false;
        }
        valid++;
        SCOPED_TRACE(where);
        c.check();
    } catch (const Error &e) {
        if (c.defect.empty()) {
            ADD_FAILURE() << where << ": valid call rejected: " << e.what();
            return false;
        }
        defective++;
        const std::string message = e.what();
        if (message.find(": " + c.defect + ":") == std::string::npos && message.find(" " + c.defect) == std::string::npos) {
            ADD_FAILURE() << where << ": the error does not name " << c.defect << ": " << message;
        }
        for (size_t o = 0; o < c.outputs.size(); o++) {
            if (!same_bits(contents(c.outputs[o]), before[o])) {
                ADD_FAILURE() << where << ": output " << o << " was written by a rejected call";
            }
        }
    }
    return failed_before || !::testing::Test::HasFailure();
}

class RandomApi : public ::testing::TestWithParam<KernelSet> {};

TEST_P(RandomApi, ValidCallsMatchTheReferenceAndDefectiveOnesAreErrors) {
    if (const char *one = std::getenv("HELIX_RANDOM_SEED")) {
        int valid = 0, defective = 0;
        run_case(GetParam(), std::strtoull(one, nullptr, 10), valid, defective);
        return;
    }
    const char *count = std::getenv("HELIX_RANDOM_CASES");
    const int cases = count ? std::atoi(count) : 1500;
    int valid = 0, defective = 0, failed = 0;
    for (int i = 0; i < cases && failed < 5; i++) {
        failed += !run_case(GetParam(), 1000 + static_cast<uint64_t>(i), valid, defective);
    }
    std::printf("[RANDOM] %s: %d cases, %d valid and matching, %d defective and rejected\n", GetParam().name,
                valid + defective, valid, defective);
    EXPECT_GT(valid, cases / 2);
    EXPECT_GT(defective, cases / 10);
}

INSTANTIATE_TEST_SUITE_P(Schedules, RandomApi, ::testing::ValuesIn(kKernelSets), kernel_set_name);

}  // namespace
}  // namespace helix::test
