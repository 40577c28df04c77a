// Schedules of the helix generators, kept apart from the algorithms (rope_algorithm.h).
// A generator picks one by its `schedule` GeneratorParam and by the target family:
//   tuned    - the hand schedule for the target (CPU here; GPU families join as functions here);
//   baseline - no schedule at all: everything inlined, serial, scalar. The reference point
//              for benchmarks and a second, independent code path for the tests.
// Autoscheduled variants set no hand schedule (Generator::using_autoscheduler()).
#pragma once

#include "Halide.h"

#include <map>
#include <string>

namespace helix::gen {

enum class Schedule { Tuned, Baseline };

inline const std::map<std::string, Schedule> &schedule_names() {
    static const std::map<std::string, Schedule> names{{"tuned", Schedule::Tuned},
                                                       {"baseline", Schedule::Baseline}};
    return names;
}

// Loop variables shared by every generator: a feature row is (jj, half), then rows n,
// heads h and batches b (see rope_algorithm.h).
struct Vars {
    Halide::Var jj{"jj"}, half{"half"}, n{"n"}, h{"h"}, b{"b"};
};

namespace cpu {

using Halide::Func;
using Halide::Target;
using Halide::TailStrategy;
using Halide::Var;

// Rows handled by one parallel task. 16 rows of the coefficient tile (cos*s and sin*s of
// d = 128 features) are 16 KiB: they stay in L1 while every head and batch of those rows
// streams past them.
constexpr int kRowsPerTask = 16;

inline int lanes(const Target &t) { return t.natural_vector_size<float>(); }

// The (jj, half) part of a row: full vectors along jj (a masked tail when H is not a
// multiple of the vector width), both halves in one iteration so each pair is loaded once.
inline void vectorize_row(Func f, const Vars &v, const Target &t) {
    f.vectorize(v.jj, lanes(t), TailStrategy::GuardWithIf).unroll(v.half);
}

// apply_rotary, one output stream (q' or k'). coef(jj, half, n) holds the per-row
// (cos * scale, sin * scale) pair. It is computed once per tile of rows and reused by
// every head and batch of the tile: the trigonometry costs one evaluation per table
// element, not one per output element. Few rows (decode) parallelize over heads instead.
inline void rotary_stream(Func out, Func coef, const Vars &v, const Target &t) {
    Var io{"io"}, ii{"ii"}, hb{"hb"};
    out.split(v.n, io, ii, kRowsPerTask, TailStrategy::GuardWithIf)
        .fuse(v.h, v.b, hb)
        .reorder(v.jj, v.half, ii, hb, io);
    vectorize_row(out, v, t);
    Halide::Expr rows = out.output_buffer().dim(2).extent();
    out.specialize(rows >= 8 * kRowsPerTask).parallel(io);
    out.parallel(hb);
    coef.compute_at(out, io);
    vectorize_row(coef, v, t);
}

// A pointwise output over (jj, half, n, h, b) rows: rotate_half.
inline void rows(Func out, const Vars &v, const Target &t) {
    Var io{"io"}, ii{"ii"}, hb{"hb"}, task{"task"};
    out.split(v.n, io, ii, kRowsPerTask, TailStrategy::GuardWithIf)
        .fuse(v.h, v.b, hb)
        .fuse(io, hb, task)
        .parallel(task);
    vectorize_row(out, v, t);
}

// A table over (jj, half, n) whose row value does not depend on half: the row is
// computed once (row_value, over (jj, n)) and stored to both halves.
inline void table(Func out, Func row_value, const Vars &v, const Target &t) {
    Var io{"io"}, ii{"ii"};
    out.split(v.n, io, ii, 4 * kRowsPerTask, TailStrategy::GuardWithIf).parallel(io);
    vectorize_row(out, v, t);
    row_value.compute_at(out, ii).vectorize(v.jj, lanes(t), TailStrategy::GuardWithIf);
}

}  // namespace cpu
}  // namespace helix::gen
