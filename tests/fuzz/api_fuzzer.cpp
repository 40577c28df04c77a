// libFuzzer target over helix's public API and its C ABI (built in the AddressSanitizer +
// UndefinedBehaviorSanitizer build with clang, cmake/HelixSanitizers.cmake). The fuzz bytes
// choose the operation, every number (dim, theta, scale_base, seq_len, start, scale), and
// each tensor's rank, extents, strides (negative, zero, overlapping), offset into its
// memory, dtype and values. A call may succeed or throw helix::Error; anything else is a
// finding: another exception, a crash, a sanitizer report, or a write anywhere but an
// output's own elements (every tensor lives in a buffer of its own, filled with a pattern
// that is compared after the call).
#include "helix/helix.h"
#include "helix/helix_c.h"
#include "kernels.h"
#include "streaming.h"

#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <set>
#include <vector>

namespace {

using helix::DType;
using helix::Tensor;

constexpr uint8_t kPattern = 0xA5;

// A tensor over a buffer of its own, with the buffer's original bytes kept for comparison.
struct Fuzzed {
    std::vector<uint8_t> memory, original;
    Tensor tensor;
    bool output = false;
    bool wrapped = false;  // a view of `memory` (else an owning or undefined tensor)

    // Byte offsets (into memory) of the tensor's elements: where an output may write.
    std::set<int64_t> element_bytes() const {
        std::set<int64_t> bytes;
        if (!wrapped || tensor.numel() == 0) return bytes;
        const int64_t size = tensor.element_size();
        const int64_t base = static_cast<const uint8_t *>(tensor.data()) - memory.data();
        std::vector<int64_t> offsets{base};
        for (int d = 0; d < tensor.rank(); d++) {
            std::vector<int64_t> next;
            for (int64_t o : offsets) {
                for (int64_t i = 0; i < tensor.size(d); i++) next.push_back(o + i * tensor.stride(d) * size);
            }
            offsets.swap(next);
        }
        for (int64_t o : offsets) {
            for (int64_t b = 0; b < size; b++) bytes.insert(o + b);
        }
        return bytes;
    }
};

Fuzzed make_tensor(FuzzedDataProvider &in, bool output) {
    Fuzzed f;
    f.output = output;
    const int kind = in.ConsumeIntegralInRange(0, 9);
    if (kind == 0) return f;  // undefined
    const int rank = in.ConsumeIntegralInRange(0, 5);
    std::vector<int64_t> shape(rank), strides(rank);
    const int type_pick = in.ConsumeIntegralInRange(0, 9);
    const DType dtype = type_pick == 0   ? DType::Float16
                        : type_pick == 1 ? DType::BFloat16
                        : type_pick == 8 ? DType::Int32  // positions
                        : type_pick == 9 ? DType::Int64
                                         : DType::Float32;
    const int64_t size = dtype == DType::Float16 || dtype == DType::BFloat16 ? 2 : dtype == DType::Int64 ? 8 : 4;
    int64_t lo = 0, hi = 0, numel = 1;
    for (int i = 0; i < rank; i++) {
        shape[i] = in.ConsumeIntegralInRange<int64_t>(0, in.ConsumeBool() ? 6 : 40);
        numel *= shape[i];
    }
    if (numel > (1 << 16)) {  // keep the fuzzer fast: such shapes become empty
        shape[rank - 1] = 0;
        numel = 0;
    }
    if (kind <= 3) {  // owning, contiguous
        try {
            f.tensor = Tensor(shape, dtype);
        } catch (const helix::Error &) {
        }
        if (f.tensor.defined() && dtype == DType::Float32) {
            float *p = static_cast<float *>(f.tensor.data());
            for (int64_t i = 0; i < f.tensor.numel(); i++) p[i] = in.ConsumeFloatingPointInRange<float>(-4.0f, 4.0f);
        }
        if (f.tensor.defined() && dtype == DType::Int32) {  // positions mostly inside small tables
            int32_t *p = static_cast<int32_t *>(f.tensor.data());
            for (int64_t i = 0; i < f.tensor.numel(); i++) p[i] = in.ConsumeIntegralInRange<int32_t>(-1, 40);
        }
        return f;
    }
    // A view with fuzzed strides (in elements) into a buffer just large enough.
    for (int i = rank - 1; i >= 0; i--) {
        strides[i] = in.ConsumeIntegralInRange<int64_t>(-70, 70);
        if (shape[i] > 0) {
            const int64_t reach = (shape[i] - 1) * strides[i];
            (reach < 0 ? lo : hi) += reach;
        }
    }
    const int64_t elements = numel ? hi - lo + 1 : 1;
    const int64_t slack = in.ConsumeIntegralInRange<int64_t>(0, 3);
    f.memory.assign(static_cast<size_t>((elements + slack) * size), kPattern);
    for (size_t i = 0; i < f.memory.size() && !output; i++) f.memory[i] = in.ConsumeIntegral<uint8_t>();
    if (!output && dtype == DType::Float32) {
        // Mostly finite values: keep the rotations meaningful (NaN and inf still appear).
        for (size_t i = 0; i + 4 <= f.memory.size(); i += 4) {
            if (f.memory[i] & 1) {
                const float v = (f.memory[i + 1] - 128) / 32.0f;
                std::memcpy(&f.memory[i], &v, 4);
            }
        }
    }
    f.original = f.memory;
    uint8_t *first = f.memory.data() + (numel ? -lo * size : 0);
    try {
        f.tensor = Tensor::wrap(kind == 9 ? nullptr : first, shape, strides, dtype);
        f.wrapped = kind != 9;
    } catch (const helix::Error &) {
    }
    return f;
}

// Fails (aborts, so libFuzzer keeps the input) unless every byte outside the outputs'
// elements is as it was.
void check_untouched(const std::vector<Fuzzed *> &all) {
    for (const Fuzzed *f : all) {
        if (f->memory.empty()) continue;
        const std::set<int64_t> writable = f->output ? f->element_bytes() : std::set<int64_t>{};
        for (size_t i = 0; i < f->memory.size(); i++) {
            if (f->memory[i] != f->original[i] && !writable.count(static_cast<int64_t>(i))) {
                std::fprintf(stderr, "byte %zu of a%s tensor's memory changed outside its elements\n", i,
                             f->output ? "n output" : "n input");
                std::abort();
            }
        }
    }
}

// An output may be given as one of the inputs: its own (inputs[0]: in place, whose
// elements it may then write) or another (aliasing, an error). The fuzzer picks.
Tensor pick(FuzzedDataProvider &in, const Fuzzed &own, const std::vector<Fuzzed *> &inputs) {
    const int which = in.ConsumeIntegralInRange<int>(0, 8);
    if (which >= static_cast<int>(inputs.size()) || which >= 2) return own.tensor;
    if (which == 0) inputs[0]->output = true;
    return inputs[which]->tensor;
}

}  // namespace

// The DLTensor of a fuzzed tensor (NULL for an undefined one, or by choice): its own memory,
// shape, strides and element size, with a type code, lanes and device the bytes may change
// to any value (a descriptor may lie about the type, not about the memory it covers: that is
// the caller's contract).
struct Described {
    DLTensor tensor{};
    std::vector<int64_t> shape, strides;
    const DLTensor *get() const { return tensor.data || tensor.ndim ? &tensor : nullptr; }
};

void describe(FuzzedDataProvider &in, const Fuzzed &f, Described &d) {
    if (!f.tensor.defined() || f.tensor.device() != helix::Device::CPU || in.ConsumeIntegralInRange(0, 15) == 0) return;
    d.shape = f.tensor.shape();
    d.strides = f.tensor.strides();
    d.tensor.data = f.tensor.data();
    d.tensor.ndim = f.tensor.rank();
    d.tensor.shape = d.shape.data();
    d.tensor.strides = in.ConsumeBool() || f.tensor.is_contiguous() ? d.strides.data() : nullptr;
    if (!d.tensor.strides && !f.tensor.is_contiguous()) d.tensor.strides = d.strides.data();
    // Any int, stored as a C caller stores it (no conversion to the enum type here).
    const int32_t device_type = in.ConsumeIntegralInRange(0, 7) == 0 ? in.ConsumeIntegral<int32_t>() : int32_t(kDLCPU);
    std::memcpy(&d.tensor.device.device_type, &device_type, sizeof device_type);
    const uint8_t bits = static_cast<uint8_t>(f.tensor.element_size() * 8);
    d.tensor.dtype.code = in.ConsumeIntegralInRange(0, 7) == 0 ? in.ConsumeIntegral<uint8_t>()
                          : f.tensor.dtype() == DType::BFloat16                         ? kDLBfloat
                          : f.tensor.dtype() == DType::Int32 || f.tensor.dtype() == DType::Int64 ? kDLInt
                                                                                                 : kDLFloat;
    d.tensor.dtype.bits = bits;
    d.tensor.dtype.lanes = in.ConsumeIntegralInRange(0, 15) == 0 ? in.ConsumeIntegral<uint16_t>() : 1;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    FuzzedDataProvider in(data, size);
    const int op = in.ConsumeIntegralInRange(0, 4);
    const bool baseline = in.ConsumeBool();
    const helix::detail::Kernels &kernels = baseline ? helix::detail::kernels_baseline() : helix::detail::kernels_tuned();
    try {
        if (op == 0) {  // tables
            const int64_t dim = in.ConsumeIntegralInRange<int64_t>(-4, 300);
            const bool xpos = in.ConsumeBool();
            std::optional<double> scale_base;
            if (in.ConsumeBool()) scale_base = in.ConsumeFloatingPoint<double>();
            const double theta = in.ConsumeBool() ? in.ConsumeFloatingPoint<double>() : 10000.0;
            const int64_t seq_len = in.ConsumeBool() ? in.ConsumeIntegral<int64_t>() : in.ConsumeIntegralInRange<int64_t>(0, 300);
            const int64_t start = in.ConsumeBool() ? in.ConsumeIntegral<int64_t>() : in.ConsumeIntegralInRange<int64_t>(0, 300);
            Fuzzed freqs = make_tensor(in, true), scale = make_tensor(in, true);
            try {
                // Frequency scaling with fuzzed parameters (lists of fuzzed lengths) and the
                // angle mode.
                helix::RopeScaling scaling;
                scaling.type = static_cast<helix::RopeScaling::Type>(in.ConsumeIntegralInRange<int>(0, 5));
                if (scaling.type != helix::RopeScaling::Type::None) {
                    scaling.factor = in.ConsumeFloatingPoint<double>();
                    scaling.max_position_embeddings = in.ConsumeIntegralInRange<int64_t>(-2, 1 << 20);
                    scaling.original_max_position_embeddings = in.ConsumeIntegralInRange<int64_t>(-2, 1 << 20);
                    scaling.beta_fast = in.ConsumeFloatingPoint<double>();
                    scaling.low_freq_factor = in.ConsumeFloatingPoint<double>();
                    scaling.high_freq_factor = in.ConsumeFloatingPoint<double>();
                    if (in.ConsumeBool()) scaling.attention_factor = in.ConsumeFloatingPoint<double>();
                    if (in.ConsumeBool()) scaling.mscale = in.ConsumeFloatingPoint<double>();
                    if (in.ConsumeBool()) scaling.mscale_all_dim = in.ConsumeFloatingPoint<double>();
                    for (auto *list : {&scaling.short_factor, &scaling.long_factor}) {
                        list->resize(in.ConsumeIntegralInRange<size_t>(0, 160), in.ConsumeFloatingPoint<double>());
                    }
                }
                const helix::AngleMode angles = in.ConsumeBool() ? helix::AngleMode::Accurate : helix::AngleMode::Fp32;
                const helix::SinusoidalEmbeddings emb(dim, scale_base, xpos, theta,
                                                      in.ConsumeBool() ? helix::Pairing::Interleaved : helix::Pairing::HalfSplit,
                                                      scaling, angles);
                if (in.ConsumeBool()) {
                    const helix::Tensor &scale_out = in.ConsumeBool() ? freqs.tensor : scale.tensor;
                    const auto stores = static_cast<helix::Stores>(in.ConsumeIntegralInRange<int>(0, 2));
                    const helix::detail::ScopedStreamTiles tiles(0, in.ConsumeBool() ? 4096 : 0);
                    helix::detail::sinusoidal_window(kernels, emb, seq_len, start, freqs.tensor, scale_out, stores);
                } else if (seq_len >= 0 && seq_len < 2000) {
                    emb.forward(seq_len);
                }
            } catch (const helix::Error &) {
            }
            check_untouched({&freqs, &scale});
        } else if (op == 1) {  // rotate_half
            Fuzzed x = make_tensor(in, false), out = make_tensor(in, true);
            try {
                const helix::Pairing pairing = in.ConsumeBool() ? helix::Pairing::Interleaved : helix::Pairing::HalfSplit;
                helix::detail::rotate_half(kernels, x.tensor, pick(in, out, {&x}), pairing);
            } catch (const helix::Error &) {
            }
            check_untouched({&x, &out});
        } else if (op == 2) {  // apply_rotary_pos_emb
            Fuzzed q = make_tensor(in, false), k = make_tensor(in, false), freqs = make_tensor(in, false);
            Fuzzed scale_tensor = make_tensor(in, false);
            Fuzzed q_out = make_tensor(in, true), k_out = make_tensor(in, true);
            helix::Scale scale;
            switch (in.ConsumeIntegralInRange(0, 2)) {
            case 0: break;
            case 1: scale = helix::Scale(in.ConsumeFloatingPoint<double>()); break;
            default: scale = helix::Scale(scale_tensor.tensor);
            }
            helix::RotaryOptions options;
            options.pairing = in.ConsumeBool() ? helix::Pairing::Interleaved : helix::Pairing::HalfSplit;
            options.rotary_dim = in.ConsumeBool() ? 0 : in.ConsumeIntegralInRange<int64_t>(-4, 48);
            options.stores = static_cast<helix::Stores>(in.ConsumeIntegralInRange<int>(0, 2));
            options.conjugate = in.ConsumeBool();
            // Streaming's tiles (streaming.h): heads per tile, and small tiles for many of them.
            const helix::detail::ScopedStreamTiles tiles(in.ConsumeIntegralInRange<int>(0, 3), in.ConsumeBool() ? 4096 : 0);
            // Positions of q (and maybe k's own) from fuzzed integer tensors, and a table form.
            Fuzzed sin = make_tensor(in, false), positions = make_tensor(in, false), extra = make_tensor(in, false);
            auto fuzz_positions = [&](const Fuzzed &t) {
                switch (in.ConsumeIntegralInRange(0, 4)) {
                case 0: return helix::Positions();
                case 1: return helix::Positions::start(in.ConsumeBool() ? in.ConsumeIntegral<int64_t>()
                                                                        : in.ConsumeIntegralInRange<int64_t>(-2, 60));
                case 2: return helix::Positions::offsets(t.tensor);
                case 3: return helix::Positions::ids(t.tensor);
                default: return helix::Positions::varlen(t.tensor, in.ConsumeBool() ? extra.tensor : Tensor());
                }
            };
            options.positions = fuzz_positions(positions);
            if (in.ConsumeBool()) options.k_positions = fuzz_positions(extra);
            const int form = in.ConsumeIntegralInRange(0, 4);
            try {
                const Tensor qo = pick(in, q_out, {&q, &k}), ko = pick(in, k_out, {&k, &q});
                if (form == 0) {
                    helix::detail::apply_rotary_pos_emb(kernels, q.tensor, k.tensor, freqs.tensor, scale, qo, ko, options);
                } else {
                    const helix::RotaryTable table =
                        form == 1   ? helix::RotaryTable::angles(freqs.tensor, scale)
                        : form == 2 ? helix::RotaryTable::cos_sin(freqs.tensor, sin.tensor, scale)
                        : form == 3 ? helix::RotaryTable::cos_sin_cache(freqs.tensor, scale)
                                    : helix::RotaryTable::inv_freq(freqs.tensor, scale,
                                                                   in.ConsumeBool() ? helix::AngleMode::Accurate
                                                                                    : helix::AngleMode::Fp32);
                    const helix::RotaryTable scaled =
                        in.ConsumeBool() ? table.with_attention_factor(in.ConsumeFloatingPoint<double>()) : table;
                    helix::detail::apply_rotary_pos_emb(kernels, q.tensor, k.tensor, scaled, qo, ko, options);
                }
            } catch (const helix::Error &) {
            }
            check_untouched({&q, &k, &freqs, &scale_tensor, &q_out, &k_out, &sin, &positions, &extra});
        } else if (op == 4) {  // the C ABI: descriptors, enumerations and NULLs from the bytes
            Fuzzed q = make_tensor(in, false), k = make_tensor(in, false), first = make_tensor(in, false);
            Fuzzed second = make_tensor(in, false), positions = make_tensor(in, false);
            Fuzzed q_out = make_tensor(in, true), k_out = make_tensor(in, true);
            Described dq, dk, dfirst, dsecond, dpositions, dq_out, dk_out;
            for (auto [f, d] : {std::pair{&q, &dq}, {&k, &dk}, {&first, &dfirst}, {&second, &dsecond},
                                {&positions, &dpositions}, {&q_out, &dq_out}, {&k_out, &dk_out}}) {
                describe(in, *f, *d);
            }
            helix_rotary_table table;
            helix_rotary_table_init(&table, static_cast<helix_table_form>(in.ConsumeIntegralInRange(-1, 5)));
            table.first = dfirst.get();
            table.second = dsecond.get();
            table.scale_value = in.ConsumeBool() ? 1.0 : in.ConsumeFloatingPoint<double>();
            table.attention_factor = in.ConsumeBool() ? 1.0 : in.ConsumeFloatingPoint<double>();
            table.angles = static_cast<helix_angle_mode>(in.ConsumeIntegralInRange(-1, 2));
            helix_embeddings *emb = nullptr;
            if (in.ConsumeBool()) {
                helix_rope_scaling scaling;
                helix_rope_scaling_init(&scaling);
                scaling.type = static_cast<helix_scaling_type>(in.ConsumeIntegralInRange(-1, 6));
                scaling.factor = in.ConsumeFloatingPoint<double>();
                scaling.original_max_position_embeddings = in.ConsumeIntegralInRange<int64_t>(-2, 1 << 20);
                helix_embeddings_create(in.ConsumeIntegralInRange<int64_t>(-2, 300), in.ConsumeFloatingPoint<double>(),
                                        in.ConsumeBool(), in.ConsumeBool() ? 10000.0 : in.ConsumeFloatingPoint<double>(),
                                        static_cast<helix_pairing>(in.ConsumeIntegralInRange(-1, 2)),
                                        in.ConsumeBool() ? &scaling : nullptr,
                                        static_cast<helix_angle_mode>(in.ConsumeIntegralInRange(-1, 2)), &emb);
            }
            table.embedding = emb;
            table.seq_len = in.ConsumeIntegralInRange<int64_t>(-2, 5000);
            helix_rotary_options options;
            helix_rotary_options_init(&options);
            options.pairing = static_cast<helix_pairing>(in.ConsumeIntegralInRange(-1, 2));
            options.rotary_dim = in.ConsumeBool() ? 0 : in.ConsumeIntegralInRange<int64_t>(-4, 48);
            options.conjugate = in.ConsumeBool();
            options.positions.kind = static_cast<helix_positions_kind>(in.ConsumeIntegralInRange(-1, 5));
            options.positions.start = in.ConsumeIntegralInRange<int64_t>(-2, 60);
            options.positions.tensor = dpositions.get();
            const bool in_place = in.ConsumeBool();
            if (in_place) q.output = k.output = true;  // their own elements may then be written
            const helix_status status = in.ConsumeIntegralInRange(0, 3) == 0
                ? helix_rotate_half(dq.get(), in_place ? dq.get() : dq_out.get(), options.pairing)
                : helix_apply_rotary_pos_emb(dq.get(), dk.get(), in.ConsumeIntegralInRange(0, 15) ? &table : nullptr,
                                             in_place ? dq.get() : dq_out.get(), in_place ? dk.get() : dk_out.get(),
                                             in.ConsumeBool() ? &options : nullptr);
            if (status != HELIX_OK && status != HELIX_ERROR_INVALID_ARGUMENT && status != HELIX_ERROR_RUNTIME) {
                std::fprintf(stderr, "C ABI status %d: %s\n", status, helix_last_error());
                std::abort();
            }
            if ((status == HELIX_OK) != (helix_last_error()[0] == '\0')) {
                std::fprintf(stderr, "C ABI status %d with message '%s'\n", status, helix_last_error());
                std::abort();
            }
            helix_embeddings_destroy(emb);
            check_untouched({&q, &k, &first, &second, &positions, &q_out, &k_out});
        } else {  // tensor views and copies
            Fuzzed a = make_tensor(in, false), b = make_tensor(in, true);
            try {
                Tensor v = a.tensor;
                switch (in.ConsumeIntegralInRange(0, 3)) {
                case 0: v = v.narrow(in.ConsumeIntegralInRange(-6, 6), in.ConsumeIntegral<int64_t>(), in.ConsumeIntegral<int64_t>()); break;
                case 1: v = v.transpose(in.ConsumeIntegralInRange(-6, 6), in.ConsumeIntegralInRange(-6, 6)); break;
                case 2: v = v.contiguous(); break;
                default: break;
                }
                b.tensor.copy_from(v);
            } catch (const helix::Error &) {
            }
            check_untouched({&a, &b});
        }
    } catch (const helix::Error &) {
    }
    return 0;
}
