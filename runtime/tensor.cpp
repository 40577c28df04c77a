#include "backends.h"
#include "error.h"
#include "helix/helix.h"


#include <cstring>
#include <limits>

namespace helix {
namespace {

halide_type_t halide_type(DType dtype) {
    switch (dtype) {
    case DType::Float32: return halide_type_t(halide_type_float, 32);
    case DType::Float16: return halide_type_t(halide_type_float, 16);
    case DType::BFloat16: return halide_type_t(halide_type_bfloat, 16);
    case DType::Int32: return halide_type_t(halide_type_int, 32);
    case DType::Int64: return halide_type_t(halide_type_int, 64);
    }
    throw Error("helix::Tensor: unknown dtype");
}

// Halide describes buffers with int32 extents and strides.
int32_t to_extent(const char *op, const char *what, int64_t value) {
    if (value < 0 || value > std::numeric_limits<int32_t>::max()) {
        detail::reject(op, what, "a size in [0, 2^31)", detail::str(value));
    }
    return static_cast<int32_t>(value);
}

std::vector<halide_dimension_t> halide_dims(const char *op, const std::vector<int64_t> &shape,
                                            const std::vector<int64_t> &strides) {
    const int rank = static_cast<int>(shape.size());
    std::vector<halide_dimension_t> dims(rank);
    int64_t contiguous = 1;
    for (int i = rank - 1; i >= 0; i--) {  // Halide order: innermost first
        const int32_t extent = to_extent(op, "shape", shape[i]);
        const int64_t stride = strides.empty() ? contiguous : strides[i];
        if (stride < std::numeric_limits<int32_t>::min() || stride > std::numeric_limits<int32_t>::max()) {
            if (strides.empty()) {  // a contiguous tensor whose inner dimensions are too large
                detail::reject(op, "shape", "a shape whose inner dimensions hold fewer than 2^31 elements",
                               "a dimension " + detail::str(i) + " stride of " + detail::str(stride));
            }
            detail::reject(op, "strides", "strides in int32 range", detail::str(stride));
        }
        dims[rank - 1 - i] = halide_dimension_t(0, extent, static_cast<int32_t>(stride));
        // The element count stays below 2^62 (checked before the product can overflow).
        if (extent > 0 && contiguous > (int64_t(1) << 62) / extent) {
            detail::reject(op, "shape", "fewer than 2^62 elements", "more");
        }
        contiguous *= extent;
    }
    return dims;
}

// Host memory of owning tensors comes from halide_malloc, so an application's
// halide_set_custom_malloc covers it as it covers the kernels' own allocations; a failed
// allocation is an Error (Buffer::allocate lets it through before touching the memory).
void *allocate_host(size_t bytes) {
    if (void *p = halide_malloc(nullptr, bytes)) return p;
    throw Error("helix::Tensor: could not allocate " + detail::str(bytes) + " bytes of host memory");
}
void free_host(void *p) { halide_free(nullptr, p); }

// Creates a buffer's device reference count now: Halide creates it lazily on the first
// copy, which races when a tensor is shared between threads.
void count_device_references(const Halide::Runtime::Buffer<> &buffer) { Halide::Runtime::Buffer<> first_copy(buffer); }

}  // namespace

std::string to_string(DType dtype) {
    switch (dtype) {
    case DType::Float32: return "float32";
    case DType::Float16: return "float16";
    case DType::BFloat16: return "bfloat16";
    case DType::Int32: return "int32";
    case DType::Int64: return "int64";
    }
    return "unknown";
}

Tensor::Tensor(const std::vector<int64_t> &shape, DType dtype, Device device) {
    auto dims = halide_dims("Tensor", shape, {});
    buffer_ = Halide::Runtime::Buffer<>(halide_type(dtype), nullptr, static_cast<int>(dims.size()), dims.data());
    if (device == Device::CPU) {
        buffer_.allocate(allocate_host, free_host);
        if (buffer_.size_in_bytes()) std::memset(buffer_.data(), 0, buffer_.size_in_bytes());
        return;
    }
    const detail::Backend &backend = detail::require_backend("Tensor", "device", device);
    if (buffer_.number_of_elements() == 0) {
        buffer_.raw_buffer()->device_interface = backend.interface();  // on the device, with nothing to allocate
        return;
    }
    detail::CallContext context;
    context.check("Tensor", buffer_.device_malloc(backend.interface(), &context));
    count_device_references(buffer_);
}

Tensor Tensor::wrap(void *data, const std::vector<int64_t> &shape, const std::vector<int64_t> &strides,
                    DType dtype) {
    if (!strides.empty() && strides.size() != shape.size()) {
        detail::reject("Tensor::wrap", "strides", detail::str(shape.size()) + " strides (one per dimension)",
                       detail::str(strides.size()));
    }
    auto dims = halide_dims("Tensor::wrap", shape, strides);
    return Tensor(Shares{}, Halide::Runtime::Buffer<>(halide_type(dtype), data, static_cast<int>(dims.size()), dims.data()));
}

Tensor Tensor::wrap_device(Device device, uint64_t handle, const std::vector<int64_t> &shape,
                           const std::vector<int64_t> &strides, DType dtype) {
    if (device == Device::CPU) detail::reject("Tensor::wrap_device", "device", "a GPU device", "cpu (use wrap)");
    if (!handle) detail::reject("Tensor::wrap_device", "handle", "a device allocation", "0");
    const detail::Backend &backend = detail::require_backend("Tensor::wrap_device", "device", device);
    Tensor t = wrap(nullptr, shape, strides, dtype);
    detail::CallContext context;
    // Wrapped, not owned: the last copy detaches the handle instead of freeing it.
    context.check("Tensor::wrap_device", t.buffer_.device_wrap_native(backend.interface(), handle, &context));
    count_device_references(t.buffer_);
    return t;
}

Tensor Tensor::from_halide(const Halide::Runtime::Buffer<> &buffer) {
    const halide_type_t t = buffer.type();
    for (DType d : {DType::Float32, DType::Float16, DType::BFloat16, DType::Int32, DType::Int64}) {
        if (halide_type(d) == t) return Tensor(Shares{}, buffer);
    }
    detail::reject("Tensor::from_halide", "buffer", "a float32, float16, bfloat16, int32 or int64 buffer",
                   "type code " + detail::str(int(t.code)) + " with " + detail::str(int(t.bits)) + " bits");
}

void Tensor::reject_dim(int dim) const {
    const int r = rank();
    detail::reject("Tensor", "dim", "a dimension in [" + detail::str(-r) + ", " + detail::str(r) + ")", detail::str(dim));
}

std::vector<int64_t> Tensor::shape() const {
    std::vector<int64_t> s(rank());
    for (int i = 0; i < rank(); i++) s[i] = size(i);
    return s;
}

std::vector<int64_t> Tensor::strides() const {
    std::vector<int64_t> s(rank());
    for (int i = 0; i < rank(); i++) s[i] = stride(i);
    return s;
}

Device Tensor::device_interface_owner() const { return detail::device_of(*buffer_.raw_buffer()); }

DType Tensor::dtype() const {
    const halide_type_t t = buffer_.type();
    if (t.code == halide_type_bfloat) return DType::BFloat16;
    if (t.code == halide_type_int) return t.bits == 64 ? DType::Int64 : DType::Int32;
    return t.bits == 16 ? DType::Float16 : DType::Float32;
}

bool Tensor::is_contiguous() const {
    int64_t expected = 1;
    for (int i = rank() - 1; i >= 0; i--) {
        if (size(i) != 1 && stride(i) != expected) return false;
        expected *= size(i);
    }
    return true;
}

Tensor Tensor::narrow(int dim, int64_t start, int64_t length) const {
    const int d = checked_dim(dim);
    if (start < 0 || length < 0 || start > size(d) || length > size(d) - start) {
        detail::reject("Tensor::narrow", "start, length",
                       "a range inside [0, " + detail::str(size(d)) + ")",
                       detail::range_string(start, length));
    }
    Halide::Runtime::Buffer<> view = buffer_.cropped(rank() - 1 - d, static_cast<int>(start), static_cast<int>(length));
    // Views start at 0. Set directly: Buffer::translate would drop a device allocation.
    view.raw_buffer()->dim[rank() - 1 - d].min = 0;
    return Tensor(Shares{}, std::move(view));
}

Tensor Tensor::transpose(int dim0, int dim1) const {
    Halide::Runtime::Buffer<> view = buffer_.transposed(rank() - 1 - checked_dim(dim0), rank() - 1 - checked_dim(dim1));
    return Tensor(Shares{}, std::move(view));
}

Tensor Tensor::contiguous() const { return to(device()); }

Tensor Tensor::to(Device device) const {
    Tensor out(shape(), dtype(), device);
    out.copy_from(*this);
    return out;
}

void Tensor::copy_from(const Tensor &src) const {
    if (src.shape() != shape() || src.dtype() != dtype()) {
        detail::reject("Tensor::copy_from", "src", "shape " + shape_string() + " and dtype " + to_string(dtype()),
                       "shape " + src.shape_string() + " and dtype " + to_string(src.dtype()));
    }
    if (numel() == 0) return;
    const detail::Backend &to_backend = detail::require_backend("Tensor::copy_from", "this", device());
    detail::CallContext context;
    // halide_buffer_copy reads the source's device copy when it has no host memory or the
    // device copy is the newer one; the destination is marked dirty where it was written.
    halide_buffer_t *s = const_cast<halide_buffer_t *>(src.buffer_.raw_buffer());
    context.check("Tensor::copy_from",
                  halide_buffer_copy(&context, s, to_backend.interface(), const_cast<Tensor &>(*this).buffer_.raw_buffer()));
}

float &Tensor::at(std::initializer_list<int64_t> index) const {
    if (device() != Device::CPU) detail::reject("Tensor::at", "tensor", "a cpu tensor", to_string(device()));
    if (dtype() != DType::Float32) {
        detail::reject("Tensor::at", "tensor", "dtype float32", to_string(dtype()));
    }
    if (static_cast<int>(index.size()) != rank()) {
        detail::reject("Tensor::at", "index", detail::str(rank()) + " coordinates", detail::str(index.size()));
    }
    int64_t offset = 0;
    int i = 0;
    for (int64_t x : index) {
        if (x < 0 || x >= size(i)) {
            detail::reject("Tensor::at", "index", "a coordinate in [0, " + detail::str(size(i)) + ") in dim " +
                           detail::str(i), detail::str(x));
        }
        offset += x * stride(i);
        i++;
    }
    return static_cast<float *>(data())[offset];
}

std::string Tensor::shape_string() const {
    std::string s = "(";
    for (int i = 0; i < rank(); i++) s += (i ? ", " : "") + detail::str(size(i));
    return s + (rank() == 1 ? ",)" : ")");
}

}  // namespace helix
