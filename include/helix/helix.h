// helix: sinusoidal and rotary positional embeddings (RoPE), with the semantics of Zeta's
// SinusoidalEmbeddings, rotate_half and apply_rotary_pos_emb, on AOT-compiled Halide kernels.
//
// Shapes are written outermost first, as PyTorch writes them: (b, h, n, d) has d contiguous.
// Every function checks its arguments and throws helix::Error naming the argument, what was
// expected and what was given; nothing is written to an output when a check fails.
// This header needs only Halide's runtime headers (HalideBuffer.h, HalideRuntime.h).
#pragma once

#include <HalideBuffer.h>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace helix {

// Every rejected input and every error reported by the Halide runtime.
class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Storage types a Tensor can hold. Kernels compute in float32 and exist for the float types
// listed by kernel_element_types(); the integer types hold positions (Positions).
enum class DType { Float32, Float16, BFloat16, Int32, Int64 };

std::string to_string(DType dtype);

// Where a tensor's memory lives. The kernels run where their inputs are: a build of helix
// runs on the CPU and on the GPU APIs it was built with (helix::helix: CPU only;
// helix::helix_cuda: CPU and CUDA; helix::helix_opencl: CPU and OpenCL). Copies between
// devices are explicit (Tensor::to, Tensor::copy_from).
enum class Device { CPU, CUDA, OpenCL };

std::string to_string(Device device);

// The devices this build of helix supports.
std::vector<Device> supported_devices();

// Whether this build supports the device and a driver with at least one such device is
// present; if not, why (in *reason).
bool device_available(Device device, std::string *reason = nullptr);

// The element types this build has kernels for (tables are always float32).
std::vector<DType> kernel_element_types();

// A strided n-dimensional array on the host, backed by a Halide::Runtime::Buffer.
// Copies are shallow (like torch.Tensor handles): views share memory with their source.
class Tensor {
public:
    Tensor() = default;

    // Owning, contiguous. Shape outermost first: {b, h, n, d}. CPU tensors are
    // zero-filled; device tensors are uninitialised device memory (no host copy).
    explicit Tensor(const std::vector<int64_t> &shape, DType dtype = DType::Float32, Device device = Device::CPU);

    // A view of caller memory, which must outlive the tensor. Strides are in elements,
    // outermost first; empty means contiguous.
    static Tensor wrap(void *data, const std::vector<int64_t> &shape, const std::vector<int64_t> &strides = {},
                       DType dtype = DType::Float32);
    // A view of caller device memory: a CUdeviceptr (CUDA) or cl_mem (OpenCL) handle.
    static Tensor wrap_device(Device device, uint64_t handle, const std::vector<int64_t> &shape,
                              const std::vector<int64_t> &strides = {}, DType dtype = DType::Float32);

    // To and from Halide buffers (dimension 0 of a Halide buffer is the innermost,
    // i.e. the reverse of the shape). Both share memory.
    static Tensor from_halide(const Halide::Runtime::Buffer<> &buffer);
    const Halide::Runtime::Buffer<> &to_halide() const { return buffer_; }

    // Whether the tensor describes an array (rank 0 holds one element, on any device).
    // Inline, like the accessors below: the operations' checks call them often.
    bool defined() const {
        const halide_buffer_t &b = *buffer_.raw_buffer();
        return b.dimensions > 0 || b.host || b.device || b.device_interface;
    }
    int rank() const { return buffer_.dimensions(); }
    // Negative dims count from the end.
    int64_t size(int dim) const { return buffer_.dim(rank() - 1 - checked_dim(dim)).extent(); }
    int64_t stride(int dim) const { return buffer_.dim(rank() - 1 - checked_dim(dim)).stride(); }  // in elements
    std::vector<int64_t> shape() const;
    std::vector<int64_t> strides() const;
    int64_t numel() const {
        if (!defined()) return 0;
        int64_t n = 1;
        for (int i = 0; i < rank(); i++) n *= buffer_.dim(i).extent();
        return n;
    }
    DType dtype() const;
    int element_size() const { return buffer_.type().bytes(); }  // bytes per element
    Device device() const { return buffer_.raw_buffer()->device_interface ? device_interface_owner() : Device::CPU; }
    void *data() const { return buffer_.data(); }  // host memory; nullptr on a device
    bool is_contiguous() const;

    // Views, as in PyTorch.
    Tensor narrow(int dim, int64_t start, int64_t length) const;
    Tensor transpose(int dim0, int dim1) const;
    // A contiguous copy on the same device.
    Tensor contiguous() const;
    // A contiguous copy on another device (or the same).
    Tensor to(Device device) const;
    // Copies src (same shape and dtype, any device, any strides) into this tensor.
    void copy_from(const Tensor &src) const;

    // Element access for float32 CPU tensors (tests, demos); bounds-checked.
    float &at(std::initializer_list<int64_t> index) const;

    // Shape as "(2, 3, 4)" for messages.
    std::string shape_string() const;

private:
    struct Shares {};
    Tensor(Shares, Halide::Runtime::Buffer<> buffer) : buffer_(std::move(buffer)) {}
    int checked_dim(int dim) const {
        const int r = rank();
        if (dim < -r || dim >= r) reject_dim(dim);
        return dim < 0 ? dim + r : dim;
    }
    [[noreturn]] void reject_dim(int dim) const;
    Device device_interface_owner() const;
    Halide::Runtime::Buffer<> buffer_;
};

// Which features form the rotated pairs (SPEC section 2).
//   HalfSplit:   j and j + d/2 (Zeta, GPT-NeoX, HF Llama: rotate_half);
//   Interleaved: 2i and 2i + 1 (GPT-J, Meta's original Llama: rotate_every_two).
enum class Pairing { HalfSplit, Interleaved };

std::string to_string(Pairing pairing);

// How a CPU kernel's outputs reach memory (Auto never streams an output that is its input).
//   Auto:      Ordinary for outputs up to HELIX_STREAM_THRESHOLD bytes (default 4x the L2
//              of the cores); larger ones take this machine's store plan: whichever of
//              ordinary and streaming stores (and streaming's tile shapes) ran an apply_rotary
//              of that element size fastest here, timed once (about 0.5 s, at the first such
//              call) and kept in a plan file (HELIX_PLAN_FILE, default
//              ~/.cache/helix/store-plan; "none" for no file). HELIX_STORES=ordinary or
//              streaming forces one (an unknown value is an Error at the first such call);
//   Ordinary:  plain stores (each output line is first read for ownership; the result
//              stays in cache for whatever reads it next);
//   Streaming: the kernel writes cache-sized tiles of rows to per-thread scratch, which
//              go out with non-temporal stores (x86-64; elsewhere ordinary stores).
// Every choice gives bit-identical results, but float16 on AArch64 without the fp16
// extension (emulated conversions): there some elements may round the other way (both
// within SPEC section 4's one ulp; seen under qemu, cause not isolated). Ignored on GPUs.
enum class Stores { Auto, Ordinary, Streaming };

std::string to_string(Stores stores);

// Where the rows of q or k sit: the table row (the position) of row i of sequence s
// (SPEC section 2). Position tensors are int32 or int64, on any device (they are read on
// the host: every position is checked before anything is written, on every device).
class Positions {
public:
    enum class Kind { Aligned, Start, Offsets, Ids, Varlen };

    // Zeta's: q right-aligned to the table (row i of Lq at N - Lq + i, the KV-cache
    // convention), k from row 0 (its N rows are the table's). Needs a table (N rows).
    Positions() = default;
    // Row i at first + i, in every sequence (a decode step at position p: start(p)).
    static Positions start(int64_t first);
    // Row i of sequence s at offsets[s] + i; offsets (b,) with b the batch size of the
    // tensor (its size(-4), 1 below rank 4): flash-attention's seqlen_offsets.
    static Positions offsets(const Tensor &offsets);
    // Explicit positions: ids (n,) for every sequence, or (b, n) (HF position_ids, vLLM
    // positions); any order, repeats allowed.
    static Positions ids(const Tensor &ids);
    // Packed variable-length batches (flash-attention varlen, TransformerEngine thd): the
    // tensor is (total, h, d) (or (total, d)), sequence s is tokens
    // [cu_seqlens[s], cu_seqlens[s + 1]) and token t of it sits at t - cu_seqlens[s]
    // (+ offsets[s] when given). cu_seqlens (b + 1,) int32, from 0, non-decreasing, ending
    // at total.
    static Positions varlen(const Tensor &cu_seqlens, const Tensor &offsets = {});

    Kind kind() const { return kind_; }
    int64_t first() const { return first_; }
    const Tensor &tensor() const { return tensor_; }    // offsets, ids or cu_seqlens
    const Tensor &offsets() const { return offsets_; }  // varlen's offsets

private:
    Positions(Kind kind, int64_t first, const Tensor &tensor, const Tensor &offsets)
        : kind_(kind), first_(first), tensor_(tensor), offsets_(offsets) {}
    Kind kind_ = Kind::Aligned;
    int64_t first_ = 0;
    Tensor tensor_, offsets_;
};

std::string to_string(Positions::Kind kind);

// The switches of the rotary operations; the defaults are Zeta's.
struct RotaryOptions {
    Pairing pairing = Pairing::HalfSplit;
    // Only the first rotary_dim features of each row rotate (pairs inside them); the rest
    // pass through unchanged (copied out of place, untouched in place). Even, <= d; the
    // tables are then (N, rotary_dim). 0: all d features.
    int64_t rotary_dim = 0;
    Stores stores = Stores::Auto;
    // The positions of q's rows, and of k's unless k_positions is given.
    Positions positions;
    std::optional<Positions> k_positions;
    // Rotate by -angle: the backward pass. For q' = s R(a) q the gradient is
    // dq = s R(-a) dq' (both members of a pair share s); for k' = R(a) k / s it is
    // dk = R(-a) dk' / s. So the backward of a call is the same call on dq', dk' with
    // conjugate set.
    bool conjugate = false;
};

// How a model rescales RoPE's frequencies for long context: HF transformers'
// rope_scaling, with the semantics of its ROPE_INIT_FUNCTIONS in transformers 4.57.6 and
// its parameter names, so a model config's rope_scaling maps field for field. inv_freq
// is the plain 1 / theta^(2i / dim) (float32, as PyTorch forms it); what each type does
// to it is computed once per table in double and rounded once to float32. Some types
// also give an attention factor, which multiplies cos and sin of q and k alike
// (SinusoidalEmbeddings::attention_factor, RotaryTable::with_attention_factor).
struct RopeScaling {
    enum class Type { None, Linear, Dynamic, Yarn, Llama3, LongRope };
    Type type = Type::None;
    double factor = 1.0;                    // linear, dynamic, yarn, llama3, longrope (>= 1)
    int64_t max_position_embeddings = 0;    // dynamic
    int64_t original_max_position_embeddings = 0;  // yarn, llama3, longrope
    double beta_fast = 32.0, beta_slow = 1.0;       // yarn
    std::optional<double> mscale, mscale_all_dim;  // yarn
    std::optional<double> attention_factor;        // yarn, longrope: given, else derived
    bool truncate = true;                          // yarn
    double low_freq_factor = 1.0, high_freq_factor = 4.0;  // llama3
    std::vector<double> short_factor, long_factor;         // longrope (dim / 2 each)

    // "linear": inv_freq / factor.
    static RopeScaling linear(double factor);
    // "dynamic" (NTK): a table of N > max_position_embeddings positions uses the base
    // theta (factor N / max_position_embeddings - (factor - 1))^(dim / (dim - 2)).
    // HF recomputes it when a sequence grows past the longest seen and resets it below
    // max_position_embeddings; helix's table of N rows is always the one for N (to
    // reproduce HF's cache, build the table for the longest length seen).
    static RopeScaling dynamic(double factor, int64_t max_position_embeddings);
    // "yarn": inv_freq / factor blended into inv_freq by a linear ramp over the correction
    // range of beta_fast and beta_slow (rotations within original_max_position_embeddings;
    // truncate rounds it to whole dimensions); attention factor attention_factor, else
    // mscale(factor, mscale) / mscale(factor, mscale_all_dim) when both are set, else
    // 0.1 ln(factor) + 1. Set the optional fields on the result.
    static RopeScaling yarn(double factor, int64_t original_max_position_embeddings);
    // "llama3" (Llama 3.1): wavelengths above original_max_position_embeddings /
    // low_freq_factor divide by factor, below original / high_freq_factor keep theirs, and
    // the band between blends the two smoothly.
    static RopeScaling llama3(double factor, double low_freq_factor, double high_freq_factor,
                              int64_t original_max_position_embeddings);
    // "longrope" (Phi-3): inv_freq / short_factor[i] for tables of at most
    // original_max_position_embeddings positions, inv_freq / long_factor[i] beyond;
    // attention factor attention_factor, else sqrt(1 + ln(factor) / ln(original)) (1 when
    // factor <= 1). factor is max_position_embeddings / original_max_position_embeddings
    // for the Phi-3 configs that give both (HF's rule).
    static RopeScaling longrope(std::vector<double> short_factor, std::vector<double> long_factor, double factor,
                                int64_t original_max_position_embeddings);
};

std::string to_string(RopeScaling::Type type);

// How the angle n * inv_freq is formed (SPEC section 4):
//   Fp32:     the float32 product, rounded once (PyTorch's, HF's and Zeta's value; off by up
//             to 0.06 rad at position 2^20 against float64);
//   Accurate: the position times the frequency in double (an embedding's frequencies as a
//             double-float pair: SinusoidalEmbeddings::inv_freq_f64 to 2^-48; a caller's
//             float32 inv_freq as it is), reduced modulo 2 pi before cos and sin, which are
//             then within float32 rounding of float64's. An angle table then holds the
//             reduced angle, in [-pi, pi] (the same cos and sin).
enum class AngleMode { Fp32, Accurate };

std::string to_string(AngleMode mode);

// freqs (N, dim) and scale: (N, dim) with xPos, else a one-element tensor holding 1.
struct RotaryTables {
    Tensor freqs;
    Tensor scale;
};

// Zeta's SinusoidalEmbeddings, with theta as a parameter (Zeta fixes it at 10000), a
// frequency scaling (RopeScaling) and an angle mode (AngleMode).
//   inv_freq[i] = 1 / theta^(2i / dim)   (float32, as PyTorch evaluates it; then scaled)
//   freqs[n, j] = n * inv_freq[i(j)]
//   scale[n, j] = zeta[i(j)] ^ ((n - N // 2) / scale_base),
//   zeta[i] = (2i + 0.4 dim) / (1.4 dim)
// with i(j) = j mod dim/2 for half-split pairing (cat(f, f)) and j / 2 for interleaved
// (f0 f0 f1 f1 ..., as rotary-embedding-torch lays it out). For partial rotary, dim is
// rotary_dim: the tables are (N, rotary_dim).
class SinusoidalEmbeddings {
public:
    explicit SinusoidalEmbeddings(int64_t dim, std::optional<double> scale_base = std::nullopt, bool use_xpos = false,
                                  double theta = 10000.0, Pairing pairing = Pairing::HalfSplit,
                                  const RopeScaling &scaling = {}, AngleMode angles = AngleMode::Fp32);

    // Tables for N = x.size(-2) positions on x's device; only x's shape is read, as in Zeta.
    RotaryTables forward(const Tensor &x) const;
    RotaryTables forward(int64_t seq_len, Device device = Device::CPU) const;
    // The same into caller tensors (freqs (N, dim); scale (N, dim) with xPos, else one
    // element): allocates nothing.
    void forward(int64_t seq_len, const Tensor &freqs, const Tensor &scale) const;
    // Rows [start, start + freqs.size(0)) of the tables of a seq_len-position sequence:
    // any window of a longer table, for example the newest rows during decoding.
    void window(int64_t seq_len, int64_t start, const Tensor &freqs, const Tensor &scale) const;
    // inv_freq (dim / 2,) float32 on the CPU, the frequencies of a table of seq_len rows
    // (scaled: dynamic and longrope depend on it; 0 = HF's seq_len None): for
    // RotaryTable::inv_freq.
    Tensor inv_freq(int64_t seq_len = 0) const;
    // The same frequencies in double throughout (no float32 step): AngleMode::Accurate's.
    std::vector<double> inv_freq_f64(int64_t seq_len = 0) const;
    // The scaling's attention factor (1 for most types): multiplies cos and sin of q and k.
    double attention_factor() const { return attention_factor_; }

    int64_t dim() const { return dim_; }
    double theta() const { return theta_; }
    bool use_xpos() const { return use_xpos_; }
    std::optional<double> scale_base() const { return scale_base_; }
    Pairing pairing() const { return pairing_; }
    const RopeScaling &scaling() const { return scaling_; }
    AngleMode angle_mode() const { return angles_; }

private:
    int64_t dim_;
    std::optional<double> scale_base_;
    bool use_xpos_;
    double theta_;
    Pairing pairing_;
    RopeScaling scaling_;
    AngleMode angles_;
    double attention_factor_;
};

// The scale argument of apply_rotary_pos_emb: a table (N, dim) (rows or columns may
// broadcast: (1, dim), (N, 1)), a scalar, a one-element tensor, or nothing (= 1).
class Scale {
public:
    Scale() = default;
    Scale(double value) : value_(value) {}
    Scale(const Tensor &tensor) : tensor_(tensor) {}

    const Tensor &tensor() const { return tensor_; }
    double value() const { return value_; }

private:
    Tensor tensor_;
    double value_ = 1.0;
};

// The rotation of a position, in one of the forms models keep it (SPEC section 2), with a
// scale (xPos) multiplying cos and sin of q and dividing those of k, and an attention
// factor (RopeScaling) multiplying both. All float32, on the device of q and k.
class RotaryTable {
public:
    enum class Form { Angles, CosSin, InvFreq };

    // Zeta's angle table freqs (N, rotary_dim), as SinusoidalEmbeddings makes it.
    static RotaryTable angles(const Tensor &freqs, const Scale &scale = {});
    // cos and sin (N, rotary_dim / 2) each (flash-attention): column i serves the pair i
    // (features i and i + rotary_dim / 2 half-split, 2i and 2i + 1 interleaved).
    static RotaryTable cos_sin(const Tensor &cos, const Tensor &sin, const Scale &scale = {});
    // vLLM's and FlashInfer's cos_sin_cache (max_position, rotary_dim): cos in the first
    // half of each row, sin in the second. A view: cos_sin of its two halves.
    static RotaryTable cos_sin_cache(const Tensor &cache, const Scale &scale = {});
    // No table: the angle of position p and pair i is float32(p) * inv_freq[i] in the
    // kernel (the value the angle table holds); inv_freq (rotary_dim / 2,)
    // (SinusoidalEmbeddings::inv_freq, or a model's own). Positions must be given (there
    // is no table to align to) and lie in [0, 2^31); the scale is a number or per feature
    // (1, rotary_dim) (xPos: the overload below).
    // The angle is formed as `angles` says (AngleMode).
    static RotaryTable inv_freq(const Tensor &inv_freq, const Scale &scale = {}, AngleMode angles = AngleMode::Fp32);
    // The same from an embedding, as its table of seq_len rows holds it: its inv_freq for
    // seq_len (Accurate: inv_freq_f64 as float32 high and low parts, first() and second()),
    // its angle mode and attention factor and, with xPos, its scale computed in the kernel
    // (zeta^((p - seq_len // 2) / scale_base); bit for bit the angle form's results with
    // that table in Fp32 mode). Made once, reused per call.
    static RotaryTable inv_freq(const SinusoidalEmbeddings &emb, int64_t seq_len, const Scale &scale = {});

    // The same table with every tensor copied to `device` (where q and k live).
    RotaryTable to(Device device) const;
    // The same table with cos and sin of q and k multiplied by `factor` (the attention
    // factor of a scaled embedding: SinusoidalEmbeddings::attention_factor; a positive
    // float32, rounded once as PyTorch rounds HF's Python float).
    RotaryTable with_attention_factor(double factor) const;

    Form form() const { return form_; }
    const Tensor &first() const { return first_; }    // freqs, cos or inv_freq
    const Tensor &second() const { return second_; }  // sin, or inv_freq's low part (or undefined: 0)
    const Scale &scale() const { return scale_; }
    // inv_freq's xPos: log2 of zeta per frequency as (hi, lo) float32 pairs, (dim / 2, 2),
    // scale_base and the N of the centring (undefined and 0 without xPos).
    const Tensor &xpos_log2_zeta() const { return xpos_log2_zeta_; }
    double xpos_scale_base() const { return xpos_scale_base_; }
    int64_t xpos_seq_len() const { return xpos_seq_len_; }
    double attention_factor() const { return attention_factor_; }
    AngleMode angle_mode() const { return angles_; }  // the inv_freq form's

private:
    RotaryTable(Form form, const Tensor &first, const Tensor &second, const Scale &scale)
        : form_(form), first_(first), second_(second), scale_(scale) {}
    Form form_ = Form::Angles;
    Tensor first_, second_;
    Scale scale_;
    Tensor xpos_log2_zeta_;
    double xpos_scale_base_ = 0;
    int64_t xpos_seq_len_ = 0;
    double attention_factor_ = 1.0;
    AngleMode angles_ = AngleMode::Fp32;
};

std::string to_string(RotaryTable::Form form);

// rotate_half(x) = cat(-x2, x1) on the last dimension (half-split pairing); with
// Pairing::Interleaved, HF GPT-J's rotate_every_two: (x0, x1) -> (-x1, x0) per pair
// (2i, 2i + 1). Rank 1 to 4. out may be exactly x (in place).
Tensor rotate_half(const Tensor &x, Pairing pairing = Pairing::HalfSplit);
void rotate_half(const Tensor &x, const Tensor &out, Pairing pairing = Pairing::HalfSplit);

// Zeta's apply_rotary_pos_emb. q (..., Lq, d) uses the last Lq rows of freqs and scale
// (right-aligned, the KV-cache convention); k (..., N, d) uses all N rows with 1 / scale.
// q and k have rank 2 to 4, one dtype (float32, float16 or bfloat16: the math is float32,
// rounded once to the storage type) and their own leading dimensions. freqs and a scale
// table are (N, rotary_dim) float32. Returns (q', k').
std::pair<Tensor, Tensor> apply_rotary_pos_emb(const Tensor &q, const Tensor &k, const Tensor &freqs,
                                               const Scale &scale = {}, const RotaryOptions &options = {});
// The same into caller tensors of q's and k's shapes. Each output may be exactly its own
// input (in place: same memory, same strides) and must otherwise share no
// element with any input or the other output.
void apply_rotary_pos_emb(const Tensor &q, const Tensor &k, const Tensor &freqs, const Scale &scale,
                          const Tensor &q_out, const Tensor &k_out, const RotaryOptions &options = {});

// apply_rotary_pos_emb with any table form (RotaryTable) and positions (options): q
// (..., Lq, d) and k (..., Lk, d), rank 2 to 4 (varlen positions: (total, h, d) or
// (total, d)); k and k_out may both be undefined (only q rotates). Every position must be a
// row of the table; the outputs are as in apply_rotary_pos_emb. On the CPU, outputs of up
// to 64 KiB (a decode step) run on the calling thread, and once a call of its shape has run
// on the thread, such a call makes no heap allocation: the kernel's buffers come from a
// per-thread arena (tests/decode_test.cpp; a program that installs its own Halide
// allocator loses the arena, not correctness).
std::pair<Tensor, Tensor> apply_rotary_pos_emb(const Tensor &q, const Tensor &k, const RotaryTable &table,
                                               const RotaryOptions &options = {});
void apply_rotary_pos_emb(const Tensor &q, const Tensor &k, const RotaryTable &table, const Tensor &q_out,
                          const Tensor &k_out, const RotaryOptions &options = {});

// Threads used by the kernels (default: one per core). Returns the previous value.
int set_num_threads(int threads);

}  // namespace helix
