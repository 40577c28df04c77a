#include "error.h"

#include <HalideRuntime.h>

#include <atomic>
#include <cmath>
#include <list>
#include <mutex>
#include <utility>

namespace helix::detail {
namespace {

std::atomic<halide_error_handler_t> previous_handler{nullptr};
std::mutex live_mutex;
// The live contexts, linked through themselves (registering one allocates nothing: a decode
// step makes no heap allocation). As many as calls in flight: a short walk.
CallContext *live_head = nullptr;

// Messages from helix calls go to their CallContext; anything else (another Halide
// pipeline in the same process) goes on to the handler that was installed before.
void route_error(void *user_context, const char *message) {
    if (CallContext *context = CallContext::from(user_context)) {
        context->append(message);
    } else if (halide_error_handler_t previous = previous_handler.load()) {
        previous(user_context, message);
    }
}

// The default is swapped as one immutable pair, so a call sees the old pair or the new
// one, never a mix; pairs are kept for the life of the process (set rarely).
std::mutex default_gpu_mutex;
std::atomic<const GpuContext *> default_gpu{nullptr};
thread_local GpuContext thread_gpu;

}  // namespace

GpuContext current_gpu_context() {
    if (thread_gpu.context) return thread_gpu;
    const GpuContext *d = default_gpu.load(std::memory_order_acquire);
    return d ? *d : GpuContext{};
}

void set_default_gpu_context(GpuContext context) {
    static std::list<GpuContext> kept;
    std::lock_guard<std::mutex> lock(default_gpu_mutex);
    if (!context.context) {
        default_gpu.store(nullptr, std::memory_order_release);
        return;
    }
    kept.push_back(context);
    default_gpu.store(&kept.back(), std::memory_order_release);
}

GpuContext exchange_thread_gpu_context(GpuContext context) { return std::exchange(thread_gpu, context); }

void reject(const char *op, const std::string &argument, const std::string &expected, const std::string &given) {
    throw Error(std::string("helix::") + op + ": " + argument + ": expected " + expected + ", given " + given);
}

std::string range_string(int64_t start, int64_t length) {
    int64_t end;
    if (__builtin_add_overflow(start, length, &end)) return "[" + str(start) + ", " + str(start) + " + " + str(length) + ")";
    return "[" + str(start) + ", " + str(end) + ")";
}

float require_positive_float(const char *op, const std::string &argument, double value, float min) {
    const float f = static_cast<float>(value);  // out of range: inf (or 0 below the smallest float)
    if (!(f >= min) || !std::isfinite(f)) {
        reject(op, argument,
               "a positive finite number, as float32 in [" + str(min) + ", " + str(std::numeric_limits<float>::max()) + "]",
               str(value) + (std::isfinite(value) && value > 0 ? " (float32: " + str(f) + ")" : ""));
    }
    return f;
}

CallContext::CallContext() {
    static std::once_flag installed;
    std::call_once(installed, [] { previous_handler.store(halide_set_error_handler(route_error)); });
    std::lock_guard<std::mutex> lock(live_mutex);
    next_live_ = live_head;
    if (live_head) live_head->previous_live_ = this;
    live_head = this;
}

CallContext::~CallContext() {
    std::lock_guard<std::mutex> lock(live_mutex);
    (previous_live_ ? previous_live_->next_live_ : live_head) = next_live_;
    if (next_live_) next_live_->previous_live_ = previous_live_;
}

void CallContext::append(const char *message) {
    std::lock_guard<std::mutex> lock(live_mutex);  // worker threads may report at once
    if (!message_.empty()) message_ += "; ";
    message_ += message;
    while (!message_.empty() && message_.back() == '\n') message_.pop_back();
}

void CallContext::check(const char *op, int rc) const {
    if (rc == 0) return;
    throw Error(std::string("helix::") + op + ": Halide runtime error " + std::to_string(rc) + ": " +
                (message_.empty() ? std::string("(no message)") : message_));
}

CallContext *CallContext::from(void *user_context) {
    std::lock_guard<std::mutex> lock(live_mutex);
    for (CallContext *c = live_head; c; c = c->next_live_) {
        if (c == user_context) return c;
    }
    return nullptr;
}

}  // namespace helix::detail
