// Argument checking and the routing of Halide runtime errors into helix::Error.
#pragma once

#include "helix/helix.h"

#include <cstdint>
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

private:
    std::string message_;
};

}  // namespace helix::detail
