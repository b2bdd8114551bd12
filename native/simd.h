// SIMD building blocks shared by the kernels, with one fixed arithmetic order each.
//
// Batch invariance rests on this file: every dot product in the addon keeps 8 partial sums
// ("lanes", lane j holding k = j, j+8, j+16, ...) and folds them with the same tree,
// ((l0+l1)+(l2+l3)) + ((l4+l5)+(l6+l7)), whether one sum or four are folded at once. So a row's
// result is the same bits whichever code path (tile shape, thread, batch size) computed it.
//
// The AVX2 path needs AVX2 + FMA + F16C (any x86-64 since 2013). Without them a portable scalar
// path with the same structure is compiled; its results differ from the AVX2 build's (no fused
// multiply-add) but are just as deterministic. binding.gyp builds one addon per level.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define STEPWISE_AVX2 1
// GCC 12 warns inside its own AVX-512 headers (the _mm512_undefined_* operands of intrinsics such
// as _mm512_cvtps_pd) wherever they are inlined: a false positive. The warning is placed in the
// header, so silencing it while the header is read covers every file that includes this one.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#else
#define STEPWISE_AVX2 0
#endif

// The AVX-512 variant (binding.gyp's stepwise_kernels_avx512): integer dot products with VNNI on
// 512-bit vectors. Everything else in it runs the AVX2 code (recompiled, same arithmetic).
#if STEPWISE_AVX2 && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && \
    defined(__AVX512DQ__) && defined(__AVX512VNNI__)
#define STEPWISE_AVX512 1
#else
#define STEPWISE_AVX512 0
#endif

namespace stepwise {

inline constexpr const char* kSimdName = STEPWISE_AVX512 ? "avx512-vnni" : STEPWISE_AVX2 ? "avx2" : "scalar";

/** Unaligned scalar load: weight bytes come straight from a file and may sit at any offset. */
inline float loadF32(const void* p) {
  float v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline uint16_t loadU16(const void* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

/** IEEE half -> float, exact for every input (subnormals, infinities, NaN). */
inline float f16ToF32(uint16_t h) {
#if STEPWISE_AVX2
  return _cvtsh_ss(h);
#else
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t man = h & 0x3ff;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man == 0) {
    bits = sign;
  } else {
    // Subnormal half: normalise the mantissa.
    exp = 113;
    while ((man & 0x400) == 0) {
      man <<= 1;
      exp--;
    }
    bits = sign | (exp << 23) | ((man & 0x3ff) << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
#endif
}

inline float bf16ToF32(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

/**
 * Asks for bytes [p, p + n) to be brought into the cache ahead of use. Streaming weights at one
 * activation row is bound by memory latency as much as bandwidth: the GEMMs call this for the next
 * tile's rows while they work on the current one.
 */
// Always inlined: GCC dropped calls to an out-of-line function whose only effect is prefetches.
__attribute__((always_inline)) inline void prefetchBytes(const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  for (size_t o = 0; o < n; o += 64) __builtin_prefetch(c + o, 0, 3);
}

/** The fixed lane-folding tree, on 8 partial sums held in memory. */
inline float foldLanes(const float* l) {
  return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
}

/** 16 partial sums folded as lane i + lane i+8, then the 8-lane tree (the AVX-512 kernels' order). */
inline float foldLanes16(const float* l) {
  float t[8];
  for (int i = 0; i < 8; i++) t[i] = l[i] + l[i + 8];
  return foldLanes(t);
}

#if STEPWISE_AVX2

/**
 * Folds four 8-lane accumulators into four sums (out[i] = fold(a_i)) with foldLanes' tree:
 * hadd pairs neighbours (l0+l1, l2+l3), the second hadd adds those pairs, and the last add joins
 * the low and high 128-bit halves. Identical per accumulator to foldLanes.
 */
inline __m128 fold4(__m256 a, __m256 b, __m256 c, __m256 d) {
  const __m256 ab = _mm256_hadd_ps(a, b);
  const __m256 cd = _mm256_hadd_ps(c, d);
  const __m256 abcd = _mm256_hadd_ps(ab, cd);
  return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

inline float fold1(__m256 a) {
  alignas(32) float l[8];
  _mm256_store_ps(l, a);
  return foldLanes(l);
}

/**
 * e^x on 8 lanes: x = n*ln2 + r with |r| <= ln2/2, e^r by a degree-6 polynomial (relative error
 * about 2e-7), scaled by 2^n through the exponent bits. Inputs below -87.3 give 0 (so -inf masks a
 * lane out); inputs above 88.7 give +inf.
 */
inline __m256 exp8(__m256 x) {
  const __m256 hi = _mm256_set1_ps(88.7228391f);
  const __m256 lo = _mm256_set1_ps(-87.3365448f);
  const __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  const __m256 over = _mm256_cmp_ps(x, hi, _CMP_GT_OQ);
  const __m256 xc = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  // ln2 split in a high part exact in float and a low correction (Cody-Waite).
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.0f / 720.0f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  // 2^n, built in two halves so n = 128 (x near the top of the range) stays representable.
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i half = _mm256_srai_epi32(ni, 1);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half, _mm256_set1_epi32(127)), 23));
  const __m256 s2 = _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, half), _mm256_set1_epi32(127)), 23));
  __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
  y = _mm256_blendv_ps(y, _mm256_setzero_ps(), under);
  y = _mm256_blendv_ps(y, _mm256_set1_ps(INFINITY), over);
  // NaN in, NaN out.
  return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

#endif

#if STEPWISE_AVX512
/** Stores 16 outputs of an interleaved GEMM's row group, or its first `rows` at a tensor's end. */
inline void storeRows16(float* out, __m512 v, int rows) {
  if (rows >= 16) _mm512_storeu_ps(out, v);
  else _mm512_mask_storeu_ps(out, static_cast<__mmask16>((1u << rows) - 1), v);
}

/** foldLanes16 on a 512-bit accumulator. */
inline float fold16(__m512 a) { return fold1(_mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1))); }

/**
 * e^x on 16 lanes: exp8's range reduction and polynomial, with 2^n applied by scalef (one
 * rounding). Same limits: below -87.3 gives 0 (so -inf masks a lane out), above 88.7 +inf, NaN
 * stays NaN. Each lane's result depends on that lane alone. Its bits may differ from exp8's.
 */
inline __m512 exp16(__m512 x) {
  const __m512 hi = _mm512_set1_ps(88.7228391f);
  const __m512 lo = _mm512_set1_ps(-87.3365448f);
  const __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
  const __mmask16 over = _mm512_cmp_ps_mask(x, hi, _CMP_GT_OQ);
  const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
  const __m512 xc = _mm512_min_ps(_mm512_max_ps(x, lo), hi);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.0f / 720.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  __m512 y = _mm512_scalef_ps(p, n);
  y = _mm512_mask_mov_ps(y, under, _mm512_setzero_ps());
  y = _mm512_mask_mov_ps(y, over, _mm512_set1_ps(INFINITY));
  return _mm512_mask_mov_ps(y, nan, x);
}
#endif

}  // namespace stepwise
