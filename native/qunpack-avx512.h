// AVX-512 unpacking of the common quantized types into the lane form of qblocks.h, in registers:
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

/** 32-element block types: block j's 32 values are natural bytes 32j..32j+31. */
template <int BB, __m256i (*Values)(const uint8_t*)>
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
  toLanes(z, u);
}

inline __m256i valuesQ8_0(const uint8_t* b) { return _mm256_xor_si256(load32(b + 2), _mm256_set1_epi8(static_cast<char>(0x80))); }

inline __m256i valuesQ4_0(const uint8_t* b) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2));
  const __m128i m = _mm_set1_epi8(0x0f);
  return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_and_si128(q, m)), _mm_and_si128(_mm_srli_epi16(q, 4), m), 1);
}

/**
 * Superblock sb of a row in registers when its type has a fast path (q4_k, q5_k, q6_k, and whole
 * superblocks of q8_0 and q4_0): true, with o's scales and mins written; false otherwise.
 */
__attribute__((always_inline)) inline bool unpackRegs(DType t, const uint8_t* row, int64_t K, int64_t sb, QWeightBlock* o, __m512i u[4]) {
  switch (t) {
    case DType::Q4_K: regsQ4_K(row + sb * 144, o, u); return true;
    case DType::Q5_K: regsQ5_K(row + sb * 176, o, u); return true;
    case DType::Q6_K: regsQ6_K(row + sb * 210, o, u); return true;
    case DType::Q8_0:
      if ((sb + 1) * QK > K) return false;
      regs32<34, valuesQ8_0>(row, sb, o, u);
      return true;
    case DType::Q4_0:
      if ((sb + 1) * QK > K) return false;
      regs32<18, valuesQ4_0>(row, sb, o, u);
      return true;
    default: return false;
  }
}

}  // namespace avx512q
}  // namespace stepwise

#endif
