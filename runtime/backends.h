// The devices a build of helix runs on: each has its kernel set and, for a GPU API, the
// Halide device interface that allocates and copies its memory. Which ones exist is fixed
// when the archive is built (runtime/backends.cpp is compiled once per API library).
#pragma once

#include "kernels.h"

#include <HalideRuntime.h>

namespace helix::detail {

// Where a buffer's first element is: in an allocation (the CPU and CUDA have one address
// space, allocation 0; an OpenCL buffer is a cl_mem) at an address (host pointer, device
// pointer, or byte offset into the cl_mem). Used for overlap and alignment checks.
struct Location {
    uint64_t allocation, address;
};

struct Backend {
    Device device;
    const Kernels &(*kernels)();
    const halide_device_interface_t *(*interface)();  // nullptr for the CPU
    Location (*locate)(const halide_buffer_t &buffer);
};

// The backend of a device, or nullptr when this build lacks it.
const Backend *find_backend(Device device);
// The backend of a device; throws Error naming op and argument when this build lacks it.
const Backend &require_backend(const char *op, const std::string &argument, Device device);
// The device whose interface a Halide buffer carries (CPU for none); throws for others.
Device device_of(const halide_buffer_t &buffer);
// Where a buffer's first element is: in host memory, or through its device's backend.
inline Location host_location(const halide_buffer_t &buffer) { return {0, reinterpret_cast<uint64_t>(buffer.host)}; }
Location locate_on_device(const halide_buffer_t &buffer);
inline Location locate(const halide_buffer_t &buffer) {
    return buffer.device_interface ? locate_on_device(buffer) : host_location(buffer);
}

}  // namespace helix::detail
