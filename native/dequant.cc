// Dequantization of row spans into floats, one ggml block at a time. Both the AVX2 and the scalar
// versions compute every element with the same float operations in the same order ((d*sc)*q - m
// and so on), so they agree bit for bit with each other.
#include <cstring>

#include "dtypes.h"
#include "ggml-blocks.h"
#include "simd.h"

namespace stepwise {
namespace {

using namespace ggml;

void spanF16(const uint8_t* row, int64_t k0, int64_t n, float* out) {
  const uint8_t* p = row + 2 * k0;
  int64_t i = 0;
#if STEPWISE_AVX2
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * i))));
  }
#endif
  for (; i < n; i++) out[i] = f16ToF32(loadU16(p + 2 * i));
}

void spanBF16(const uint8_t* row, int64_t k0, int64_t n, float* out) {
  const uint8_t* p = row + 2 * k0;
  int64_t i = 0;
#if STEPWISE_AVX2
  for (; i + 8 <= n; i += 8) {
    const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * i)));
    _mm256_storeu_ps(out + i, _mm256_castsi256_ps(_mm256_slli_epi32(h, 16)));
  }
#endif
  for (; i < n; i++) out[i] = bf16ToF32(loadU16(p + 2 * i));
}

void blockQ8_0(const uint8_t* b, float* y) {
  const float d = f16ToF32(loadU16(b));
  const int8_t* q = reinterpret_cast<const int8_t*>(b + 2);
#if STEPWISE_AVX2
  const __m256 dv = _mm256_set1_ps(d);
  for (int j = 0; j < 32; j += 8) {
    const __m256i qi = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + j)));
    _mm256_storeu_ps(y + j, _mm256_mul_ps(dv, _mm256_cvtepi32_ps(qi)));
  }
#else
  for (int j = 0; j < 32; j++) y[j] = d * static_cast<float>(q[j]);
#endif
}

void blockQ4_0(const uint8_t* b, float* y) {
  const float d = f16ToF32(loadU16(b));
  const uint8_t* q = b + 2;
#if STEPWISE_AVX2
  const __m256 dv = _mm256_set1_ps(d);
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
  const __m128i mask = _mm_set1_epi8(0x0f);
  const __m128i lo = _mm_and_si128(bytes, mask);
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);
  const __m256i eight = _mm256_set1_epi32(8);
  const __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
  for (int j = 0; j < 4; j++) {
    const __m256i qi = _mm256_sub_epi32(_mm256_cvtepu8_epi32(parts[j]), eight);
    _mm256_storeu_ps(y + 8 * j, _mm256_mul_ps(_mm256_cvtepi32_ps(qi), dv));
  }
#else
  for (int j = 0; j < 16; j++) {
    y[j] = static_cast<float>((q[j] & 0x0f) - 8) * d;
    y[j + 16] = static_cast<float>((q[j] >> 4) - 8) * d;
  }
#endif
}

void blockQ4_K(const uint8_t* b, float* y) {
  const float d = f16ToF32(loadU16(b));
  const float dmin = f16ToF32(loadU16(b + 2));
  const uint8_t* scales = b + 4;
  const uint8_t* q = b + 16;
  for (int j = 0; j < 4; j++) {
    int sc1, m1, sc2, m2;
    q4kScaleMin(scales, 2 * j, &sc1, &m1);
    q4kScaleMin(scales, 2 * j + 1, &sc2, &m2);
    const float d1 = d * static_cast<float>(sc1), min1 = dmin * static_cast<float>(m1);
    const float d2 = d * static_cast<float>(sc2), min2 = dmin * static_cast<float>(m2);
    const uint8_t* qj = q + 32 * j;
    float* yj = y + 64 * j;
#if STEPWISE_AVX2
    const __m256 d1v = _mm256_set1_ps(d1), m1v = _mm256_set1_ps(min1);
    const __m256 d2v = _mm256_set1_ps(d2), m2v = _mm256_set1_ps(min2);
    const __m128i mask = _mm_set1_epi8(0x0f);
    for (int h = 0; h < 32; h += 16) {
      const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qj + h));
      const __m128i lo = _mm_and_si128(bytes, mask);
      const __m128i hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);
      const __m256 l0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo));
      const __m256 l1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)));
      const __m256 h0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi));
      const __m256 h1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)));
      _mm256_storeu_ps(yj + h, _mm256_sub_ps(_mm256_mul_ps(d1v, l0), m1v));
      _mm256_storeu_ps(yj + h + 8, _mm256_sub_ps(_mm256_mul_ps(d1v, l1), m1v));
      _mm256_storeu_ps(yj + 32 + h, _mm256_sub_ps(_mm256_mul_ps(d2v, h0), m2v));
      _mm256_storeu_ps(yj + 32 + h + 8, _mm256_sub_ps(_mm256_mul_ps(d2v, h1), m2v));
    }
#else
    for (int l = 0; l < 32; l++) {
      yj[l] = d1 * static_cast<float>(qj[l] & 0x0f) - min1;
      yj[l + 32] = d2 * static_cast<float>(qj[l] >> 4) - min2;
    }
#endif
  }
}

void blockQ6_K(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = f16ToF32(loadU16(b + 208));
  for (int half = 0; half < 2; half++) {
    // Each 128-element half: element l (0..31) of four 32-element quarters shares ql/qh bytes.
#if STEPWISE_AVX2
    const __m256i m4 = _mm256_set1_epi32(0x0f), m2 = _mm256_set1_epi32(3), off = _mm256_set1_epi32(32);
    for (int l = 0; l < 32; l += 8) {
      const int is = l / 16;
      const __m256i a = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(ql + l)));
      const __m256i c = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(ql + l + 32)));
      const __m256i h = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(qh + l)));
      const __m256i q1 = _mm256_sub_epi32(
          _mm256_or_si256(_mm256_and_si256(a, m4), _mm256_slli_epi32(_mm256_and_si256(h, m2), 4)), off);
      const __m256i q2 = _mm256_sub_epi32(
          _mm256_or_si256(_mm256_and_si256(c, m4), _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, 2), m2), 4)), off);
      const __m256i q3 = _mm256_sub_epi32(
          _mm256_or_si256(_mm256_srli_epi32(a, 4), _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, 4), m2), 4)), off);
      const __m256i q4 = _mm256_sub_epi32(
          _mm256_or_si256(_mm256_srli_epi32(c, 4), _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h, 6), m2), 4)), off);
      _mm256_storeu_ps(y + l, _mm256_mul_ps(_mm256_set1_ps(d * static_cast<float>(sc[is])), _mm256_cvtepi32_ps(q1)));
      _mm256_storeu_ps(y + l + 32, _mm256_mul_ps(_mm256_set1_ps(d * static_cast<float>(sc[is + 2])), _mm256_cvtepi32_ps(q2)));
      _mm256_storeu_ps(y + l + 64, _mm256_mul_ps(_mm256_set1_ps(d * static_cast<float>(sc[is + 4])), _mm256_cvtepi32_ps(q3)));
      _mm256_storeu_ps(y + l + 96, _mm256_mul_ps(_mm256_set1_ps(d * static_cast<float>(sc[is + 6])), _mm256_cvtepi32_ps(q4)));
    }
#else
    for (int l = 0; l < 32; l++) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = (d * static_cast<float>(sc[is])) * static_cast<float>(q1);
      y[l + 32] = (d * static_cast<float>(sc[is + 2])) * static_cast<float>(q2);
      y[l + 64] = (d * static_cast<float>(sc[is + 4])) * static_cast<float>(q3);
      y[l + 96] = (d * static_cast<float>(sc[is + 6])) * static_cast<float>(q4);
    }
#endif
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

// The further types (layouts and the order of operations: src/model/quant-codecs.ts). Scalar code:
// every operation but the last is exact, so these match the TypeScript decoders bit for bit.

void blockQ4_1(const uint8_t* b, float* y) {
  const float d = f16ToF32(loadU16(b)), m = f16ToF32(loadU16(b + 2));
  for (int j = 0; j < 32; j++) y[j] = d * static_cast<float>(nibble32(b + 4, 0, j)) + m;
}

void blockQ5_0(const uint8_t* b, float* y) {
  const float d = f16ToF32(loadU16(b));
  const uint32_t qh = loadU32(b + 2);
  for (int j = 0; j < 32; j++) y[j] = d * static_cast<float>(nibble32(b + 6, qh, j) - 16);
}

void blockQ5_1(const uint8_t* b, float* y) {
  const float d = f16ToF32(loadU16(b)), m = f16ToF32(loadU16(b + 2));
  const uint32_t qh = loadU32(b + 4);
  for (int j = 0; j < 32; j++) y[j] = d * static_cast<float>(nibble32(b + 8, qh, j)) + m;
}

void blockQ2_K(const uint8_t* b, float* y) {
  const float d = f16ToF32(loadU16(b + 80)), dmin = f16ToF32(loadU16(b + 82));
  for (int e = 0; e < 256; e++) {
    const int sc = b[e >> 4];
    const float dl = d * static_cast<float>(sc & 0x0f), ml = dmin * static_cast<float>(sc >> 4);
    y[e] = dl * static_cast<float>(twoBits(b + 16, e)) - ml;
  }
}

void blockQ3_K(const uint8_t* b, float* y) {
  const float d = f16ToF32(loadU16(b + 108));
  for (int e = 0; e < 256; e++) {
    const float dl = d * static_cast<float>(q3kScale(b, e >> 4));
    y[e] = dl * static_cast<float>(q3kValue(b, e) - 4);
  }
}

void blockQ5_K(const uint8_t* b, float* y) {
  const float d = f16ToF32(loadU16(b)), dmin = f16ToF32(loadU16(b + 2));
  for (int g = 0; g < 4; g++) {
    for (int sub = 0; sub < 2; sub++) {
      int sc, m;
      q4kScaleMin(b + 4, 2 * g + sub, &sc, &m);
      const float dl = d * static_cast<float>(sc), ml = dmin * static_cast<float>(m);
      for (int l = 0; l < 32; l++) {
        const uint8_t q = b[48 + 32 * g + l];
        const int lo = sub == 0 ? q & 0x0f : q >> 4;
        const int hi = (b[16 + l] >> (2 * g + sub)) & 1;
        y[64 * g + 32 * sub + l] = dl * static_cast<float>(lo | (hi << 4)) - ml;
      }
    }
  }
}

void blockIQ4_NL(const uint8_t* b, float* y) {
  const float d = f16ToF32(loadU16(b));
  for (int j = 0; j < 32; j++) y[j] = d * static_cast<float>(kIq4nl[nibble32(b + 2, 0, j)]);
}

void blockIQ4_XS(const uint8_t* b, float* y) {
  const float d = f16ToF32(loadU16(b));
  for (int ib = 0; ib < 8; ib++) {
    const float dl = d * static_cast<float>(iq4xsScale(b, ib));
    for (int j = 0; j < 32; j++) y[32 * ib + j] = dl * static_cast<float>(kIq4nl[nibble32(b + 8 + 16 * ib, 0, j)]);
  }
}

template <void (*Block)(const uint8_t*, float*), int BS, int BB>
void spanBlocks(const uint8_t* row, int64_t k0, int64_t n, float* out) {
  const uint8_t* b = row + (k0 / BS) * BB;
  for (int64_t i = 0; i < n; i += BS, b += BB) Block(b, out + i);
}

}  // namespace

void dequantizeSpan(DType t, const uint8_t* row, int64_t k0, int64_t n, float* out) {
  switch (t) {
    case DType::F32:
      std::memcpy(out, row + 4 * k0, static_cast<size_t>(n) * 4);
      return;
    case DType::F16:
      spanF16(row, k0, n, out);
      return;
    case DType::BF16:
      spanBF16(row, k0, n, out);
      return;
    case DType::Q8_0:
      spanBlocks<blockQ8_0, 32, 34>(row, k0, n, out);
      return;
    case DType::Q4_0:
      spanBlocks<blockQ4_0, 32, 18>(row, k0, n, out);
      return;
    case DType::Q4_K:
      spanBlocks<blockQ4_K, 256, 144>(row, k0, n, out);
      return;
    case DType::Q6_K:
      spanBlocks<blockQ6_K, 256, 210>(row, k0, n, out);
      return;
    case DType::Q4_1:
      spanBlocks<blockQ4_1, 32, 20>(row, k0, n, out);
      return;
    case DType::Q5_0:
      spanBlocks<blockQ5_0, 32, 22>(row, k0, n, out);
      return;
    case DType::Q5_1:
      spanBlocks<blockQ5_1, 32, 24>(row, k0, n, out);
      return;
    case DType::Q2_K:
      spanBlocks<blockQ2_K, 256, 84>(row, k0, n, out);
      return;
    case DType::Q3_K:
      spanBlocks<blockQ3_K, 256, 110>(row, k0, n, out);
      return;
    case DType::Q5_K:
      spanBlocks<blockQ5_K, 256, 176>(row, k0, n, out);
      return;
    case DType::IQ4_NL:
      spanBlocks<blockIQ4_NL, 32, 18>(row, k0, n, out);
      return;
    case DType::IQ4_XS:
      spanBlocks<blockIQ4_XS, 256, 136>(row, k0, n, out);
      return;
    default:
      return;  // repacked types (qrepack.cc) are only multiplied, never expanded
  }
}

}  // namespace stepwise
