// The AOT kernels behind the API, as a table of function pointers: the API runs the tuned
// set; tests and benchmarks run the same API code over other schedules (baseline, ...).
#pragma once

#include "helix/helix.h"

#include <HalideRuntime.h>

#include <cstdint>
#include <vector>

namespace helix::detail {

// The table kernels of one pairing: inv_freq (2, dim / 2) float32 from the host (scaled):
// part 0 the float32 frequencies, or with accurate (AngleMode::Accurate) the high part of
// the double ones and part 1 their low part (one buffer: Mullapudi2016 fails on two).
struct TableKernels {
    Pairing pairing;
    int (*sinusoidal_table)(const void *, halide_buffer_t *inv_freq, bool accurate, int32_t seq_len, int32_t start,
                            bool rows_aligned, halide_buffer_t *freqs);
    int (*sinusoidal_table_xpos)(const void *, halide_buffer_t *inv_freq, bool accurate, int32_t seq_len,
                                 int32_t start, bool rows_aligned, float scale_base, halide_buffer_t *freqs,
                                 halide_buffer_t *scale);
};

// apply_rotary in each table form (generators/rope_algorithm.h's TableForm; in the order of
// cmake/HelixKernels.cmake's HELIX_TABLE_FORMS), nullptr where a set lacks one: q_rows and k_rows are the (n, b) int32 positions of q's and k's rows; scale
// (jj, half, N) may broadcast; conjugate rotates by -angle (the backward pass); attention
// multiplies cos and sin of both (RopeScaling's attention factor); accurate:
// AngleMode::Accurate. rows_aligned: every row of the tensors starts 16-byte aligned (GPU
// kernels then use 16-byte accesses where the strides allow).
struct RotaryForms {
    int (*angles)(const void *, bool rows_aligned, bool conjugate, float attention, halide_buffer_t *q,
                  halide_buffer_t *k, halide_buffer_t *q_rows, halide_buffer_t *k_rows, halide_buffer_t *freqs,
                  halide_buffer_t *scale, halide_buffer_t *q_out, halide_buffer_t *k_out);
    int (*cos_sin)(const void *, bool rows_aligned, bool conjugate, float attention, halide_buffer_t *q,
                   halide_buffer_t *k, halide_buffer_t *q_rows, halide_buffer_t *k_rows, halide_buffer_t *cos,
                   halide_buffer_t *sin, halide_buffer_t *scale, halide_buffer_t *q_out, halide_buffer_t *k_out);
    int (*inv_freq)(const void *, bool rows_aligned, bool conjugate, float attention, halide_buffer_t *q,
                    halide_buffer_t *k, halide_buffer_t *q_rows, halide_buffer_t *k_rows, halide_buffer_t *inv_freq,
                    halide_buffer_t *inv_freq_lo, bool accurate, halide_buffer_t *xpos_log2_zeta, float xpos_scale_base,
                    int32_t xpos_seq_len, halide_buffer_t *scale, halide_buffer_t *q_out, halide_buffer_t *k_out);

    bool has(RotaryTable::Form form) const {
        return form == RotaryTable::Form::Angles ? angles != nullptr
               : form == RotaryTable::Form::CosSin ? cos_sin != nullptr
                                                   : inv_freq != nullptr;
    }
};

// The kernels of one storage type and pairing.
struct TypedKernels {
    DType dtype;
    Pairing pairing;
    // The kernels take the 16-bit float tensors as uint16 buffers of their bits (targets
    // whose Halide backend lacks the type: cmake/HelixKernels.cmake's HELIX_BITS_STORAGE).
    bool bits;
    // rows_aligned as for RotaryForms.
    int (*rotate_half)(const void *, bool rows_aligned, halide_buffer_t *x, halide_buffer_t *out);
    RotaryForms apply_rotary;
    // The decode kernels (CPU sets built with DECODE; all nullptr elsewhere): one serial loop
    // nest with no heap allocation and no argument checks of their own, for small outputs
    // whose rotary part has at most decode_max_pairs pairs, on buffers the runtime has
    // checked as Halide's checks would have (runtime/operations.cpp).
    RotaryForms apply_rotary_decode;
    int decode_max_pairs;
};

// One kernel set (runtime/kernel_set.cpp): every kernel of one schedule and target list.
struct Kernels {
    const char *schedule;
    std::vector<TableKernels> tables;
    std::vector<TypedKernels> typed;
    // Copies of (features, n, h, b) views of 16- and 32-bit elements typed as their bits:
    // the features partial rotary passes through, out of place. CPU sets only (nullptr
    // elsewhere: a device copies them with its own buffer copy).
    int (*copy_16)(const void *, halide_buffer_t *x, halide_buffer_t *out) = nullptr;
    int (*copy_32)(const void *, halide_buffer_t *x, halide_buffer_t *out) = nullptr;

    // The kernels for one pairing (and element type), or nullptr when none were built.
    const TableKernels *find(Pairing pairing) const;
    const TypedKernels *find(DType dtype, Pairing pairing) const;
};

// One table per schedule built (runtime/kernel_set.cpp); the API runs the tuned one,
// whose libraries are multi-target (dispatched on the CPU's ISA at the first call).
const Kernels &kernels_tuned();
const Kernels &kernels_baseline();
const Kernels &kernels_cuda();    // helix_cuda only
const Kernels &kernels_opencl();  // helix_opencl only
inline const Kernels &tuned_kernels() { return kernels_tuned(); }

// The operations of helix.h over a given kernel set.
// (Tables take stores as apply_rotary does, with a plan class of their own; the public
// API passes Auto.)
void sinusoidal_window(const Kernels &kernels, const SinusoidalEmbeddings &emb, int64_t seq_len, int64_t start,
                       const Tensor &freqs, const Tensor &scale, Stores stores = Stores::Auto);
void rotate_half(const Kernels &kernels, const Tensor &x, const Tensor &out, Pairing pairing = Pairing::HalfSplit);
void apply_rotary_pos_emb(const Kernels &kernels, const Tensor &q, const Tensor &k, const Tensor &freqs,
                          const Scale &scale, const Tensor &q_out, const Tensor &k_out,
                          const RotaryOptions &options = {});
void apply_rotary_pos_emb(const Kernels &kernels, const Tensor &q, const Tensor &k, const RotaryTable &table,
                          const Tensor &q_out, const Tensor &k_out, const RotaryOptions &options = {});

struct StorePlan;
enum class PlanClass;
// Stores::Auto's plan for large CPU outputs of class c (streaming.h): calibrated with these
// kernels once per process, or read from the plan file.
StorePlan auto_store_plan(const Kernels &kernels, PlanClass c);
// The calibration itself with these kernels (no process-wide memory), reading and saving
// the plan file `path` ("" for none).
StorePlan calibrate_store_plan(const Kernels &kernels, PlanClass c, const std::string &path);

}  // namespace helix::detail
