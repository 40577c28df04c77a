// Schedules of the helix generators, kept apart from the algorithms (rope_algorithm.h).
// A generator picks one by its `schedule` GeneratorParam and by the target family:
//   tuned    - the hand schedule for the target family (cpu:: or gpu:: below);
//   baseline - serial and scalar, everything inlined but the pair of outputs of each
//              feature pair (in_place_pairs below). The reference point for benchmarks
//              and a second, independent code path for the tests.
// Autoscheduled variants set no hand schedule (Generator::using_autoscheduler()).
#pragma once

#include "Halide.h"

#include <map>
#include <string>

namespace helix::gen {

// The schedules of every generator: tuned and baseline.
enum class Schedule { Tuned, Baseline };

inline const std::map<std::string, Schedule> &schedule_names() {
    static const std::map<std::string, Schedule> names{{"tuned", Schedule::Tuned}, {"baseline", Schedule::Baseline}};
    return names;
}

// apply_rotary's: those two; decode, the CPU kernel of small outputs (cpu::rotary_decode);
// and the CPU alternatives that lost in bench/README.md, kept so the sweep can be rerun:
//   heads_outer - parallel over heads, each task all rows of its head (cos/sin recomputed
//                 per head);
//   coef_table  - the (cos*s, sin*s) table computed once for all rows, then streamed.
enum class RotarySchedule { Tuned, Baseline, Decode, HeadsOuter, CoefTable };

inline const std::map<std::string, RotarySchedule> &rotary_schedule_names() {
    static const std::map<std::string, RotarySchedule> names{{"tuned", RotarySchedule::Tuned},
                                                             {"baseline", RotarySchedule::Baseline},
                                                             {"decode", RotarySchedule::Decode},
                                                             {"heads_outer", RotarySchedule::HeadsOuter},
                                                             {"coef_table", RotarySchedule::CoefTable}};
    return names;
}

// Loop variables shared by every generator: a feature row is (jj, half), then rows n,
// heads h and batches b (see rope_algorithm.h).
struct Vars {
    Halide::Var jj{"jj"}, half{"half"}, n{"n"}, h{"h"}, b{"b"};
};

// The two outputs of a feature pair (jj, 0) and (jj, 1) are computed together from one
// load of each input (pair, rope_algorithm.h) before either is stored, so an output may
// be its own input. Scalar: the pair loop outside the half loop, the pair computed there.
inline void in_place_pairs(Halide::Func out, Halide::Func pair, const Vars &v) {
    out.reorder(v.half, v.jj);
    pair.compute_at(out, v.jj);
}

namespace cpu {

using Halide::Func;
using Halide::Target;
using Halide::TailStrategy;
using Halide::Var;

// Rows handled by one parallel task. 16 rows of the coefficient tile (cos*s and sin*s of
// d = 128 features) are 16 KiB: they stay in L1 while every head and batch of those rows
// streams past them.
constexpr int kRowsPerTask = 16;

// Outputs of at most this many feature pairs run serially (rotary_stream): 64 rows of
// d = 128, the 32 query heads of a decode step and then some.
constexpr int kSmallOutputPairs = 64 * 64;

inline int lanes(const Target &t) { return t.natural_vector_size<float>(); }

// The loop over the vectors of a row that vectorize_row makes (jj's outer part).
inline Var vector_loop() { return Var("jo"); }

// The (jj, half) part of a row: full vectors along jj (a masked tail when H is not a
// multiple of the vector width), both halves in one iteration.
inline void vectorize_row(Halide::Stage f, const Vars &v, int width, TailStrategy tail = TailStrategy::GuardWithIf) {
    Var ji{"ji"};
    f.split(v.jj, vector_loop(), ji, width, tail).vectorize(ji).unroll(v.half).reorder(ji, v.half, vector_loop());
}
// A pair Func (see in_place_pairs) computed per vector of out's rows, before the two stores.
inline void pair_per_vector(Func pair, Func out, const Vars &v, int width) {
    pair.compute_at(out, vector_loop()).vectorize(v.jj, width, TailStrategy::GuardWithIf);
}
inline void vectorize_row(Func f, const Vars &v, const Target &t, Func pair = Func()) {
    vectorize_row(f, v, lanes(t));
    if (pair.defined()) pair_per_vector(pair, f, v, lanes(t));
}

// out's loop nest, made by loops(stage, tail) (which calls vectorize_row with that tail),
// twice: for rows of whole vectors (H a multiple of the width: d = 128, 64, 256 ...), no
// tail, so that a vector's pair (computed per vector) is a register, not a masked slot on
// the stack; and for any H, with a guarded tail.
template <typename Loops>
void whole_vectors_or_tail(Func out, Func pair, const Vars &v, int width, Loops loops) {
    loops(out.specialize(out.output_buffer().dim(0).extent() % width == 0), TailStrategy::RoundUp);
    loops(Halide::Stage(out), TailStrategy::GuardWithIf);
    pair_per_vector(pair, out, v, width);
}

// The knobs of the apply_rotary CPU schedule that the benchmark sweep varies.
struct RotaryKnobs {
    RotarySchedule schedule = RotarySchedule::Tuned;
    int rows_per_task = kRowsPerTask;
    int vector_factor = 1;  // vector width in natural vectors
};

// apply_rotary, one output stream (q' or k'). coef(jj, half, n) holds the per-row
// (cos * scale, sin * scale) pair. It is computed once per tile of rows and reused by
// every head and batch of the tile: the trigonometry costs one evaluation per table
// element, not one per output element. Few rows (decode) parallelize over heads instead.
// trig (when defined: the no-table form) is coef's per-frequency part, computed with it
// once for both halves.
inline void rotary_stream(Func out, Func coef, Func trig, Func pair, const Vars &v, const Target &t,
                          const RotaryKnobs &k = {}) {
    Var io{"io"}, ii{"ii"}, hb{"hb"};
    const int width = lanes(t) * k.vector_factor;
    auto with_trig = [&](Halide::LoopLevel at) {
        if (trig.defined()) trig.compute_at(at).vectorize(v.jj, width, TailStrategy::GuardWithIf);
    };
    if (k.schedule == RotarySchedule::HeadsOuter) {
        out.fuse(v.h, v.b, hb).parallel(hb);
        vectorize_row(out, v, width);
        pair_per_vector(pair, out, v, width);
        coef.compute_at(out, v.n);
        vectorize_row(coef, v, width);
        with_trig(Halide::LoopLevel(out, v.n));
        return;
    }
    const Halide::OutputImageParam o = out.output_buffer();
    Halide::Expr rows = o.dim(2).extent();
    auto stream = [&](Halide::Stage s, TailStrategy tail) {
        s.split(v.n, io, ii, k.rows_per_task, TailStrategy::GuardWithIf).reorder(v.jj, v.half, ii, v.h, v.b, io);
        vectorize_row(s, v, width, tail);
        // A small output (a decode step) is one serial loop nest: a task per head, and the two
        // divisions that split a fused (h, b) index, cost more than a head's row. (The runtime
        // gives such outputs to rotary_decode's kernel when it has one for their width.)
        s.specialize(rows * o.dim(3).extent() * o.dim(4).extent() * o.dim(0).extent() <= kSmallOutputPairs);
        s.fuse(v.h, v.b, hb);
        s.specialize(rows >= 8 * k.rows_per_task).parallel(io);
        // Fewer rows: tasks of whole heads, at least rows_per_task rows each (a decode batch of
        // 64 sequences would otherwise be 2560 one-row tasks, each costing more than its row).
        Var hbo{"hbo"}, hbi{"hbi"};
        s.split(hb, hbo, hbi, Halide::max(1, k.rows_per_task / rows), TailStrategy::GuardWithIf).parallel(hbo);
    };
    whole_vectors_or_tail(out, pair, v, width, stream);
    if (k.schedule == RotarySchedule::CoefTable) {
        Var co{"co"}, ci{"ci"};
        coef.compute_root().split(v.n, co, ci, k.rows_per_task, TailStrategy::GuardWithIf).parallel(co);
        with_trig(Halide::LoopLevel(coef, ci));
    } else {
        coef.compute_at(out, io);
        with_trig(Halide::LoopLevel(out, io));
    }
    vectorize_row(coef, v, width);
}

// apply_rotary for a small output (a decode step): one serial loop nest, heads innermost
// so that a row's coef (and trig) is computed once for all of them. Every allocation has a
// constant size (coef and trig bounded to max_pairs pairs, the pair one vector), so
// all are on the stack and the kernel cannot fail: it is built without Halide's argument
// checks (no_asserts, cmake/HelixKernels.cmake), whose cost is a third of a decode step's
// kernel; runtime/operations.cpp takes it only for buffers it has checked as they did.
inline void rotary_decode(Func out, Func coef, Func trig, Func pair, const Vars &v, const Target &t, int max_pairs) {
    const int width = lanes(t);
    whole_vectors_or_tail(out, pair, v, width, [&](Halide::Stage s, TailStrategy tail) {
        s.reorder(v.jj, v.half, v.h, v.n, v.b);
        vectorize_row(s, v, width, tail);
    });
    coef.compute_at(out, v.n).bound_storage(v.jj, max_pairs);
    vectorize_row(coef, v, width);
    if (trig.defined()) {
        trig.compute_at(out, v.n).bound_storage(v.jj, max_pairs).vectorize(v.jj, width, TailStrategy::GuardWithIf);
    }
}

// A pointwise output over (jj, half, n, h, b) rows: rotate_half. Tasks of 256 rows
// (128 KiB at d = 128) of one head: 16-row tasks ran at half the speed (scheduling
// overhead). The row blocks and the heads are two nested parallel loops, not one fused
// task index: through a fused index Halide bounds the pair of a vector over a range of heads
// (not a constant size), and allocated it on the heap once per vector (7x slower).
inline void rows(Func out, Func pair, const Vars &v, const Target &t) {
    Var io{"io"}, ii{"ii"}, hb{"hb"};
    out.split(v.n, io, ii, 16 * kRowsPerTask, TailStrategy::GuardWithIf).fuse(v.h, v.b, hb).parallel(io).parallel(hb);
    vectorize_row(out, v, t, pair);
}

// A copy over (f, n, h, b) rows: tasks of 256 rows, vectorized along the features.
inline void copy_rows(Func out, Var f, const Vars &v, int lanes) {
    Var io{"io"}, ii{"ii"}, hb{"hb"}, task{"task"};
    out.split(v.n, io, ii, 16 * kRowsPerTask, TailStrategy::GuardWithIf)
        .fuse(v.h, v.b, hb)
        .fuse(io, hb, task)
        .parallel(task)
        .vectorize(f, lanes, TailStrategy::GuardWithIf);
}

// A table over (jj, half, n) whose row value does not depend on half: the row is
// computed once (row_value, over (jj, n)) and stored to both halves. Row values are made
// per task (64 rows): per row, each would be a heap allocation (its width is not a
// constant), which cost more than the row.
inline void table(Func out, Func row_value, const Vars &v, const Target &t) {
    Var io{"io"}, ii{"ii"};
    out.split(v.n, io, ii, 4 * kRowsPerTask, TailStrategy::GuardWithIf).parallel(io);
    vectorize_row(out, v, t);
    row_value.compute_at(out, io).vectorize(v.jj, lanes(t), TailStrategy::GuardWithIf);
}

}  // namespace cpu

// GPU (CUDA, OpenCL, ...): a thread owns 4 consecutive features of both halves (16-byte
// accesses) of one row; 16 such threads cover up to 64 features of a half and 16 rows
// make a block. Wider rows loop inside the thread. Rows whose half width is a multiple of
// 4 get the vector path; others (d = 2, 6, ...) a scalar one: Halide 21's OpenCL backend
// cannot emit the predicated vector accesses a vector tail would need.
namespace gpu {

using Halide::Func;
using Halide::Stage;
using Halide::TailStrategy;
using Halide::Var;

constexpr int kFeaturesPerThread = 4, kThreadsPerRow = 16, kRowsPerBlock = 16, kHeadsPerThread = 8;
// Of a thread's heads, how many are unrolled (their loads in flight together); more costs
// registers, so fewer blocks fit on a multiprocessor (bench/README.md, GPU).
constexpr int kHeadsUnrolled = 1;

struct RowTile {
    Var jb{"jb"}, jt{"jt"}, ji{"ji"}, no{"no"}, ni{"ni"};
};

// Whether every row of these buffers starts 16 bytes from the buffer's start times an
// integer: the strides of all but the feature dimension are multiples of 4 elements.
// (With the caller's rows_aligned input, which vouches for the start itself.)
template <typename... Buffers>
Halide::Expr strides_aligned(const Buffers &...buffers) {
    Halide::Expr aligned = Halide::Internal::const_true();
    auto add = [&](const auto &b) {
        for (int d = 1; d < b.dimensions(); d++) aligned = aligned && b.dim(d).stride() % kFeaturesPerThread == 0;
    };
    (add(buffers), ...);
    return aligned;
}

// The condition of the vector path of tile_rows.
inline Halide::Expr vector_path(Func out, Halide::Expr aligned) {
    return out.output_buffer().dim(0).extent() % kFeaturesPerThread == 0 && aligned;
}

// f computed at loop `at` of out for a thread's features: constant storage (the scalar
// path's tail is guarded, not rounded up) indexed by constants (unrolled), so registers,
// not local memory or a buffer Halide allocates on the device per call.
inline Func &in_registers(Func &f, Func out, const Var &at, const Vars &v) {
    return f.compute_at(out, at)
        .bound_storage(v.jj, kFeaturesPerThread)
        .unroll(v.jj, kFeaturesPerThread, TailStrategy::GuardWithIf);
}

// The two outputs of each of a thread's feature pairs (pair, rope_algorithm.h) are computed,
// in registers, before either is stored, so an output may be exactly its input: computed
// at loop `at` of out, as one 4-lane vector on the vector path, else unrolled and guarded.
inline void pair_per_thread(Func pair, Func out, const Var &at, const Vars &v, Halide::Expr aligned) {
    pair.specialize(vector_path(out, aligned)).vectorize(v.jj, kFeaturesPerThread);
    in_registers(pair, out, at, v);
}

// Splits the features into (jb serial, jt threads, ji lanes) and the rows into
// (no blocks, ni threads), in the vector specialization (half width a multiple of 4 and
// rows aligned: 16-byte accesses) and in the scalar fallback; then `finish` orders and
// maps the loops of each.
template <typename Finish>
void tile_rows(Func out, const Vars &v, const RowTile &t, Halide::Expr aligned, Finish finish) {
    auto tile = [&](Stage s, bool vector) {
        Var jo{"jo"};
        s.split(v.jj, jo, t.ji, kFeaturesPerThread, vector ? TailStrategy::RoundUp : TailStrategy::GuardWithIf)
            .split(jo, t.jb, t.jt, kThreadsPerRow, TailStrategy::GuardWithIf)
            .split(v.n, t.no, t.ni, kRowsPerBlock, TailStrategy::GuardWithIf)
            .unroll(v.half);
        if (vector) {
            s.vectorize(t.ji);
        } else {
            s.unroll(t.ji);  // constant indices into the per-thread values: registers
        }
        finish(s);
    };
    tile(out.specialize(vector_path(out, aligned)), true);
    tile(out, false);
}

// apply_rotary, one output stream: coef (cos*s, sin*s) is computed by each thread for its
// features and row, then reused for up to 8 heads of one batch looped inside the thread.
// One batch per block row keeps coef's footprint constant, so it lives in registers: over
// several batches (heads and batches fused) Halide gave it a global buffer that every call
// allocated on the device, wrote and read back.
inline void rotary_stream(Func out, Func coef, Func trig, Func pair, const Vars &v, Halide::Expr aligned,
                          int heads_unrolled) {
    RowTile t;
    Var ho{"ho"}, hi{"hi"}, hio{"hio"}, hii{"hii"}, hob{"hob"};
    tile_rows(out, v, t, aligned, [&](Stage s) {
        s.split(v.h, ho, hi, kHeadsPerThread, TailStrategy::GuardWithIf)
            .split(hi, hio, hii, heads_unrolled, TailStrategy::GuardWithIf)
            .fuse(ho, v.b, hob)
            .reorder(t.ji, v.half, hii, hio, t.jb, t.jt, t.ni, t.no, hob)
            .unroll(hii)
            .gpu_threads(t.jt, t.ni)
            .gpu_blocks(t.no, hob);
    });
    in_registers(coef, out, t.jb, v).unroll(v.half);
    if (trig.defined()) in_registers(trig, out, t.jb, v);
    pair_per_thread(pair, out, hii, v, aligned);
}

// A pointwise output over (jj, half, n, h, b): rotate_half.
inline void rows(Func out, Func pair, const Vars &v, Halide::Expr aligned) {
    RowTile t;
    Var hb{"hb"};
    tile_rows(out, v, t, aligned, [&](Stage s) {
        s.fuse(v.h, v.b, hb).reorder(t.ji, v.half, t.jb, t.jt, t.ni, t.no, hb).gpu_threads(t.jt, t.ni).gpu_blocks(t.no, hb);
    });
    pair_per_thread(pair, out, t.jb, v, aligned);
}

// A table over (jj, half, n) whose row value does not depend on half.
inline void table(Func out, Func row_value, const Vars &v, Halide::Expr aligned) {
    RowTile t;
    tile_rows(out, v, t, aligned, [&](Stage s) {
        s.reorder(t.ji, v.half, t.jb, t.jt, t.ni, t.no).gpu_threads(t.jt, t.ni).gpu_blocks(t.no);
    });
    row_value.compute_at(out, t.jb);
}

// A per-frequency vector (jj): H values, computed once on the host (libm's correctly
// rounded double pow and log, as on the CPU) and copied over; not worth a kernel launch.
inline void per_frequency(Func f) { f.compute_root(); }

// A per-row vector (n) that must be rounded exactly as written (a float32 division):
// computed on the host, where division is correctly rounded (GPU fast-math division is not).
inline void per_row(Func f) { f.compute_root(); }

}  // namespace gpu
}  // namespace helix::gen
