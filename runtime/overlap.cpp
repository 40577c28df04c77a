#include "overlap.h"

#include <algorithm>

namespace helix::detail {
namespace {

using i128 = __int128;

i128 gcd(i128 a, i128 b) {
    if (a < 0) a = -a;
    if (b < 0) b = -b;
    while (b) {
        const i128 r = a % b;
        a = b;
        b = r;
    }
    return a;
}

// x with a * x = 1 (mod m), for gcd(a, m) = 1 and m >= 1.
i128 inverse_mod(i128 a, i128 m) {
    i128 r0 = m, r1 = ((a % m) + m) % m, t0 = 0, t1 = 1;
    while (r1) {
        const i128 q = r0 / r1;
        std::swap(r0 -= q * r1, r1);
        std::swap(t0 -= q * t1, t1);
    }
    return ((t0 % m) + m) % m;
}

i128 floor_div(i128 a, i128 b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }
i128 ceil_div(i128 a, i128 b) { return -floor_div(-a, b); }

// sum coef_i * t_i = target with 0 <= t_i <= upper_i and coef_i > 0: whether it has an
// integer solution. Variables of any range and sign are shifted and reflected into that
// form as they are added.
class Equation {
public:
    // A variable v in [lo, hi] with coefficient coef on the left-hand side.
    void add(i128 coef, i128 lo, i128 hi) {
        target_ -= coef * lo;  // v = lo + t, t in [0, hi - lo]
        const i128 upper = hi - lo;
        if (coef == 0 || upper == 0) return;
        if (coef < 0) {  // t = upper - t'
            target_ -= coef * upper;
            coef = -coef;
        }
        terms_.push_back({coef, upper});
    }
    // A constant on the left-hand side (the right-hand side is 0).
    void add_constant(i128 value) { target_ -= value; }

    Overlap solve(int64_t max_work) {
        if (target_ < 0) return Overlap::No;
        // Equal coefficients become one variable with the summed range; larger ones first.
        std::sort(terms_.begin(), terms_.end(), [](const Term &a, const Term &b) { return a.coef > b.coef; });
        std::vector<Term> merged;
        for (const Term &t : terms_) {
            if (!merged.empty() && merged.back().coef == t.coef) {
                merged.back().upper += t.upper;
            } else {
                merged.push_back(t);
            }
        }
        for (Term &t : merged) t.upper = std::min(t.upper, target_ / t.coef);
        terms_ = merged;
        const size_t n = terms_.size();
        reach_.assign(n + 1, 0);
        gcd_.assign(n + 1, 0);
        for (size_t i = n; i-- > 0;) {
            reach_[i] = reach_[i + 1] + terms_[i].coef * terms_[i].upper;
            gcd_[i] = gcd(gcd_[i + 1], terms_[i].coef);
        }
        work_left_ = max_work;
        const int found = search(0, target_);
        return found > 0 ? Overlap::Yes : found == 0 ? Overlap::No : Overlap::Unknown;
    }

private:
    struct Term {
        i128 coef, upper;
    };

    // 1: a solution of terms [i, n) for target; 0: none; -1: out of work.
    int search(size_t i, i128 target) {
        if (target == 0) return 1;
        if (i == terms_.size() || target < 0 || target > reach_[i] || target % gcd_[i]) return 0;
        const Term &t = terms_[i];
        if (i + 1 == terms_.size()) return target / t.coef <= t.upper ? 1 : 0;  // divisible, checked above
        // The rest can make any multiple of g up to reach_[i + 1]: t.coef * z must be
        // congruent to target modulo g, i.e. z = z0 (mod step).
        const i128 g = gcd_[i + 1], h = gcd(t.coef, g), step = g / h;
        const i128 z0 = (target / h % step) * inverse_mod(t.coef / h, step) % step;
        const i128 lo = std::max<i128>(0, ceil_div(target - reach_[i + 1], t.coef));
        const i128 hi = std::min(t.upper, target / t.coef);
        if (hi < lo) return 0;
        bool exhausted = false;
        for (i128 z = hi - ((hi - z0) % step + step) % step; z >= lo; z -= step) {
            if (--work_left_ < 0) return -1;
            const int r = search(i + 1, target - t.coef * z);
            if (r > 0) return 1;
            exhausted |= r < 0;
        }
        return exhausted ? -1 : 0;
    }

    std::vector<Term> terms_;
    i128 target_ = 0;
    std::vector<i128> reach_, gcd_;  // per suffix of terms_: the largest sum, the gcd
    int64_t work_left_ = 0;
};

// The lowest and one past the highest byte of a layout with at least one element.
void byte_range(const MemoryLayout &m, i128 &lo, i128 &hi) {
    lo = hi = m.base;
    for (const MemoryLayout::Dim &d : m.dims) {
        const i128 reach = i128(d.extent - 1) * d.stride;
        (reach < 0 ? lo : hi) += reach;
    }
    hi += m.bytes;
}

bool empty(const MemoryLayout &m) {
    return std::any_of(m.dims.begin(), m.dims.end(), [](const MemoryLayout::Dim &d) { return d.extent <= 0; });
}

}  // namespace

Overlap shares_memory(const MemoryLayout &a, const MemoryLayout &b, int64_t max_work) {
    if (a.allocation != b.allocation || empty(a) || empty(b)) return Overlap::No;
    i128 a_lo, a_hi, b_lo, b_hi;
    byte_range(a, a_lo, a_hi);
    byte_range(b, b_lo, b_hi);
    if (a_hi <= b_lo || b_hi <= a_lo) return Overlap::No;
    // Element x of a and y of b share a byte iff
    //   (a.base + sum a.stride x) - (b.base + sum b.stride y) = e - (a.bytes - 1)
    // for some e in [0, a.bytes + b.bytes - 2].
    Equation eq;
    for (const MemoryLayout::Dim &d : a.dims) eq.add(d.stride, 0, d.extent - 1);
    for (const MemoryLayout::Dim &d : b.dims) eq.add(-i128(d.stride), 0, d.extent - 1);
    eq.add(-1, 0, a.bytes + b.bytes - 2);
    eq.add_constant(a.base - b.base + a.bytes - 1);
    return eq.solve(max_work);
}

Overlap overlaps_itself(const MemoryLayout &a, int64_t max_work) {
    if (empty(a)) return Overlap::No;
    std::vector<MemoryLayout::Dim> dims;
    for (const MemoryLayout::Dim &d : a.dims) {
        if (d.extent == 1) continue;
        if (d.stride == 0) return Overlap::Yes;
        dims.push_back({d.extent, d.stride < 0 ? -d.stride : d.stride});  // reflecting a dimension changes nothing
    }
    // Nested strides (each beyond the reach of the smaller ones) cannot collide: the
    // common case, decided without a search.
    std::sort(dims.begin(), dims.end(), [](const auto &x, const auto &y) { return x.stride < y.stride; });
    i128 reach = a.bytes;
    bool nested = true;
    for (const MemoryLayout::Dim &d : dims) {
        nested &= d.stride >= reach;
        reach += i128(d.extent - 1) * d.stride;
    }
    if (nested) return Overlap::No;
    // Elements x != x' collide iff w = x - x' != 0 has |sum stride w| < bytes. Up to the
    // sign of w, its first non-zero entry p is positive: one equation per p.
    Overlap result = Overlap::No;
    for (size_t p = 0; p < dims.size(); p++) {
        Equation eq;
        eq.add(dims[p].stride, 1, dims[p].extent - 1);
        for (size_t j = p + 1; j < dims.size(); j++) eq.add(dims[j].stride, -(dims[j].extent - 1), dims[j].extent - 1);
        eq.add(-1, 0, 2 * (a.bytes - 1));  // sum stride w = e - (bytes - 1)
        eq.add_constant(a.bytes - 1);
        const Overlap r = eq.solve(max_work);
        if (r == Overlap::Yes) return r;
        if (r == Overlap::Unknown) result = r;
    }
    return result;
}

}  // namespace helix::detail
