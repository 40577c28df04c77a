/* helix's C ABI: the operations of helix.h over DLPack's DLTensor descriptors, for C
 * programs and for stacks that speak DLPack (llama.cpp-style engines, other languages'
 * FFIs). No C++ type crosses this boundary; every function returns a helix_status and, on
 * failure, leaves a message for the calling thread in helix_last_error(). Semantics, checks
 * and messages are those of the C++ API (include/helix/helix.h): nothing is written to an
 * output when a check fails.
 *
 * Tensors: DLTensor with shape outermost first (PyTorch's order), strides in elements (NULL:
 * contiguous), byte_offset honoured; dtypes float32, float16, bfloat16 (data), int32,
 * int64 (positions); device kDLCPU (and kDLCUDA with a CUDA build of helix: link
 * helix::helix_cuda). Needs DLPack's header (Debian: libdlpack-dev). */
#ifndef HELIX_HELIX_C_H
#define HELIX_HELIX_C_H

#include <dlpack/dlpack.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The enumerations below are ints: C callers may pass any value, which helix checks. (In
 * C++ they get int as their fixed underlying type, so that reading an unlisted value is
 * defined behaviour.) */
#ifdef __cplusplus
#define HELIX_ENUM(tag) enum tag : int
#else
#define HELIX_ENUM(tag) enum tag
#endif

typedef enum {
    HELIX_OK = 0,
    HELIX_ERROR_INVALID_ARGUMENT = 1, /* a check of SPEC section 3 failed */
    HELIX_ERROR_RUNTIME = 2,          /* the Halide runtime or a device reported an error */
    HELIX_ERROR_OUT_OF_MEMORY = 3,
    HELIX_ERROR_INTERNAL = 4          /* anything else (a bug: please report it) */
} helix_status;

/* The message of the calling thread's last failed call ("" if none); valid until its next
 * call into helix. */
const char *helix_last_error(void);

/* helix's version, "major.minor.patch". */
const char *helix_version(void);

typedef HELIX_ENUM(helix_pairing_e) { HELIX_PAIRING_HALF_SPLIT = 0, HELIX_PAIRING_INTERLEAVED = 1 } helix_pairing;
typedef HELIX_ENUM(helix_angle_mode_e) { HELIX_ANGLES_FP32 = 0, HELIX_ANGLES_ACCURATE = 1 } helix_angle_mode;

/* HF transformers' rope_scaling (helix::RopeScaling). Initialise with
 * helix_rope_scaling_init, then set the fields of the type. */
typedef HELIX_ENUM(helix_scaling_type_e) {
    HELIX_SCALING_NONE = 0,
    HELIX_SCALING_LINEAR = 1,
    HELIX_SCALING_DYNAMIC = 2,
    HELIX_SCALING_YARN = 3,
    HELIX_SCALING_LLAMA3 = 4,
    HELIX_SCALING_LONGROPE = 5
} helix_scaling_type;

typedef struct {
    helix_scaling_type type;
    double factor;
    int64_t max_position_embeddings;
    int64_t original_max_position_embeddings;
    double beta_fast, beta_slow;
    double mscale, mscale_all_dim, attention_factor; /* NaN: not given */
    int truncate;
    double low_freq_factor, high_freq_factor;
    const double *short_factor, *long_factor; /* longrope: factor_count (dim / 2) each */
    int64_t factor_count;
} helix_rope_scaling;

/* No scaling, and HF's defaults for every field. */
void helix_rope_scaling_init(helix_rope_scaling *scaling);

/* Zeta's SinusoidalEmbeddings (helix::SinusoidalEmbeddings). */
typedef struct helix_embeddings helix_embeddings;

/* scale_base is read only with use_xpos; scaling may be NULL (none). */
helix_status helix_embeddings_create(int64_t dim, double scale_base, int use_xpos, double theta, helix_pairing pairing,
                                     const helix_rope_scaling *scaling, helix_angle_mode angles,
                                     helix_embeddings **embeddings);
void helix_embeddings_destroy(helix_embeddings *embeddings);
/* freqs (seq_len, dim) float32; scale (seq_len, dim) with xPos, else one element. */
helix_status helix_embeddings_forward(const helix_embeddings *embeddings, int64_t seq_len, const DLTensor *freqs,
                                      const DLTensor *scale);
/* Rows [start, start + freqs rows) of the tables of a seq_len-row sequence. */
helix_status helix_embeddings_window(const helix_embeddings *embeddings, int64_t seq_len, int64_t start,
                                     const DLTensor *freqs, const DLTensor *scale);
/* inv_freq (dim / 2,) float32 on the CPU, for a table of seq_len rows (0: HF's None). */
helix_status helix_embeddings_inv_freq(const helix_embeddings *embeddings, int64_t seq_len, const DLTensor *inv_freq);
double helix_embeddings_attention_factor(const helix_embeddings *embeddings);

/* The rotation (helix::RotaryTable). */
typedef HELIX_ENUM(helix_table_form_e) {
    HELIX_TABLE_ANGLES = 0,        /* first: freqs (N, rotary_dim) */
    HELIX_TABLE_COS_SIN = 1,       /* first: cos, second: sin, (N, rotary_dim / 2) each */
    HELIX_TABLE_COS_SIN_CACHE = 2, /* first: (max_position, rotary_dim), cos then sin */
    HELIX_TABLE_INV_FREQ = 3,      /* first: inv_freq (rotary_dim / 2,): no table */
    HELIX_TABLE_EMBEDDING = 4      /* embedding's no-table form for seq_len rows (xPos too) */
} helix_table_form;

typedef struct {
    helix_table_form form;
    const DLTensor *first, *second;
    const DLTensor *scale;  /* a scale table, or NULL: scale_value */
    double scale_value;     /* 1 without xPos */
    double attention_factor; /* multiplies cos and sin of q and k; 1: none */
    helix_angle_mode angles; /* HELIX_TABLE_INV_FREQ */
    const helix_embeddings *embedding; /* HELIX_TABLE_EMBEDDING */
    int64_t seq_len;                   /* HELIX_TABLE_EMBEDDING */
} helix_rotary_table;

/* A table of `form` with everything else at its default (scale 1, attention factor 1). */
void helix_rotary_table_init(helix_rotary_table *table, helix_table_form form);

/* Where the rows of q or k sit (helix::Positions). */
typedef HELIX_ENUM(helix_positions_kind_e) {
    HELIX_POSITIONS_ALIGNED = 0, /* Zeta's: q on the table's last rows, k from row 0 */
    HELIX_POSITIONS_START = 1,   /* row i at start + i */
    HELIX_POSITIONS_OFFSETS = 2, /* tensor: offsets (b,) */
    HELIX_POSITIONS_IDS = 3,     /* tensor: ids (n,) or (b, n) */
    HELIX_POSITIONS_VARLEN = 4   /* tensor: cu_seqlens (b + 1,); offsets: (b,) or NULL */
} helix_positions_kind;

typedef struct {
    helix_positions_kind kind;
    int64_t start;
    const DLTensor *tensor;
    const DLTensor *offsets;
} helix_positions;

typedef struct {
    helix_pairing pairing;
    int64_t rotary_dim; /* 0: all of d */
    int conjugate;      /* rotate by -angle: the backward pass */
    helix_positions positions;
    const helix_positions *k_positions; /* NULL: k uses positions */
} helix_rotary_options;

/* Zeta's defaults: half-split, all of d, aligned positions, forward. */
void helix_rotary_options_init(helix_rotary_options *options);

/* rotate_half: out may be exactly x (in place). */
helix_status helix_rotate_half(const DLTensor *x, const DLTensor *out, helix_pairing pairing);

/* apply_rotary_pos_emb into q_out and k_out (each may be exactly its input); k and k_out
 * may both be NULL (only q rotates); options may be NULL (helix_rotary_options_init's). */
helix_status helix_apply_rotary_pos_emb(const DLTensor *q, const DLTensor *k, const helix_rotary_table *table,
                                        const DLTensor *q_out, const DLTensor *k_out,
                                        const helix_rotary_options *options);

#ifdef __cplusplus
}
#endif

#endif /* HELIX_HELIX_C_H */
