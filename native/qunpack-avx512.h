// AVX-512 unpacking of every quantized type into the lane form of qblocks.h, in registers:
// the bytes of one superblock come back as the 4 lane-ordered vectors, the lane scales and mins
// are written to a QWeightBlock. Shared by qunpack.cc (which stores the vectors into the GEMM's
// tile) and qmatmul.cc (whose one-row path multiplies them at once, without the round trip).
// Only the avx512 build includes it.
#pragma once

#include <cstring>

#include "ggml-blocks.h"
#include "qblocks.h"
#include "simd.h"

#if STEPWISE_AVX512

namespace stepwise {
namespace avx512q {

/**
 * The lane order from natural order held in 4 vectors: a 16x4 transpose of 32-bit units (output
 * vector c, lane l = natural unit 4*l + c). Units of lanes 0-7 come from the first two input
 * vectors, of lanes 8-15 from the last two.
 */
inline void toLanes(const __m512i z[4], __m512i out[4]) {
  const __m512i base = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28);
  for (int c = 0; c < 4; c++) {
    const __m512i idx = _mm512_add_epi32(base, _mm512_set1_epi32(c));
    const __m512i lo = _mm512_permutex2var_epi32(z[0], idx, z[1]);
    const __m512i hi = _mm512_permutex2var_epi32(z[2], idx, z[3]);
    out[c] = _mm512_mask_blend_epi32(0xff00, lo, hi);
  }
}

inline void storeLanes(const __m512i u[4], uint8_t* out) {
  for (int c = 0; c < 4; c++) _mm512_storeu_si512(out + 64 * c, u[c]);
}

// The common types with their bytes unpacked in registers and transposed there (a natural-order
// buffer in memory would be written in pieces and read whole, which stalls store forwarding).

/** Two 32-byte halves as one vector. */
inline __m512i join(__m256i lo, __m256i hi) { return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); }

inline __m256i load32(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

/** 16 lanes of factor * v[l / 2] from 8 unsigned bytes (a 32-element sub-block covers 2 lanes). */
inline void storePairs(float* out, uint64_t bytes8, float factor) {
  const __m128i v = _mm_cvtsi64_si128(static_cast<long long>(bytes8));
  const __m512 f = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_unpacklo_epi8(v, v)));
  _mm512_storeu_ps(out, _mm512_mul_ps(_mm512_set1_ps(factor), f));
}

/** q4_k/q5_k's 8 six-bit scales and mins (ggml::q4kScaleMin for all j at once), 8 bytes each. */
inline void q4kScalesMins(const uint8_t* s, uint64_t* sc, uint64_t* m) {
  const uint32_t a0 = ggml::loadU32(s), a1 = ggml::loadU32(s + 4), a2 = ggml::loadU32(s + 8);
  const uint32_t sc47 = (a2 & 0x0f0f0f0fu) | (((a0 >> 6) & 0x03030303u) << 4);
  const uint32_t m47 = ((a2 >> 4) & 0x0f0f0f0fu) | (((a1 >> 6) & 0x03030303u) << 4);
  *sc = (a0 & 0x3f3f3f3fu) | (static_cast<uint64_t>(sc47) << 32);
  *m = (a1 & 0x3f3f3f3fu) | (static_cast<uint64_t>(m47) << 32);
}

inline void kScales(const uint8_t* b, QWeightBlock* o) {
  uint64_t sc, m;
  q4kScalesMins(b + 4, &sc, &m);
  storePairs(o->s, sc, f16ToF32(loadU16(b)));
  storePairs(o->m, m, f16ToF32(loadU16(b + 2)));
}

inline void regsQ4_K(const uint8_t* b, QWeightBlock* o, __m512i u[4]) {
  kScales(b, o);
  const __m512i mask = _mm512_set1_epi8(0x0f);
  __m512i z[4];
  for (int h = 0; h < 2; h++) {
    // 64 bytes = sub-blocks 4h..4h+3: low nibbles of bytes 0-31 are elements 0-31, high 32-63, ...
    const __m512i q = _mm512_loadu_si512(b + 16 + 64 * h);
    const __m512i lo = _mm512_and_si512(q, mask);
    const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), mask);
    z[2 * h] = _mm512_shuffle_i64x2(lo, hi, _MM_SHUFFLE(1, 0, 1, 0));
    z[2 * h + 1] = _mm512_shuffle_i64x2(lo, hi, _MM_SHUFFLE(3, 2, 3, 2));
  }
  toLanes(z, u);
}

inline void regsQ5_K(const uint8_t* b, QWeightBlock* o, __m512i u[4]) {
  kScales(b, o);
  const __m512i mask = _mm512_set1_epi8(0x0f), one = _mm512_set1_epi8(1);
  const __m512i qh = _mm512_broadcast_i64x4(load32(b + 16));
  __m512i z[4];
  for (int g = 0; g < 4; g++) {
    // Elements 64g..64g+31 take bit 2g of qh, 64g+32..64g+63 bit 2g+1.
    const __m256i q = load32(b + 48 + 32 * g);
    const __m512i nib = join(_mm256_and_si256(q, _mm256_set1_epi8(0x0f)), _mm256_and_si256(_mm256_srli_epi16(q, 4), _mm256_set1_epi8(0x0f)));
    const __m512i shift = _mm512_inserti64x4(_mm512_set1_epi16(static_cast<short>(2 * g)), _mm256_set1_epi16(static_cast<short>(2 * g + 1)), 1);
    const __m512i bit = _mm512_and_si512(_mm512_srlv_epi16(qh, shift), one);
    z[g] = _mm512_or_si512(_mm512_and_si512(nib, mask), _mm512_slli_epi16(bit, 4));
  }
  toLanes(z, u);
}

inline void regsQ6_K(const uint8_t* b, QWeightBlock* o, __m512i u[4]) {
  const __m512 sc = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 192))));
  _mm512_storeu_ps(o->s, _mm512_mul_ps(_mm512_set1_ps(f16ToF32(loadU16(b + 208))), sc));
  _mm512_storeu_ps(o->m, _mm512_setzero_ps());
  const __m512i m4 = _mm512_set1_epi8(0x0f), m2 = _mm512_set1_epi8(3);
  __m512i z[4];
  for (int half = 0; half < 2; half++) {
    // 64 ql bytes: elements l (low nibbles of 0-31), l+32 (low of 32-63), l+64 (high of 0-31),
    // l+96 (high of 32-63); qh byte l holds their 5th-6th bits at shifts 0, 2, 4, 6.
    const __m512i ql = _mm512_loadu_si512(b + 64 * half);
    const __m512i qh = _mm512_broadcast_i64x4(load32(b + 128 + 32 * half));
    const __m512i s01 = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    const __m512i s23 = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1);
    const __m512i h01 = _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, s01), m2), 4);
    const __m512i h23 = _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, s23), m2), 4);
    z[2 * half] = _mm512_or_si512(_mm512_and_si512(ql, m4), h01);
    z[2 * half + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4), h23);
  }
  toLanes(z, u);
}

/** The 8 f16 scales of a superblock's 32-element blocks on lanes 2j, 2j+1; no mins. */
inline void blockScales(__m128i halves, QWeightBlock* o) {
  const __m512i pairs = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
  _mm512_storeu_ps(o->s, _mm512_permutexvar_ps(pairs, _mm512_castps256_ps512(_mm256_cvtph_ps(halves))));
  _mm512_storeu_ps(o->m, _mm512_setzero_ps());
}

/**
 * 32-element block types: block j's 32 values are natural bytes 32j..32j+31. Mins: the block's
 * second f16 is its min (q4_1, q5_1: w = d*q + min), stored negated as the lane form's m.
 */
template <int BB, __m256i (*Values)(const uint8_t*), bool Mins = false>
inline void regs32(const uint8_t* row, int64_t sb, QWeightBlock* o, __m512i u[4]) {
  const int64_t first = sb * 8;  // a whole superblock: callers check
  __m512i z[4];
  for (int c = 0; c < 4; c++) {
    const uint8_t* b0 = row + (first + 2 * c) * BB;
    z[c] = join(Values(b0), Values(b0 + BB));
  }
  alignas(16) uint16_t d[8];
  for (int j = 0; j < 8; j++) d[j] = loadU16(row + (first + j) * BB);
  blockScales(_mm_load_si128(reinterpret_cast<const __m128i*>(d)), o);
  if constexpr (Mins) {
    alignas(16) uint16_t m[8];
    for (int j = 0; j < 8; j++) m[j] = loadU16(row + (first + j) * BB + 2);
    const __m512i pairs = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m512 mins = _mm512_permutexvar_ps(pairs, _mm512_castps256_ps512(_mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(m)))));
    _mm512_storeu_ps(o->m, _mm512_xor_ps(mins, _mm512_set1_ps(-0.0f)));  // -min: the sign bit flipped, as scalar negation
  }
  toLanes(z, u);
}

/** 16 bytes of nibbles as 32 values in natural order: the low nibbles (0-15), then the high (16-31). */
inline __m256i nibbles32(const uint8_t* p) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i m = _mm_set1_epi8(0x0f);
  return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_and_si128(q, m)), _mm_and_si128(_mm_srli_epi16(q, 4), m), 1);
}

/** nibbles32 with value j's fifth bit from bit j of the 32-bit qh at `qh` (q5_0, q5_1). */
inline __m256i nibbles32Fifth(const uint8_t* p, const uint8_t* qh) {
  return _mm256_or_si256(nibbles32(p), _mm256_maskz_mov_epi8(static_cast<__mmask32>(ggml::loadU32(qh)), _mm256_set1_epi8(0x10)));
}

/** iq4_nl's 16 values plus 128 (the lane form's unsigned bytes), in both 128-bit halves for a shuffle. */
inline __m256i iq4nlTable() { return _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(ggml::kIq4nlUnsigned.v))); }

inline __m256i valuesQ8_0(const uint8_t* b) { return _mm256_xor_si256(load32(b + 2), _mm256_set1_epi8(static_cast<char>(0x80))); }
inline __m256i valuesQ4_0(const uint8_t* b) { return nibbles32(b + 2); }
inline __m256i valuesQ4_1(const uint8_t* b) { return nibbles32(b + 4); }
inline __m256i valuesQ5_0(const uint8_t* b) { return nibbles32Fifth(b + 6, b + 2); }
inline __m256i valuesQ5_1(const uint8_t* b) { return nibbles32Fifth(b + 8, b + 4); }
inline __m256i valuesIQ4_NL(const uint8_t* b) { return _mm256_shuffle_epi8(iq4nlTable(), nibbles32(b + 2)); }

/** 16 lanes of d * v[l] from 16 signed bytes (q3_k's and iq4_xs's scales). */
inline void storeLaneScales(float* out, const int8_t* v16, float d) {
  const __m512i v = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(v16)));
  _mm512_storeu_ps(out, _mm512_mul_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(v)));
}

/** The 2-bit values of q2_k/q3_k's 64 qs bytes: elements 128n + 32j + l = (qs[32n + l] >> 2j) & 3, as 4 vectors. */
inline void twoBitVectors(const uint8_t* qs, __m512i z[4]) {
  const __m512i m2 = _mm512_set1_epi8(3);
  for (int n = 0; n < 2; n++) {
    const __m512i q = _mm512_broadcast_i64x4(load32(qs + 32 * n));
    // 16-bit shifts: the bits a byte takes from its neighbour are masked off.
    const __m512i s01 = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    const __m512i s23 = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1);
    z[2 * n] = _mm512_and_si512(_mm512_srlv_epi16(q, s01), m2);
    z[2 * n + 1] = _mm512_and_si512(_mm512_srlv_epi16(q, s23), m2);
  }
}

inline void regsQ2_K(const uint8_t* b, QWeightBlock* o, __m512i u[4]) {
  // 16 bytes of scales: lane l's scale in the low nibble, its min in the high one.
  const __m512i sm = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b)));
  _mm512_storeu_ps(o->s, _mm512_mul_ps(_mm512_set1_ps(f16ToF32(loadU16(b + 80))), _mm512_cvtepi32_ps(_mm512_and_si512(sm, _mm512_set1_epi32(0x0f)))));
  _mm512_storeu_ps(o->m, _mm512_mul_ps(_mm512_set1_ps(f16ToF32(loadU16(b + 82))), _mm512_cvtepi32_ps(_mm512_srli_epi32(sm, 4))));
  __m512i z[4];
  twoBitVectors(b + 16, z);
  toLanes(z, u);
}

inline void regsQ3_K(const uint8_t* b, QWeightBlock* o, __m512i u[4]) {
  alignas(16) int8_t sc[16];
  for (int l = 0; l < 16; l++) sc[l] = static_cast<int8_t>(ggml::q3kScale(b, l));
  storeLaneScales(o->s, sc, f16ToF32(loadU16(b + 108)));
  _mm512_storeu_ps(o->m, _mm512_setzero_ps());
  // Value e: its 2 bits plus 4 when bit e >> 5 of hmask byte e & 31 is set (q - 4 + 4, off 4).
  __m512i z[4];
  twoBitVectors(b + 32, z);
  const __m512i hm = _mm512_broadcast_i64x4(load32(b));
  for (int k = 0; k < 4; k++) {
    const __m512i shift = _mm512_inserti64x4(_mm512_set1_epi16(static_cast<short>(2 * k)), _mm256_set1_epi16(static_cast<short>(2 * k + 1)), 1);
    const __m512i bit = _mm512_and_si512(_mm512_srlv_epi16(hm, shift), _mm512_set1_epi8(1));
    z[k] = _mm512_or_si512(z[k], _mm512_slli_epi16(bit, 2));
  }
  toLanes(z, u);
}

inline void regsIQ4_XS(const uint8_t* b, QWeightBlock* o, __m512i u[4]) {
  alignas(16) int8_t ls[16];
  for (int ib = 0; ib < 8; ib++) ls[2 * ib] = ls[2 * ib + 1] = static_cast<int8_t>(ggml::iq4xsScale(b, ib));
  storeLaneScales(o->s, ls, f16ToF32(loadU16(b)));
  _mm512_storeu_ps(o->m, _mm512_setzero_ps());
  const __m256i table = iq4nlTable();
  __m512i z[4];
  for (int c = 0; c < 4; c++)
    z[c] = join(_mm256_shuffle_epi8(table, nibbles32(b + 8 + 32 * c)), _mm256_shuffle_epi8(table, nibbles32(b + 24 + 32 * c)));
  toLanes(z, u);
}

/**
 * Superblock sb of a row in registers: true, with o's scales and mins written; false for a
 * 32-element block type's partial last superblock (K not a multiple of 256), which the scalar
 * unpacker pads with zeros.
 */
__attribute__((always_inline)) inline bool unpackRegs(DType t, const uint8_t* row, int64_t K, int64_t sb, QWeightBlock* o, __m512i u[4]) {
  if (dtypeInfo(t).blockSize == 32 && (sb + 1) * QK > K) return false;
  switch (t) {
    case DType::Q4_K: regsQ4_K(row + sb * 144, o, u); return true;
    case DType::Q5_K: regsQ5_K(row + sb * 176, o, u); return true;
    case DType::Q6_K: regsQ6_K(row + sb * 210, o, u); return true;
    case DType::Q8_0: regs32<34, valuesQ8_0>(row, sb, o, u); return true;
    case DType::Q4_0: regs32<18, valuesQ4_0>(row, sb, o, u); return true;
    case DType::Q4_1: regs32<20, valuesQ4_1, true>(row, sb, o, u); return true;
    case DType::Q5_0: regs32<22, valuesQ5_0>(row, sb, o, u); return true;
    case DType::Q5_1: regs32<24, valuesQ5_1, true>(row, sb, o, u); return true;
    case DType::IQ4_NL: regs32<18, valuesIQ4_NL>(row, sb, o, u); return true;
    case DType::Q2_K: regsQ2_K(row + sb * 84, o, u); return true;
    case DType::Q3_K: regsQ3_K(row + sb * 110, o, u); return true;
    case DType::IQ4_XS: regsIQ4_XS(row + sb * 136, o, u); return true;
    default: return false;
  }
}

}  // namespace avx512q
}  // namespace stepwise

#endif
