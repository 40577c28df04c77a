#include "error.h"

#include <HalideRuntime.h>

#include <atomic>
#include <mutex>
#include <unordered_set>

namespace helix::detail {
namespace {

std::atomic<halide_error_handler_t> previous_handler{nullptr};
std::mutex live_mutex;
std::unordered_set<const void *> &live_contexts() {
    static std::unordered_set<const void *> live;
    return live;
}

// Messages from helix calls go to their CallContext; anything else (another Halide
// pipeline in the same process) goes on to the handler that was installed before.
void route_error(void *user_context, const char *message) {
    if (CallContext *context = CallContext::from(user_context)) {
        context->append(message);
    } else if (halide_error_handler_t previous = previous_handler.load()) {
        previous(user_context, message);
    }
}

}  // namespace

void reject(const char *op, const std::string &argument, const std::string &expected, const std::string &given) {
    throw Error(std::string("helix::") + op + ": " + argument + ": expected " + expected + ", given " + given);
}

CallContext::CallContext() {
    static std::once_flag installed;
    std::call_once(installed, [] { previous_handler.store(halide_set_error_handler(route_error)); });
    std::lock_guard<std::mutex> lock(live_mutex);
    live_contexts().insert(this);
}

CallContext::~CallContext() {
    std::lock_guard<std::mutex> lock(live_mutex);
    live_contexts().erase(this);
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
    return live_contexts().count(user_context) ? static_cast<CallContext *>(user_context) : nullptr;
}

}  // namespace helix::detail
