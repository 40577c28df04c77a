// Compiled once per API library with HELIX_WITH_CUDA and/or HELIX_WITH_OPENCL defined to
// list the GPU backends that library carries (cmake: helix_add_api_library).
#include "backends.h"
#include "error.h"

#include <dlfcn.h>

#include <mutex>

#ifdef HELIX_WITH_CUDA
#include <HalideRuntimeCuda.h>
#endif
#ifdef HELIX_WITH_OPENCL
#include <HalideRuntimeOpenCL.h>
#endif

namespace helix {
namespace detail {
namespace {

const halide_device_interface_t *no_interface() { return nullptr; }

[[maybe_unused]] Location device_address_location(const halide_buffer_t &b) { return {0, b.device}; }

// The first of several names of a shared library that loads.
[[maybe_unused]] void *load_library(std::initializer_list<const char *> names) {
    for (const char *name : names) {
        if (void *lib = dlopen(name, RTLD_LAZY | RTLD_GLOBAL)) return lib;
    }
    return nullptr;
}

#ifdef HELIX_WITH_CUDA
// Halide's CUDA runtime dlopens the unversioned libcuda.so, which driver-only installs
// (containers) often lack: fall back to libcuda.so.1.
void *load_cuda_library(const char *name) {
    void *lib = dlopen(name, RTLD_LAZY | RTLD_GLOBAL);
    if (!lib && std::string(name) == "libcuda.so") lib = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_GLOBAL);
    return lib;
}

const halide_device_interface_t *cuda_interface() {
    static std::once_flag once;
    std::call_once(once, [] { halide_set_custom_load_library(load_cuda_library); });
    return halide_cuda_device_interface();
}

std::string cuda_unavailable_reason() {
    void *lib = load_library({"libcuda.so", "libcuda.so.1"});
    if (!lib) return "no CUDA driver: libcuda.so and libcuda.so.1 do not load";
    using Init = int (*)(unsigned);
    using Count = int (*)(int *);
    auto init = reinterpret_cast<Init>(dlsym(lib, "cuInit"));
    auto count = reinterpret_cast<Count>(dlsym(lib, "cuDeviceGetCount"));
    int n = 0;
    if (!init || !count) return "libcuda lacks cuInit/cuDeviceGetCount";
    if (int rc = init(0)) return "cuInit failed with CUDA error " + std::to_string(rc);
    if (count(&n) || n == 0) return "no CUDA device";
    return "";
}
#endif

#ifdef HELIX_WITH_OPENCL
// Halide's OpenCL device field is its own handle; the cl_mem and the crop's byte offset
// come from its accessors.
Location opencl_location(const halide_buffer_t &b) {
    auto *buf = const_cast<halide_buffer_t *>(&b);
    return {uint64_t(halide_opencl_get_cl_mem(nullptr, buf)), halide_opencl_get_crop_offset(nullptr, buf)};
}

std::string opencl_unavailable_reason() {
    void *lib = load_library({"libOpenCL.so.1", "libOpenCL.so"});
    if (!lib) return "no OpenCL ICD loader: libOpenCL.so.1 does not load";
    using Platforms = int (*)(unsigned, void **, unsigned *);
    using Devices = int (*)(void *, uint64_t, unsigned, void **, unsigned *);
    auto platforms = reinterpret_cast<Platforms>(dlsym(lib, "clGetPlatformIDs"));
    auto devices = reinterpret_cast<Devices>(dlsym(lib, "clGetDeviceIDs"));
    if (!platforms || !devices) return "libOpenCL lacks clGetPlatformIDs/clGetDeviceIDs";
    void *ids[16];
    unsigned n = 0;
    if (platforms(16, ids, &n) || n == 0) return "no OpenCL platform (is an ICD such as PoCL installed?)";
    for (unsigned i = 0; i < n && i < 16; i++) {
        unsigned d = 0;
        if (devices(ids[i], 0xFFFFFFFFull, 0, nullptr, &d) == 0 && d > 0) return "";
    }
    return "no OpenCL device";
}
#endif

const Backend kBackends[] = {
    {Device::CPU, kernels_tuned, no_interface, host_location},
#ifdef HELIX_WITH_CUDA
    {Device::CUDA, kernels_cuda, cuda_interface, device_address_location},
#endif
#ifdef HELIX_WITH_OPENCL
    {Device::OpenCL, kernels_opencl, halide_opencl_device_interface, opencl_location},
#endif
};

}  // namespace

const Backend *find_backend(Device device) {
    for (const Backend &b : kBackends) {
        if (b.device == device) return &b;
    }
    return nullptr;
}

const Backend &require_backend(const char *op, const std::string &argument, Device device) {
    const Backend *b = find_backend(device);
    if (!b) {
        std::string built;
        for (Device d : supported_devices()) built += (built.empty() ? "" : " or ") + to_string(d);
        reject(op, argument, "a tensor on a device this build of helix supports (" + built + ")", to_string(device));
    }
    return *b;
}

Device device_of(const halide_buffer_t &buffer) {
    if (!buffer.device_interface) return Device::CPU;
    for (const Backend &b : kBackends) {
        if (b.interface() == buffer.device_interface) return b.device;
    }
    throw Error("helix::Tensor: the buffer's device interface belongs to no device this build of helix supports");
}

Location locate_on_device(const halide_buffer_t &buffer) { return find_backend(device_of(buffer))->locate(buffer); }

}  // namespace detail

std::vector<Device> supported_devices() {
    std::vector<Device> devices;
    for (const detail::Backend &b : detail::kBackends) devices.push_back(b.device);
    return devices;
}

bool device_available(Device device, std::string *reason) {
    std::string why;
    if (!detail::find_backend(device)) {
        why = "this build of helix has no " + to_string(device) + " kernels";
    }
#ifdef HELIX_WITH_CUDA
    else if (device == Device::CUDA) why = detail::cuda_unavailable_reason();
#endif
#ifdef HELIX_WITH_OPENCL
    else if (device == Device::OpenCL) why = detail::opencl_unavailable_reason();
#endif
    if (reason) *reason = why;
    return why.empty();
}

std::string to_string(Device device) {
    switch (device) {
    case Device::CPU: return "cpu";
    case Device::CUDA: return "cuda";
    case Device::OpenCL: return "opencl";
    }
    return "unknown";
}

}  // namespace helix
