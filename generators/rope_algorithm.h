// The mathematics of helix, stated once. Every generator builds its Funcs from these
// helpers; schedules live apart (schedules.h) and never change what is computed.
//
// Layout convention inside the generators: a feature row of width d = 2H is viewed as
// (jj, half) with jj in [0, H) and half in {0, 1}, and the partner of (jj, half) is
// (jj, 1 - half), so the rotation needs no modulo and no out-of-range indices, and
// vectorizes along jj. The pairing (SPEC section 2) is only which view of the caller's
// memory that is; the runtime makes it without copying:
//   half-split  (Zeta, NeoX, Llama): feature j = jj + half * H  (jj stride 1, half stride H);
//   interleaved (GPT-J, Meta):       feature j = 2 jj + half    (jj stride 2, half stride 1).
#pragma once

#include "Halide.h"

#include <map>
#include <string>

namespace helix::gen {

enum class Pairing { HalfSplit, Interleaved };

// Where apply_rotary takes the angle of a position from (the runtime's RotaryTable):
//   angles   - Zeta's table of angles (N, rotary_dim), cos and sin evaluated in the kernel;
//   cos_sin  - cos and sin tables (N, rotary_dim / 2) each (flash-attention; vLLM's
//              cos_sin_cache is a view of two such);
//   inv_freq - no table: angle = position * inv_freq[i] (float32, as the angle table
//              holds it), so a decode step reads no table at all.
enum class TableForm { Angles, CosSin, InvFreq };

inline const std::map<std::string, TableForm> &table_form_names() {
    static const std::map<std::string, TableForm> names{
        {"angles", TableForm::Angles}, {"cos_sin", TableForm::CosSin}, {"inv_freq", TableForm::InvFreq}};
    return names;
}

inline const std::map<std::string, Pairing> &pairing_names() {
    static const std::map<std::string, Pairing> names{{"half_split", Pairing::HalfSplit},
                                                      {"interleaved", Pairing::Interleaved}};
    return names;
}

using Halide::cast;
using Halide::Expr;
using Halide::Float;
using Halide::Int;
using Halide::select;
using Halide::Tuple;

inline Expr f64(double v) { return Halide::Internal::make_const(Float(64), v); }

// freqs[n, jj]: the float32 product position * inv_freq, rounded once, as PyTorch forms it.
inline Expr angle(Expr position, Expr inv_freq) { return Halide::strict_float(cast<float>(position) * inv_freq); }

// The product in double with the frequency as a double-float pair (AngleMode::Accurate):
// hi + lo is exact in double (the frequency to 2^-48), the product rounded once (2^-53).
inline Expr exact_angle(Expr position, Expr inv_freq_hi, Expr inv_freq_lo) {
    return Halide::strict_float(cast<double>(position) * (cast<double>(inv_freq_hi) + cast<double>(inv_freq_lo)));
}

// select(flag, a, b) for a scalar bool flag, as a blend of the bits of a and b: LLVM's
// RISC-V vector backend crashes on a select between vectors on a scalar condition.
inline Expr blend(Expr flag, Expr a, Expr b) {
    const Halide::Type bits = Halide::UInt(a.type().bits());
    Expr mask = Halide::Internal::make_zero(bits) - cast(bits, flag);  // all ones or zero
    return Halide::reinterpret(a.type(), (Halide::reinterpret(bits, a) & mask) | (Halide::reinterpret(bits, b) & ~mask));
}

// The xPos base per frequency, zeta[jj] = (2 jj + 0.4 dim) / (1.4 dim), in float32 with the
// constants rounded from double as PyTorch rounds its Python-float scalars.
inline Expr xpos_zeta(Expr jj, Expr dim) {
    Expr d = cast<double>(dim);
    return Halide::strict_float((cast<float>(2 * jj) + cast<float>(f64(0.4) * d)) / cast<float>(f64(1.4) * d));
}

// xPos power of table row t: (t - N // 2) / scale_base, in float32 (Zeta's formula).
inline Expr xpos_power(Expr t, Expr seq_len, Expr scale_base) {
    return Halide::strict_float((cast<float>(t) - cast<float>(seq_len / 2)) / scale_base);
}

// 2^x of a double x, as a float32 within 2 ulp, vectorizable (Halide's pow and exp call
// libm once per lane): x = k + f with k = round(x) and |f| <= 1/2 (exact in double); 2^f =
// e^(f ln 2) by its degree-7 Taylor polynomial in float32 (truncation below 6e-9, the
// evaluation and f's rounding to float32 within about 1.5 ulp); then scaled by 2^k in two
// exact power-of-two steps, so that a subnormal result is rounded once and a large one
// overflows to inf. x is clamped to +-200, beyond which the result is 0 or inf anyway.
inline Expr exp2_to_f32(Expr x) {
    x = Halide::clamp(x, f64(-200.0), f64(200.0));
    Expr k = Halide::round(x);
    Expr y = cast<float>(x - k) * 0.693147180559945309f;  // f ln 2, |y| <= 0.347
    Expr p = 1.0f / 5040.0f;
    for (float c : {1.0f / 720.0f, 1.0f / 120.0f, 1.0f / 24.0f, 1.0f / 6.0f, 0.5f, 1.0f, 1.0f}) p = p * y + c;
    // k as an integer through int64, as a double converts everywhere (RISC-V included).
    Expr ki = cast<int32_t>(cast<int64_t>(k));
    Expr k1 = ki / 2, k2 = ki - k1;  // each in [-100, 100]: 2^k1 and 2^k2 are normal floats
    auto pow2 = [](Expr e) { return Halide::reinterpret(Float(32), (e + 127) << 23); };
    return p * pow2(k1) * pow2(k2);
}

// zeta^power to within 4 float32 ulp (SPEC section 4; about 2 here): the product power *
// log2(zeta) is formed in double, since float32 alone loses up to ~80 ulp at long
// positions; 2^x then needs float32 only (exp2_to_f32). strict_float: the table kernel and
// the no-table apply kernel evaluate it alike, bit for bit, whatever else their
// expressions let LLVM fuse or reorder.
inline Expr xpos_scale(Expr log2_zeta_f64, Expr power) {
    return Halide::strict_float(exp2_to_f32(cast<double>(power) * log2_zeta_f64));
}

inline Expr log2_f64(Expr x) { return Halide::log(cast<double>(x)) * f64(1.4426950408889634074); }

// A double angle reduced modulo 2 pi, into [-pi, pi]: a - k 2 pi with k = round(a / 2 pi),
// 1 / 2 pi split in two float32 parts and 2 pi in three (cos_sin's splits of 2 / pi and
// pi / 2, scaled by 4: exact), so that k * part 1 is exact for |k| < 2^32.
inline Expr reduced_angle(Expr a) {
    auto c = [](float v) { return cast<double>(Expr(v)); };
    Expr k = Halide::strict_float(Halide::round(a * c(0x1.45f306p-3f) + a * c(0x1.b93910p-28f)));
    return Halide::strict_float(a - k * c(0x1.921fb0p+2f) - k * c(0x1.5110b4p-20f) - k * c(0x1.84698ap-46f));
}

// The largest |angle| (rad) whose cos and sin are within float32 rounding of float64:
// the quadrant count k then has at most 32 bits, so k * kHalfPi1 (21 significant bits) is
// exact in double. Beyond it the results stay in [-1, 1] but are not accurate.
constexpr double kMaxAccurateAngle = 4294967296.0;  // 2^32

// (cos a, sin a) of a float32 (or double) angle, vectorizable, within float32 rounding of float64 for
// |a| <= kMaxAccurateAngle. In double: the quadrant k = round(a 2/pi) with 2/pi split in two
// float32 parts (a * part 1 is exact), then r = a - k pi/2 with pi/2 split in three
// (Cody-Waite: k * part 1 exact, what is left of pi/2 is 1e-22). The polynomials run in
// float32 on [-pi/4, pi/4] (Cephes sinf/cosf coefficients, < 1e-7 error). Every constant is
// a float32 value: Halide 21's OpenCL C backend prints double constants through float
// (float_from_bits), and strict_float keeps the split products apart (folded together
// they would be rounded back to one such constant).
inline Tuple cos_sin(Expr angle) {
    auto c = [](float v) { return cast<double>(Expr(v)); };
    Expr a = cast<double>(angle);
    Expr k = Halide::strict_float(Halide::round(a * c(0x1.45f306p-1f) + a * c(0x1.b93910p-26f)));
    Expr r = Halide::strict_float(a - k * c(0x1.921fb0p+0f) - k * c(0x1.5110b4p-22f) - k * c(0x1.84698ap-48f));
    // Near a tie k may round the other way (|r| up to pi/4 + 1e-6). Past kMaxAccurateAngle
    // r can leave [-pi/4, pi/4] by far, where the polynomials grow without bound: clamped
    // to pi/4 + 2^-10, the results are never larger than 1 (but not accurate there).
    Expr rf = Halide::clamp(cast<float>(r), -0.7863748f, 0.7863748f);
    // k mod 4 as a float (0, 1, 2 or 3, exact): no float -> int conversion, whose
    // truncating RVV forms (vfcvt.rtz) qemu 7.2 cannot emulate.
    Expr quadrant = cast<float>(k - c(4.0f) * Halide::floor(k * c(0.25f)));
    // strict_float: LLVM would otherwise fuse the polynomials' multiply-adds differently
    // with the code around them (a schedule's full vectors and masked tails differ), and
    // every form and schedule must give the same bits.
    Expr z = Halide::strict_float(rf * rf);
    Expr sin_r = Halide::strict_float(((-1.9515295891e-4f * z + 8.3321608736e-3f) * z - 1.6666654611e-1f) * z * rf + rf);
    Expr cos_r = Halide::strict_float(
        ((2.443315711809948e-5f * z - 1.388731625493765e-3f) * z + 4.166664568298827e-2f) * z * z - 0.5f * z + 1.0f);
    // a = k pi/2 + r: rotate (cos r, sin r) by the quadrant.
    Expr cs = select(quadrant == 0.0f, cos_r, quadrant == 1.0f, -sin_r, quadrant == 2.0f, -cos_r, sin_r);
    Expr sn = select(quadrant == 0.0f, sin_r, quadrant == 1.0f, cos_r, quadrant == 2.0f, -sin_r, -cos_r);
    return {cs, sn};
}

// 16-bit float storage held as its bits (UInt(16) buffers), for targets whose backend
// cannot take the type itself (Halide 21: both on CUDA, both on OpenCL without
// cl_khr_fp16). Exact decoding; encoding rounds to nearest even, as a native conversion
// does (NaN stays NaN, quiet; overflow gives inf). Integer operations and one float
// multiply by a power of two, so no denormal float32 value is ever formed (GPUs may flush
// them).
inline Expr u32(uint32_t v) { return Halide::Internal::make_const(Halide::UInt(32), v); }

inline Expr bits_to_float(Expr bits, Halide::Type type) {
    using Halide::reinterpret;
    Expr u = cast<uint32_t>(bits);
    if (type.is_bfloat()) return reinterpret(Float(32), u << 16);
    Expr sign = (u & u32(0x8000)) << 16, exponent = (u >> 10) & u32(0x1f), mantissa = u & u32(0x3ff);
    Expr normal = ((exponent + u32(112)) << 23) | (mantissa << 13);
    Expr subnormal = reinterpret(Halide::UInt(32), cast<float>(mantissa) * (1.0f / 16777216.0f));  // m 2^-24
    Expr special = u32(0x7f800000) | (mantissa << 13);                                            // inf, NaN
    return reinterpret(Float(32), sign | select(exponent == u32(0), subnormal, exponent == u32(31), special, normal));
}

inline Expr float_to_bits(Expr value, Halide::Type type) {
    using Halide::reinterpret;
    Expr b = reinterpret(Halide::UInt(32), value);
    Expr magnitude = b & u32(0x7fffffff);
    Expr nan = magnitude > u32(0x7f800000);
    if (type.is_bfloat()) {
        Expr rounded = (b + u32(0x7fff) + ((b >> 16) & u32(1))) >> 16;
        return cast<uint16_t>(select(nan, (b >> 16) | u32(0x40), rounded));
    }
    Expr sign = (b >> 16) & u32(0x8000);
    // Normal halves: rebias the exponent (127 -> 15) and round the 13 dropped bits; a carry
    // moves into the exponent as it should. From 65520 up everything rounds to inf.
    Expr rebiased = magnitude - u32(0x38000000);
    Expr normal = (rebiased + u32(0xfff) + ((rebiased >> 13) & u32(1))) >> 13;
    // Below 2^-14: m 2^-24 with m = |value| 2^24 rounded to nearest even (exact scaling).
    Expr subnormal = cast<uint32_t>(Halide::round(reinterpret(Float(32), magnitude) * 16777216.0f));
    Expr h = select(nan, u32(0x7e00), magnitude >= u32(0x477ff000), u32(0x7c00), magnitude >= u32(0x38800000), normal,
                    subnormal);
    return cast<uint16_t>(sign | h);
}

// The rotation of one pair (x0, x1) of features (jj, 0) and (jj, 1), stated once. Both
// members are computed from one load of each: an output may then be its own input (in
// place), since every value stored depends on both loads.
// rotate_half: (x0, x1) -> (-x1, x0), exact.
inline Tuple rotate_half_pair(Expr x0, Expr x1) { return {-x1, x0}; }

// x * cos + rotate_half(x) * sin, per member: (c0, s0) are the coefficients of feature
// (jj, 0), (c1, s1) those of (jj, 1) (a table may differ between the halves). Strict: each
// product and the sum rounded, never fused, so every schedule and specialization (a decode
// kernel, a streamed tile, a vector tail) gives the same bits; LLVM otherwise fuses one of
// the products or the other depending on the code around them.
inline Tuple rotate_pair(Expr x0, Expr x1, Expr c0, Expr s0, Expr c1, Expr s1) {
    Tuple r = rotate_half_pair(x0, x1);
    return {strict_float(x0 * c0 + r[0] * s0), strict_float(x1 * c1 + r[1] * s1)};
}

}  // namespace helix::gen
