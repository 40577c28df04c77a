// helix._helix: the C++ API (include/helix/helix.h) for Python, over DLPack arrays (NumPy,
// PyTorch, JAX, ...) without copies. Arrays become helix::Tensor views of their memory; the
// Python layer (python/helix/__init__.py) allocates outputs in the caller's framework and
// passes them here. Kernels run with the GIL released; the arrays of a call are held by the
// call's arguments (nanobind keeps them referenced until it returns), those of a table or
// positions object by that object (keep_alive).
#include <helix/helix.h>
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

#include <string>
#include <tuple>
#include <vector>

namespace nb = nanobind;
using namespace nb::literals;

namespace {

using InArray = nb::ndarray<nb::ro>;  // inputs may be read-only (a NumPy view, a JAX array)
using OutArray = nb::ndarray<>;

std::string dtype_name(nb::dlpack::dtype t) {
    const char *code = t.code == uint8_t(nb::dlpack::dtype_code::Float)    ? "float"
                       : t.code == uint8_t(nb::dlpack::dtype_code::Int)    ? "int"
                       : t.code == uint8_t(nb::dlpack::dtype_code::UInt)   ? "uint"
                       : t.code == uint8_t(nb::dlpack::dtype_code::Bfloat) ? "bfloat"
                       : t.code == uint8_t(nb::dlpack::dtype_code::Bool)   ? "bool"
                                                                           : "complex";
    return code + std::to_string(t.bits) + (t.lanes > 1 ? "x" + std::to_string(t.lanes) : "");
}

helix::DType dtype_of(const char *name, nb::dlpack::dtype t) {
    if (t.lanes == 1) {
        if (t.code == uint8_t(nb::dlpack::dtype_code::Float) && t.bits == 32) return helix::DType::Float32;
        if (t.code == uint8_t(nb::dlpack::dtype_code::Float) && t.bits == 16) return helix::DType::Float16;
        if (t.code == uint8_t(nb::dlpack::dtype_code::Bfloat) && t.bits == 16) return helix::DType::BFloat16;
        if (t.code == uint8_t(nb::dlpack::dtype_code::Int) && t.bits == 32) return helix::DType::Int32;
        if (t.code == uint8_t(nb::dlpack::dtype_code::Int) && t.bits == 64) return helix::DType::Int64;
    }
    throw helix::Error(std::string("helix: ") + name +
                       ": expected dtype float32, float16, bfloat16, int32 or int64, given " + dtype_name(t));
}

// The helix view of a DLPack array: same memory, shape and strides (in elements).
template <typename Array>
helix::Tensor tensor_of(const char *name, const Array &a) {
    std::vector<int64_t> shape(a.ndim()), strides(a.ndim());
    for (size_t i = 0; i < a.ndim(); i++) {
        shape[i] = a.shape(i);
        strides[i] = a.stride(i);
    }
    const helix::DType dtype = dtype_of(name, a.dtype());
    void *data = const_cast<void *>(static_cast<const void *>(a.data()));
    if (a.device_type() == nb::device::cpu::value) return helix::Tensor::wrap(data, shape, strides, dtype);
    if (a.device_type() == nb::device::cuda::value) {
        return helix::Tensor::wrap_device(helix::Device::CUDA, reinterpret_cast<uint64_t>(data), shape, strides, dtype);
    }
    throw helix::Error(std::string("helix: ") + name + ": expected an array on the CPU or a CUDA device, given DLPack device type " +
                       std::to_string(a.device_type()));
}

template <typename Array>
helix::Tensor optional_tensor(const char *name, const std::optional<Array> &a) {
    return a ? tensor_of(name, *a) : helix::Tensor();
}

// A tensor as PyTorch describes it, for callers that skip DLPack's export (a few
// microseconds per tensor, more than a decode step's kernel): (data pointer, shape,
// strides in elements, dtype name, on a CUDA device). The caller keeps the tensor alive.
using RawTensor = std::tuple<uintptr_t, std::vector<int64_t>, std::vector<int64_t>, std::string, bool>;

helix::Tensor tensor_of(const char *name, const std::optional<RawTensor> &raw) {
    if (!raw) return {};
    const auto &[data, shape, strides, dtype_name, cuda] = *raw;
    helix::DType dtype;
    if (dtype_name == "float32") dtype = helix::DType::Float32;
    else if (dtype_name == "float16") dtype = helix::DType::Float16;
    else if (dtype_name == "bfloat16") dtype = helix::DType::BFloat16;
    else if (dtype_name == "int32") dtype = helix::DType::Int32;
    else if (dtype_name == "int64") dtype = helix::DType::Int64;
    else throw helix::Error(std::string("helix: ") + name + ": expected dtype float32, float16, bfloat16, int32 or int64, given " + dtype_name);
    if (cuda) return helix::Tensor::wrap_device(helix::Device::CUDA, data, shape, strides, dtype);
    return helix::Tensor::wrap(reinterpret_cast<void *>(data), shape, strides, dtype);
}

helix::Positions positions_of(const std::string &kind, int64_t start, const helix::Tensor &tensor,
                              const helix::Tensor &offsets) {
    if (kind == "aligned") return {};
    if (kind == "start") return helix::Positions::start(start);
    if (kind == "offsets") return helix::Positions::offsets(tensor);
    if (kind == "ids") return helix::Positions::ids(tensor);
    if (kind == "varlen") return helix::Positions::varlen(tensor, offsets);
    throw helix::Error("helix: positions: expected aligned, start, offsets, ids or varlen, given " + kind);
}

helix::RotaryTable table_of(const std::string &form, const helix::Tensor &first, const helix::Tensor &second,
                            const helix::Scale &scale) {
    if (form == "angles") return helix::RotaryTable::angles(first, scale);
    if (form == "cos_sin") return helix::RotaryTable::cos_sin(first, second, scale);
    if (form == "cos_sin_cache") return helix::RotaryTable::cos_sin_cache(first, scale);
    if (form == "inv_freq") return helix::RotaryTable::inv_freq(first, scale);
    throw helix::Error("helix: table: expected angles, cos_sin, cos_sin_cache or inv_freq, given " + form);
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
            const helix::Tensor qt = tensor_of("q", q), kt = tensor_of("k", k), qo = tensor_of("q_out", q_out),
                                ko = tensor_of("k_out", k_out);
            const helix::Tensor st = tensor_of("scale", scale_table);
            const helix::RotaryTable table =
                table_of(form, tensor_of("table", first), tensor_of("table", second),
                         st.defined() ? helix::Scale(st) : helix::Scale(scale_value));
            helix::RotaryOptions options;
            options.pairing = pairing;
            options.rotary_dim = rotary_dim;
            options.conjugate = conjugate;
            options.positions = positions_of(pos_kind, pos_start, tensor_of("positions", pos_tensor),
                                             tensor_of("offsets", pos_offsets));
            if (k_pos_kind != "same") {
                options.k_positions = positions_of(k_pos_kind, k_pos_start, tensor_of("k_positions", k_pos_tensor),
                                                   tensor_of("k_offsets", k_pos_offsets));
            }
            nb::gil_scoped_release release;
            on_callers_stream(qt.device() == helix::Device::CUDA, cuda_stream,
                              [&] { helix::apply_rotary_pos_emb(qt, kt, table, qo, ko, options); });
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
