#include "dlpack.h"

#include <cstring>
#include <string>
#include <vector>

namespace helix::detail {
namespace {

[[noreturn]] void reject_tensor(const char *name, const std::string &what) {
    throw Error(std::string("helix: ") + name + ": " + what);
}

// "float64", "int8", "bfloat16x2": a type as DLPack's code, bits and lanes name it.
std::string type_name(DLDataType t) {
    const char *const codes[] = {"int", "uint", "float", "handle", "bfloat", "complex", "bool"};
    const std::string lanes = t.lanes != 1 ? "x" + std::to_string(t.lanes) : "";
    if (t.code < sizeof(codes) / sizeof(codes[0])) return codes[t.code] + std::to_string(t.bits) + lanes;
    return "DLPack code " + std::to_string(t.code) + " bits " + std::to_string(t.bits) + lanes;
}

DType dtype_of(const char *name, DLDataType t) {
    if (t.lanes == 1) {
        if (t.code == kDLFloat && t.bits == 32) return DType::Float32;
        if (t.code == kDLFloat && t.bits == 16) return DType::Float16;
        if (t.code == kDLBfloat && t.bits == 16) return DType::BFloat16;
        if (t.code == kDLInt && t.bits == 32) return DType::Int32;
        if (t.code == kDLInt && t.bits == 64) return DType::Int64;
    }
    reject_tensor(name, "expected dtype float32, float16, bfloat16, int32 or int64, given " + type_name(t));
}

}  // namespace

Tensor from_dlpack(const char *name, const DLTensor *t) {
    if (!t) return {};
    if (t->ndim < 0) reject_tensor(name, "expected ndim >= 0, given " + std::to_string(t->ndim));
    if (t->ndim > 0 && !t->shape) reject_tensor(name, "expected a shape, given NULL");
    const std::vector<int64_t> shape(t->shape, t->shape + t->ndim);
    const std::vector<int64_t> strides = t->strides ? std::vector<int64_t>(t->strides, t->strides + t->ndim)
                                                    : std::vector<int64_t>();
    const DType dtype = dtype_of(name, t->dtype);
    // The device type as the int a C caller stored: any value (reading it as the enum would
    // be undefined behaviour for values DLPack does not list).
    static_assert(sizeof(t->device.device_type) == sizeof(int32_t));
    int32_t device_type;
    std::memcpy(&device_type, &t->device.device_type, sizeof device_type);
    if (device_type == kDLCPU) return Tensor::wrap(static_cast<char *>(t->data) + t->byte_offset, shape, strides, dtype);
    if (device_type == kDLCUDA) {
        return Tensor::wrap_device(Device::CUDA, reinterpret_cast<uint64_t>(t->data) + t->byte_offset, shape, strides,
                                   dtype);
    }
    reject_tensor(name, "expected a kDLCPU or kDLCUDA tensor, given device type " + std::to_string(device_type));
}

}  // namespace helix::detail
