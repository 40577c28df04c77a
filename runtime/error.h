// Argument checking and the routing of Halide runtime errors into helix::Error.
#pragma once

#include "helix/helix.h"

#include <cstdint>
#include <limits>
#include <sstream>
#include <string>

namespace helix::detail {

// Throws Error("helix::<op>: <argument>: expected <expected>, given <given>").
[[noreturn]] void reject(const char *op, const std::string &argument, const std::string &expected,
                         const std::string &given);

template <typename T>
std::string str(const T &value) {
    std::ostringstream s;
    s << value;
    return s.str();
}

// "[start, start + length)", exact even where the sum does not fit in int64.
std::string range_string(int64_t start, int64_t length);

// value as the float32 a kernel takes; throws unless that is finite and >= min (SPEC
// section 3: numbers are checked after their conversion, so 1e39 is not finite).
float require_positive_float(const char *op, const std::string &argument, double value,
                             float min = std::numeric_limits<float>::denorm_min());

// A GPU context and stream (CUDA: a CUcontext and a CUstream); a null context means none
// was given (the backend uses its own).
struct GpuContext {
    void *context = nullptr, *stream = nullptr;
};
// The one in force for a call starting on this thread now: the thread's (innermost
// helix::cuda::ScopedContext), else the process-wide default (helix::cuda::set_context).
GpuContext current_gpu_context();
// Sets the process-wide default; calls starting afterwards see it whole.
void set_default_gpu_context(GpuContext context);
// Sets this thread's; returns the previous one.
GpuContext exchange_thread_gpu_context(GpuContext context);

// The user_context of every kernel call. Halide's runtime reports errors through a
// process-wide handler; helix's handler appends them to the context of the failing call,
// so concurrent calls on several threads each get their own message. Live contexts are
// registered, so a user_context of some other pipeline is never mistaken for one.
class CallContext {
public:
    CallContext();
    ~CallContext();
    CallContext(const CallContext &) = delete;
    CallContext &operator=(const CallContext &) = delete;
    void append(const char *message);
    // Throws Error carrying the runtime's message when rc != 0.
    void check(const char *op, int rc) const;
    static CallContext *from(void *user_context);
    // The GPU context and stream of this call, fixed when it started.
    const GpuContext &gpu_context() const { return gpu_; }

private:
    std::string message_;
    GpuContext gpu_ = current_gpu_context();
    CallContext *previous_live_ = nullptr, *next_live_ = nullptr;  // the registry (error.cpp)
};

}  // namespace helix::detail
