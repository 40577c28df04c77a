// Positions (helix.h) resolved into the int32 (n, b) table rows the kernels take.
#include "positions.h"

#include "checks.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <vector>

namespace helix::detail {
namespace {

// A rank 1 or 2 int32/int64 tensor on the host (a device tensor is copied over first),
// named "<name> (<what>)" in messages (built only for a message: no allocation otherwise).
class Integers {
public:
    Integers(const char *op, const char *name, const char *what, const Tensor &t, int max_rank)
        : op_(op), name_(name), what_(what) {
        if (!t.defined() || t.rank() < 1 || t.rank() > max_rank) {
            reject(op, this->name(), max_rank == 1 ? "a rank 1 tensor" : "a rank 1 or 2 tensor",
                   t.defined() ? "shape " + t.shape_string() : "an undefined tensor");
        }
        if (t.dtype() != DType::Int32 && t.dtype() != DType::Int64) {
            reject(op, this->name(), "dtype int32 or int64", to_string(t.dtype()));
        }
        require_defined(op, what, t);
        host_ = t.device() == Device::CPU ? &t : &(copy_ = t.to(Device::CPU));
        wide_ = t.dtype() == DType::Int64;
    }
    Integers(const Integers &) = delete;  // host_ may point at copy_
    Integers &operator=(const Integers &) = delete;
    int64_t operator()(int64_t i, int64_t j = 0) const {
        const int64_t o = host_->rank() == 1 ? i * host_->stride(0) : i * host_->stride(0) + j * host_->stride(1);
        return wide_ ? static_cast<const int64_t *>(host_->data())[o] : static_cast<const int32_t *>(host_->data())[o];
    }
    const Tensor &tensor() const { return *host_; }
    int64_t size(int dim) const { return host_->size(dim); }
    std::string name() const { return std::string(name_) + " (" + what_ + ")"; }
    [[noreturn]] void reject_shape(const std::string &expected) const {
        reject(op_, name(), expected, "shape " + host_->shape_string());
    }

private:
    const char *op_, *name_, *what_;
    Tensor copy_;                // a device tensor's host copy
    const Tensor *host_ = nullptr;  // the tensor on the host (no handle copy: decode counts them)
    bool wide_;
};

std::vector<int32_t> &scratch(int slot) {
    thread_local std::vector<int32_t> slots[2];
    return slots[slot];
}

}  // namespace

Tensor varlen_view(const Tensor &t) { return t.defined() && t.rank() == 3 ? t.transpose(0, 1) : t; }

StreamRows::StreamRows(const char *op, const char *name, const Positions &p, const Tensor &x, int64_t limit,
                       int64_t aligned_first, int slot) {
    const int64_t n = x.size(-2), batches = x.rank() >= 4 ? x.size(-4) : 1;
    std::vector<int32_t> &rows = scratch(slot);
    if (rows.size() < static_cast<size_t>(n * batches)) rows.resize(n * batches);
    auto limit_text = [&] {
        return limit > std::numeric_limits<int32_t>::max() ? std::string("[0, 2^31) (no table)")
                                                           : "the table's rows [0, " + str(limit) + ")";
    };
    // Row i of batch b at `position` (checked also for a batch the tensor lacks: ids shared
    // by every sequence of an empty batch); what names it in a message.
    auto put = [&](int64_t b, int64_t i, int64_t position, auto &&what) {
        if (position < 0 || position >= limit) {
            reject(op, name, "positions inside " + limit_text(), what() + " = " + str(position));
        }
        if (b < batches) rows[b * n + i] = static_cast<int32_t>(position);
    };
    switch (p.kind()) {
    case Positions::Kind::Aligned:
    case Positions::Kind::Start: {
        const int64_t first = p.kind() == Positions::Kind::Aligned ? aligned_first : p.first();
        if (n > 0) {
            // The first and last rows bound the rest.
            put(0, 0, first, [&] { return std::string("row 0's position (start)"); });
            const int64_t last = first > std::numeric_limits<int64_t>::max() - (n - 1) ? first : first + n - 1;
            if (last != first + n - 1 || last >= limit) {
                reject(op, name, "positions inside " + limit_text(),
                       "rows at " + range_string(first, n) + " (start " + str(first) + ", " + str(n) + " rows)");
            }
        }
        for (int64_t b = 0; b < batches; b++) {
            for (int64_t i = 0; i < n; i++) rows[b * n + i] = static_cast<int32_t>(first + i);
        }
        break;
    }
    case Positions::Kind::Offsets: {
        const Integers offsets(op, name, "offsets", p.tensor(), 1);
        if (offsets.size(0) != batches) {
            offsets.reject_shape("shape (" + str(batches) + ",) (one offset per sequence: the batch size)");
        }
        for (int64_t b = 0; b < batches; b++) {
            const int64_t first = offsets(b);
            for (int64_t i = 0; i < n; i++) {
                const int64_t position = first > std::numeric_limits<int64_t>::max() - i ? -1 : first + i;
                put(b, i, position, [&] { return "offsets[" + str(b) + "] + " + str(i); });
            }
        }
        break;
    }
    case Positions::Kind::Ids: {
        const Integers ids(op, name, "ids", p.tensor(), 2);
        const Tensor &t = ids.tensor();
        const bool per_batch = t.rank() == 2 && t.size(0) != 1;
        if (t.size(-1) != n || (per_batch && t.size(0) != batches)) {
            ids.reject_shape("shape (" + str(n) + ",), (1, " + str(n) + ") or (" + str(batches) + ", " + str(n) +
                             ") (the rows of the tensor; its batches)");
        }
        // Every id is checked, the shared ones (n,) too when there is no sequence to use them.
        const int64_t id_rows = per_batch ? batches : std::max<int64_t>(batches, 1);
        for (int64_t b = 0; b < id_rows; b++) {
            for (int64_t i = 0; i < n; i++) {
                const int64_t position = t.rank() == 1 ? ids(i) : ids(per_batch ? b : 0, i);
                put(b, i, position, [&] {
                    return t.rank() == 1 ? "ids[" + str(i) + "]" : "ids[" + str(per_batch ? b : 0) + ", " + str(i) + "]";
                });
            }
        }
        break;
    }
    case Positions::Kind::Varlen: {
        const Integers cu(op, name, "cu_seqlens", p.tensor(), 1);
        const int64_t sequences = cu.size(0) - 1;
        if (sequences < 0 || cu(0) != 0 || cu(sequences) != n) {
            reject(op, cu.name(), "(b + 1,) values from 0 to the token count " + str(n),
                   "shape " + cu.tensor().shape_string() +
                       (sequences >= 0 ? " from " + str(cu(0)) + " to " + str(cu(sequences)) : std::string()));
        }
        for (int64_t s = 0; s < sequences; s++) {
            if (cu(s + 1) < cu(s)) {
                reject(op, cu.name(), "non-decreasing values",
                       "cu_seqlens[" + str(s + 1) + "] = " + str(cu(s + 1)) + " < cu_seqlens[" + str(s) + "] = " + str(cu(s)));
            }
        }
        std::optional<Integers> offsets;
        if (p.offsets().defined()) {
            offsets.emplace(op, name, "varlen offsets", p.offsets(), 1);
            if (offsets->size(0) != sequences) {
                offsets->reject_shape("shape (" + str(sequences) + ",) (one per sequence of cu_seqlens)");
            }
        }
        for (int64_t s = 0; s < sequences; s++) {
            const int64_t first = offsets ? (*offsets)(s) : 0;
            for (int64_t t = cu(s); t < cu(s + 1); t++) {
                const int64_t i = t - cu(s);
                const int64_t position = first > std::numeric_limits<int64_t>::max() - i ? -1 : first + i;
                put(0, t, position, [&] {
                    return "token " + str(t) + " of sequence " + str(s) + (offsets ? " (offset " + str(first) + ")" : "");
                });
            }
        }
        break;
    }
    }
    dims_[0] = halide_dimension_t(0, static_cast<int32_t>(n), 1);
    dims_[1] = halide_dimension_t(0, static_cast<int32_t>(batches), static_cast<int32_t>(n));
    buf_.host = reinterpret_cast<uint8_t *>(rows.data());
    buf_.type = halide_type_t(halide_type_int, 32);
    buf_.dimensions = 2;
    buf_.dim = dims_;
    if (x.device() != Device::CPU && n * batches > 0) {
        const Tensor host = Tensor::from_halide(Halide::Runtime::Buffer<>(buf_));
        device_ = host.to(x.device());
    }
}

StreamRows::StreamRows(const StreamRows &whole, int64_t first, int64_t count) : buf_(whole.buf_) {
    dims_[0] = halide_dimension_t(0, static_cast<int32_t>(count), 1);
    dims_[1] = whole.dims_[1];
    buf_.dim = dims_;
    buf_.host += first * sizeof(int32_t);
}

halide_buffer_t *StreamRows::device_buffer() { return const_cast<halide_buffer_t *>(device_.to_halide().raw_buffer()); }

}  // namespace helix::detail
