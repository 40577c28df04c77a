// helix._helix: the C++ API (include/helix/helix.h) for Python, over DLPack arrays (NumPy,
// PyTorch, JAX, ...) without copies. Arrays become helix::Tensor views of their memory; the
// Python layer (python/helix/__init__.py) allocates outputs in the caller's framework and
// passes them here. Kernels run with the GIL released; the arrays of a call are held by the
// call's arguments (nanobind keeps them referenced until it returns), those of a table or
// positions object by that object (keep_alive).
#include <helix/helix.h>
#include <helix/helix_c.h>

#include "dlpack.h"  // runtime/: helix's DLPack conversion
#ifdef HELIX_PYTHON_CUDA
#include <helix/cuda.h>

#include <dlfcn.h>
#endif

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <cstring>
#include <initializer_list>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace nb = nanobind;
using namespace nb::literals;

namespace {

using InArray = nb::ndarray<nb::ro>;  // inputs may be read-only (a NumPy view, a JAX array)
using OutArray = nb::ndarray<>;

// The DLPack descriptor of an array nanobind received (its shape and strides live in the
// array, which the call holds; the data pointer includes the byte offset).
template <typename Array>
DLTensor dlpack_of(const Array &a) {
    DLTensor t{};
    t.data = const_cast<void *>(static_cast<const void *>(a.data()));
    const int32_t device_type = a.device_type();
    std::memcpy(&t.device.device_type, &device_type, sizeof device_type);  // any value, as received
    t.device.device_id = a.device_id();
    t.ndim = static_cast<int32_t>(a.ndim());
    const nb::dlpack::dtype d = a.dtype();
    t.dtype = DLDataType{d.code, d.bits, d.lanes};
    t.shape = const_cast<int64_t *>(a.shape_ptr());
    t.strides = const_cast<int64_t *>(a.stride_ptr());
    return t;
}

// The helix view of a DLPack array: same memory, shape and strides (helix's one conversion,
// runtime/dlpack.h, with its messages).
template <typename Array>
helix::Tensor tensor_of(const char *name, const Array &a) {
    const DLTensor t = dlpack_of(a);
    return helix::detail::from_dlpack(name, &t);
}

template <typename Array>
helix::Tensor optional_tensor(const char *name, const std::optional<Array> &a) {
    return a ? tensor_of(name, *a) : helix::Tensor();
}

// A tensor as PyTorch describes it, for callers that skip DLPack's export (a few
// microseconds per tensor, more than a decode step's kernel): (data pointer, shape,
// strides in elements, (DLPack type code, bits), on a CUDA device). The caller keeps the
// tensor alive.
using RawTensor = std::tuple<uintptr_t, std::vector<int64_t>, std::vector<int64_t>, std::pair<int, int>, bool>;

// Its DLPack descriptor in `t` (pointing into raw, which must outlive it), or nullptr.
const DLTensor *dlpack_of(const std::optional<RawTensor> &raw, DLTensor &t) {
    if (!raw) return nullptr;
    const auto &[data, shape, strides, type, cuda] = *raw;
    t = DLTensor{};
    t.data = reinterpret_cast<void *>(data);
    t.device.device_type = cuda ? kDLCUDA : kDLCPU;
    t.ndim = static_cast<int32_t>(shape.size());
    t.dtype = DLDataType{static_cast<uint8_t>(type.first), static_cast<uint8_t>(type.second), 1};
    t.shape = const_cast<int64_t *>(shape.data());
    t.strides = const_cast<int64_t *>(strides.data());
    return &t;
}

// The C ABI's value of a name (helix.torch passes table forms and position kinds by name).
template <typename Value>
Value named(const char *what, const std::string &name, std::initializer_list<std::pair<const char *, Value>> values) {
    std::string names;
    for (const auto &[n, v] : values) {
        if (name == n) return v;
        names += (names.empty() ? "" : ", ") + std::string(n);
    }
    throw helix::Error(std::string("helix: ") + what + ": expected " + names + ", given " + name);
}

helix_positions positions_of(const std::string &kind, int64_t start, const DLTensor *tensor, const DLTensor *offsets) {
    return {named<helix_positions_kind>("positions", kind,
                                        {{"aligned", HELIX_POSITIONS_ALIGNED}, {"start", HELIX_POSITIONS_START},
                                         {"offsets", HELIX_POSITIONS_OFFSETS}, {"ids", HELIX_POSITIONS_IDS},
                                         {"varlen", HELIX_POSITIONS_VARLEN}}),
            start, tensor, offsets};
}

// Runs f in the caller's CUDA context and on `stream` when a tensor of the call is on a
// CUDA device (the context current on this thread, as PyTorch makes it; stream 0: the
// context's default), else as is.
template <typename F>
void on_callers_stream(bool cuda, uintptr_t stream, F &&f) {
#ifdef HELIX_PYTHON_CUDA
    if (cuda) {
        using GetCurrent = int (*)(void **);
        static const GetCurrent get_current = [] {
            void *lib = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_GLOBAL);
            return lib ? reinterpret_cast<GetCurrent>(dlsym(lib, "cuCtxGetCurrent")) : nullptr;
        }();
        void *context = nullptr;
        if (!get_current || get_current(&context) != 0 || !context) {
            throw helix::Error("helix: CUDA tensors: expected a current CUDA context on this thread (PyTorch makes one "
                               "when it uses the device), given none");
        }
        helix::cuda::ScopedContext scoped(context, reinterpret_cast<void *>(stream));
        f();
        return;
    }
#else
    (void)stream;
    if (cuda) throw helix::Error("helix: CUDA tensors: this build of the package has no CUDA kernels (build it with helix_cuda)");
#endif
    f();
}

// A scale argument: None (1), a number, or an array.
helix::Scale scale_of(const nb::handle &scale) {
    if (scale.is_none()) return {};
    if (nb::isinstance<nb::float_>(scale) || nb::isinstance<nb::int_>(scale)) return {nb::cast<double>(scale)};
    return {tensor_of("scale", nb::cast<InArray>(scale))};
}

// A helix tensor (CPU) as a NumPy array that owns it.
nb::ndarray<nb::numpy, float> numpy_of(const helix::Tensor &t) {
    auto *owner = new helix::Tensor(t.contiguous());
    nb::capsule free(owner, [](void *p) noexcept { delete static_cast<helix::Tensor *>(p); });
    const std::vector<int64_t> dims = t.shape();
    std::vector<size_t> shape(dims.begin(), dims.end());
    return nb::ndarray<nb::numpy, float>(owner->data(), shape.size(), shape.data(), free);
}

}  // namespace

NB_MODULE(_helix, m) {
    m.doc() = "helix's C++ API over DLPack arrays (use the helix package, not this module)";
    nb::exception<helix::Error>(m, "Error", PyExc_RuntimeError);

    nb::enum_<helix::Pairing>(m, "Pairing", "Which features form the rotated pairs (SPEC section 2).")
        .value("HalfSplit", helix::Pairing::HalfSplit, "j and j + d/2 (Zeta, GPT-NeoX, HF Llama)")
        .value("Interleaved", helix::Pairing::Interleaved, "2i and 2i + 1 (GPT-J, Meta's Llama)");
    nb::enum_<helix::Stores>(m, "Stores", "How a CPU kernel's outputs reach memory.")
        .value("Auto", helix::Stores::Auto)
        .value("Ordinary", helix::Stores::Ordinary)
        .value("Streaming", helix::Stores::Streaming);
    nb::enum_<helix::AngleMode>(m, "AngleMode", "How the angle n * inv_freq is formed (SPEC section 4).")
        .value("Fp32", helix::AngleMode::Fp32, "the float32 product, as PyTorch forms it")
        .value("Accurate", helix::AngleMode::Accurate, "the product in double, reduced mod 2 pi");

    nb::class_<helix::RopeScaling> scaling(m, "RopeScaling",
                                          "HF transformers' rope_scaling (transformers 4.57.6 semantics and names).");
    nb::enum_<helix::RopeScaling::Type>(scaling, "Type")
        .value("None_", helix::RopeScaling::Type::None)
        .value("Linear", helix::RopeScaling::Type::Linear)
        .value("Dynamic", helix::RopeScaling::Type::Dynamic)
        .value("Yarn", helix::RopeScaling::Type::Yarn)
        .value("Llama3", helix::RopeScaling::Type::Llama3)
        .value("LongRope", helix::RopeScaling::Type::LongRope);
    scaling.def(nb::init<>())
        .def_rw("type", &helix::RopeScaling::type)
        .def_rw("factor", &helix::RopeScaling::factor)
        .def_rw("max_position_embeddings", &helix::RopeScaling::max_position_embeddings)
        .def_rw("original_max_position_embeddings", &helix::RopeScaling::original_max_position_embeddings)
        .def_rw("beta_fast", &helix::RopeScaling::beta_fast)
        .def_rw("beta_slow", &helix::RopeScaling::beta_slow)
        .def_rw("mscale", &helix::RopeScaling::mscale)
        .def_rw("mscale_all_dim", &helix::RopeScaling::mscale_all_dim)
        .def_rw("attention_factor", &helix::RopeScaling::attention_factor)
        .def_rw("truncate", &helix::RopeScaling::truncate)
        .def_rw("low_freq_factor", &helix::RopeScaling::low_freq_factor)
        .def_rw("high_freq_factor", &helix::RopeScaling::high_freq_factor)
        .def_rw("short_factor", &helix::RopeScaling::short_factor)
        .def_rw("long_factor", &helix::RopeScaling::long_factor)
        .def_static("linear", &helix::RopeScaling::linear, "factor"_a)
        .def_static("dynamic", &helix::RopeScaling::dynamic, "factor"_a, "max_position_embeddings"_a)
        .def_static("yarn", &helix::RopeScaling::yarn, "factor"_a, "original_max_position_embeddings"_a)
        .def_static("llama3", &helix::RopeScaling::llama3, "factor"_a, "low_freq_factor"_a, "high_freq_factor"_a,
                    "original_max_position_embeddings"_a)
        .def_static("longrope", &helix::RopeScaling::longrope, "short_factor"_a, "long_factor"_a, "factor"_a,
                    "original_max_position_embeddings"_a)
        .def("__repr__", [](const helix::RopeScaling &s) {
            return "helix.RopeScaling(" + helix::to_string(s.type) + ", factor=" + std::to_string(s.factor) + ")";
        });

    nb::class_<helix::SinusoidalEmbeddings>(m, "SinusoidalEmbeddings")
        .def(nb::init<int64_t, std::optional<double>, bool, double, helix::Pairing, const helix::RopeScaling &,
                      helix::AngleMode>(),
             "dim"_a, "scale_base"_a = nb::none(), "use_xpos"_a = false, "theta"_a = 10000.0,
             "pairing"_a = helix::Pairing::HalfSplit, "scaling"_a = helix::RopeScaling(),
             "angles"_a = helix::AngleMode::Fp32)
        .def(
            "forward_into",
            [](const helix::SinusoidalEmbeddings &e, int64_t seq_len, const OutArray &freqs, const OutArray &scale) {
                const helix::Tensor f = tensor_of("freqs", freqs), s = tensor_of("scale", scale);
                nb::gil_scoped_release release;
                e.forward(seq_len, f, s);
            },
            "seq_len"_a, "freqs"_a, "scale"_a)
        .def(
            "window_into",
            [](const helix::SinusoidalEmbeddings &e, int64_t seq_len, int64_t start, const OutArray &freqs,
               const OutArray &scale) {
                const helix::Tensor f = tensor_of("freqs", freqs), s = tensor_of("scale", scale);
                nb::gil_scoped_release release;
                e.window(seq_len, start, f, s);
            },
            "seq_len"_a, "start"_a, "freqs"_a, "scale"_a)
        .def("inv_freq", [](const helix::SinusoidalEmbeddings &e, int64_t seq_len) { return numpy_of(e.inv_freq(seq_len)); },
             "seq_len"_a = 0)
        .def("inv_freq_f64", &helix::SinusoidalEmbeddings::inv_freq_f64, "seq_len"_a = 0)
        .def_prop_ro("attention_factor", &helix::SinusoidalEmbeddings::attention_factor)
        .def_prop_ro("dim", &helix::SinusoidalEmbeddings::dim)
        .def_prop_ro("theta", &helix::SinusoidalEmbeddings::theta)
        .def_prop_ro("use_xpos", &helix::SinusoidalEmbeddings::use_xpos)
        .def_prop_ro("scale_base", &helix::SinusoidalEmbeddings::scale_base)
        .def_prop_ro("pairing", &helix::SinusoidalEmbeddings::pairing)
        .def_prop_ro("scaling", &helix::SinusoidalEmbeddings::scaling)
        .def_prop_ro("angle_mode", &helix::SinusoidalEmbeddings::angle_mode);

    nb::class_<helix::Positions>(m, "Positions")
        .def(nb::init<>(), "Zeta's alignment: q on the table's last rows, k from row 0.")
        .def_static("start", &helix::Positions::start, "first"_a)
        .def_static("offsets", [](const InArray &o) { return helix::Positions::offsets(tensor_of("offsets", o)); },
                    "offsets"_a, nb::keep_alive<0, 1>())
        .def_static("ids", [](const InArray &ids) { return helix::Positions::ids(tensor_of("ids", ids)); }, "ids"_a,
                    nb::keep_alive<0, 1>())
        .def_static(
            "varlen",
            [](const InArray &cu, const std::optional<InArray> &offsets) {
                return helix::Positions::varlen(tensor_of("cu_seqlens", cu), optional_tensor("offsets", offsets));
            },
            "cu_seqlens"_a, "offsets"_a = nb::none(), nb::keep_alive<0, 1>(), nb::keep_alive<0, 2>())
        .def_prop_ro("kind", [](const helix::Positions &p) { return helix::to_string(p.kind()); });

    nb::class_<helix::RotaryTable>(m, "RotaryTable")
        .def_static(
            "angles", [](const InArray &freqs, nb::handle scale) { return helix::RotaryTable::angles(tensor_of("freqs", freqs), scale_of(scale)); },
            "freqs"_a, "scale"_a = nb::none(), nb::keep_alive<0, 1>(), nb::keep_alive<0, 2>())
        .def_static(
            "cos_sin",
            [](const InArray &cos, const InArray &sin, nb::handle scale) {
                return helix::RotaryTable::cos_sin(tensor_of("cos", cos), tensor_of("sin", sin), scale_of(scale));
            },
            "cos"_a, "sin"_a, "scale"_a = nb::none(), nb::keep_alive<0, 1>(), nb::keep_alive<0, 2>(), nb::keep_alive<0, 3>())
        .def_static(
            "cos_sin_cache",
            [](const InArray &cache, nb::handle scale) {
                return helix::RotaryTable::cos_sin_cache(tensor_of("cos_sin_cache", cache), scale_of(scale));
            },
            "cache"_a, "scale"_a = nb::none(), nb::keep_alive<0, 1>(), nb::keep_alive<0, 2>())
        .def_static(
            "inv_freq",
            [](const InArray &inv_freq, nb::handle scale, helix::AngleMode angles) {
                return helix::RotaryTable::inv_freq(tensor_of("inv_freq", inv_freq), scale_of(scale), angles);
            },
            "inv_freq"_a, "scale"_a = nb::none(), "angles"_a = helix::AngleMode::Fp32, nb::keep_alive<0, 1>(),
            nb::keep_alive<0, 2>())
        .def_static(
            "from_embedding",
            [](const helix::SinusoidalEmbeddings &emb, int64_t seq_len, nb::handle scale) {
                return helix::RotaryTable::inv_freq(emb, seq_len, scale_of(scale));
            },
            "emb"_a, "seq_len"_a, "scale"_a = nb::none(), nb::keep_alive<0, 3>())
        .def("with_attention_factor", &helix::RotaryTable::with_attention_factor, "factor"_a, nb::keep_alive<0, 1>())
        .def_prop_ro("form", [](const helix::RotaryTable &t) { return helix::to_string(t.form()); })
        .def_prop_ro("attention_factor", &helix::RotaryTable::attention_factor)
        .def_prop_ro("angle_mode", &helix::RotaryTable::angle_mode);

    m.def(
        "rotate_half_into",
        [](const InArray &x, const OutArray &out, helix::Pairing pairing, uintptr_t cuda_stream) {
            const helix::Tensor xt = tensor_of("x", x), ot = tensor_of("out", out);
            nb::gil_scoped_release release;
            on_callers_stream(xt.device() == helix::Device::CUDA, cuda_stream, [&] { helix::rotate_half(xt, ot, pairing); });
        },
        "x"_a, "out"_a, "pairing"_a = helix::Pairing::HalfSplit, "cuda_stream"_a = 0);

    m.def(
        "apply_rotary_into",
        [](const InArray &q, const std::optional<InArray> &k, const helix::RotaryTable &table, const OutArray &q_out,
           const std::optional<OutArray> &k_out, const helix::Positions &positions,
           const std::optional<helix::Positions> &k_positions, helix::Pairing pairing, int64_t rotary_dim,
           helix::Stores stores, bool conjugate, uintptr_t cuda_stream) {
            const helix::Tensor qt = tensor_of("q", q), kt = optional_tensor("k", k), qo = tensor_of("q_out", q_out),
                                ko = optional_tensor("k_out", k_out);
            helix::RotaryOptions options;
            options.pairing = pairing;
            options.rotary_dim = rotary_dim;
            options.stores = stores;
            options.positions = positions;
            options.k_positions = k_positions;
            options.conjugate = conjugate;
            nb::gil_scoped_release release;
            on_callers_stream(qt.device() == helix::Device::CUDA, cuda_stream,
                              [&] { helix::apply_rotary_pos_emb(qt, kt, table, qo, ko, options); });
        },
        "q"_a, "k"_a.none(), "table"_a, "q_out"_a, "k_out"_a.none(), "positions"_a, "k_positions"_a.none(),
        "pairing"_a, "rotary_dim"_a, "stores"_a, "conjugate"_a, "cuda_stream"_a = 0);

    m.def(
        "apply_rotary_raw",
        [](const std::optional<RawTensor> &q, const std::optional<RawTensor> &k, const std::optional<RawTensor> &q_out,
           const std::optional<RawTensor> &k_out, const std::string &form, const std::optional<RawTensor> &first,
           const std::optional<RawTensor> &second, const std::optional<RawTensor> &scale_table, double scale_value,
           const std::string &pos_kind, int64_t pos_start, const std::optional<RawTensor> &pos_tensor,
           const std::optional<RawTensor> &pos_offsets, const std::string &k_pos_kind, int64_t k_pos_start,
           const std::optional<RawTensor> &k_pos_tensor, const std::optional<RawTensor> &k_pos_offsets,
           helix::Pairing pairing, int64_t rotary_dim, bool conjugate, uintptr_t cuda_stream) {
            // Through the C ABI, which maps tables and positions to helix's types.
            DLTensor d[11];
            helix_rotary_table table;
            helix_rotary_table_init(&table, named<helix_table_form>("table", form,
                                                                    {{"angles", HELIX_TABLE_ANGLES},
                                                                     {"cos_sin", HELIX_TABLE_COS_SIN},
                                                                     {"cos_sin_cache", HELIX_TABLE_COS_SIN_CACHE},
                                                                     {"inv_freq", HELIX_TABLE_INV_FREQ}}));
            table.first = dlpack_of(first, d[4]);
            table.second = dlpack_of(second, d[5]);
            table.scale = dlpack_of(scale_table, d[6]);
            table.scale_value = scale_value;
            helix_rotary_options options;
            helix_rotary_options_init(&options);
            options.pairing = pairing == helix::Pairing::Interleaved ? HELIX_PAIRING_INTERLEAVED : HELIX_PAIRING_HALF_SPLIT;
            options.rotary_dim = rotary_dim;
            options.conjugate = conjugate;
            options.positions = positions_of(pos_kind, pos_start, dlpack_of(pos_tensor, d[7]), dlpack_of(pos_offsets, d[8]));
            helix_positions k_positions;
            if (k_pos_kind != "same") {
                k_positions = positions_of(k_pos_kind, k_pos_start, dlpack_of(k_pos_tensor, d[9]),
                                           dlpack_of(k_pos_offsets, d[10]));
                options.k_positions = &k_positions;
            }
            helix_status status;
            {
                nb::gil_scoped_release release;
                on_callers_stream(q && std::get<4>(*q), cuda_stream, [&] {
                    status = helix_apply_rotary_pos_emb(dlpack_of(q, d[0]), dlpack_of(k, d[1]), &table,
                                                        dlpack_of(q_out, d[2]), dlpack_of(k_out, d[3]), &options);
                });
            }
            if (status != HELIX_OK) throw helix::Error(helix_last_error());
        },
        "q"_a.none(), "k"_a.none(), "q_out"_a.none(), "k_out"_a.none(), "form"_a, "first"_a.none(), "second"_a.none(),
        "scale_table"_a.none(), "scale_value"_a, "pos_kind"_a, "pos_start"_a, "pos_tensor"_a.none(),
        "pos_offsets"_a.none(), "k_pos_kind"_a, "k_pos_start"_a, "k_pos_tensor"_a.none(), "k_pos_offsets"_a.none(),
        "pairing"_a, "rotary_dim"_a, "conjugate"_a, "cuda_stream"_a = 0,
        "apply_rotary_pos_emb over raw tensor descriptors (helix.torch's path: no DLPack export), on cuda_stream "
        "(a CUstream) in the thread's current context when the tensors are on a CUDA device.");
    m.def("has_cuda", [] {
#ifdef HELIX_PYTHON_CUDA
        return true;
#else
        return false;
#endif
    }, "Whether this build of the package has the CUDA kernels.");

    m.def("kernel_element_types", [] {
        std::vector<std::string> names;
        for (helix::DType t : helix::kernel_element_types()) names.push_back(helix::to_string(t));
        return names;
    });
    m.def("set_num_threads", &helix::set_num_threads, "threads"_a);
    m.def("device_available", [](const std::string &device) {
        std::string reason;
        const bool ok = helix::device_available(device == "cuda" ? helix::Device::CUDA
                                                : device == "opencl" ? helix::Device::OpenCL
                                                                     : helix::Device::CPU,
                                                &reason);
        return std::make_pair(ok, reason);
    });
}
