// Quantized weights and activations into the integer form of qblocks.h.
//
// Weights: each ggml type writes one superblock's values as unsigned bytes in natural order plus
// one scale (and min) per 16-element lane, then permuteToLanes puts the bytes in lane order. The
// lane scales are the same float products the dequantizer uses (d * sc, dmin * m, ...), so
// s * (u - off) - m is exactly the weight dequantizeSpan gives.
//
// Activations: quantized per 32 or 256 elements, like llama.cpp's Q8_0 and Q8_K, with
// round-half-even done by the 1.5 * 2^23 trick (exact for |v| < 2^22; |v| <= 127 here), which the
// TypeScript reference repeats float for float.
#include <cmath>
#include <cstring>

#include "ggml-blocks.h"
#include "qblocks.h"
#include "simd.h"

// GCC 12's false positive inside its own AVX-512 headers (see qmatmul.cc).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace stepwise {

using namespace ggml;

QTypeInfo qtypeInfo(DType t) {
  switch (t) {
    case DType::F32:
    case DType::F16:
    case DType::BF16:
      return {false, 0, false, false, 0};
    case DType::Q8_0:
      return {true, 128, false, true, 32};
    case DType::Q4_0:
      return {true, 8, false, false, 32};
    case DType::Q4_1:
      return {true, 0, true, false, 32};
    case DType::Q5_0:
      return {true, 16, false, false, 32};
    case DType::Q5_1:
      return {true, 0, true, false, 32};
    case DType::IQ4_NL:
      return {true, 128, false, true, 32};
    case DType::Q2_K:
      return {true, 0, true, false, 256};
    case DType::Q3_K:
      return {true, 4, false, false, 256};
    case DType::Q4_K:
      return {true, 0, true, false, 256};
    case DType::Q5_K:
      return {true, 0, true, false, 256};
    case DType::Q6_K:
      return {true, 32, false, false, 256};
    case DType::IQ4_XS:
      return {true, 128, false, true, 256};
  }
  return {false, 0, false, false, 0};
}

#if STEPWISE_AVX512
/**
 * The lane order from natural order held in 4 vectors: a 16x4 transpose of 32-bit units (output
 * vector c, lane l = natural unit 4*l + c). Units of lanes 0-7 come from the first two input
 * vectors, of lanes 8-15 from the last two.
 */
inline void storeLanes(__m512i z0, __m512i z1, __m512i z2, __m512i z3, uint8_t* out) {
  const __m512i base = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28);
  for (int c = 0; c < 4; c++) {
    const __m512i idx = _mm512_add_epi32(base, _mm512_set1_epi32(c));
    const __m512i lo = _mm512_permutex2var_epi32(z0, idx, z1);
    const __m512i hi = _mm512_permutex2var_epi32(z2, idx, z3);
    _mm512_storeu_si512(out + 64 * c, _mm512_mask_blend_epi32(0xff00, lo, hi));
  }
}
#endif

void permuteToLanes(const uint8_t* natural, uint8_t* out) {
#if STEPWISE_AVX512
  storeLanes(_mm512_loadu_si512(natural), _mm512_loadu_si512(natural + 64), _mm512_loadu_si512(natural + 128),
             _mm512_loadu_si512(natural + 192), out);
#else
  for (int l = 0; l < QLANES; l++)
    for (int c = 0; c < 4; c++) std::memcpy(out + 64 * c + 4 * l, natural + 16 * l + 4 * c, 4);
#endif
}

namespace {

/** Lanes 2j and 2j+1 (a 32-element sub-block) share scale s and min m. */
inline void setPair(QWeightBlock* o, int j, float s, float m) {
  o->s[2 * j] = o->s[2 * j + 1] = s;
  o->m[2 * j] = o->m[2 * j + 1] = m;
}

// 32-element block types: block j of the superblock fills natural bytes 32j..32j+31.

void blockQ8_0(const uint8_t* b, uint8_t* u, QWeightBlock* o, int j) {
  for (int i = 0; i < 32; i++) u[i] = static_cast<uint8_t>(b[2 + i] ^ 0x80);  // int8 q + 128
  setPair(o, j, f16ToF32(loadU16(b)), 0.0f);
}

void blockQ4_0(const uint8_t* b, uint8_t* u, QWeightBlock* o, int j) {
  for (int i = 0; i < 16; i++) {
    u[i] = b[2 + i] & 0x0f;
    u[i + 16] = b[2 + i] >> 4;
  }
  setPair(o, j, f16ToF32(loadU16(b)), 0.0f);
}

void blockQ4_1(const uint8_t* b, uint8_t* u, QWeightBlock* o, int j) {
  for (int i = 0; i < 32; i++) u[i] = static_cast<uint8_t>(nibble32(b + 4, 0, i));
  setPair(o, j, f16ToF32(loadU16(b)), -f16ToF32(loadU16(b + 2)));  // w = d*q + m
}

void blockQ5_0(const uint8_t* b, uint8_t* u, QWeightBlock* o, int j) {
  const uint32_t qh = loadU32(b + 2);
  for (int i = 0; i < 32; i++) u[i] = static_cast<uint8_t>(nibble32(b + 6, qh, i));
  setPair(o, j, f16ToF32(loadU16(b)), 0.0f);
}

void blockQ5_1(const uint8_t* b, uint8_t* u, QWeightBlock* o, int j) {
  const uint32_t qh = loadU32(b + 4);
  for (int i = 0; i < 32; i++) u[i] = static_cast<uint8_t>(nibble32(b + 8, qh, i));
  setPair(o, j, f16ToF32(loadU16(b)), -f16ToF32(loadU16(b + 2)));
}

void blockIQ4_NL(const uint8_t* b, uint8_t* u, QWeightBlock* o, int j) {
  for (int i = 0; i < 32; i++) u[i] = static_cast<uint8_t>(kIq4nl[nibble32(b + 2, 0, i)] + 128);
  setPair(o, j, f16ToF32(loadU16(b)), 0.0f);
}

template <void (*Block)(const uint8_t*, uint8_t*, QWeightBlock*, int), int BB>
void superblock32(const uint8_t* row, int64_t K, int64_t sb, uint8_t* u, QWeightBlock* o) {
  const int64_t first = sb * 8;
  const int64_t blocks = K / 32;
  for (int j = 0; j < 8; j++) {
    if (first + j < blocks) {
      Block(row + (first + j) * BB, u + 32 * j, o, j);
    } else {
      std::memset(u + 32 * j, 0, 32);
      setPair(o, j, 0.0f, 0.0f);
    }
  }
}

// 256-element types: the superblock is one ggml block.

void superQ2_K(const uint8_t* b, uint8_t* u, QWeightBlock* o) {
  const float d = f16ToF32(loadU16(b + 80)), dmin = f16ToF32(loadU16(b + 82));
  for (int l = 0; l < QLANES; l++) {
    o->s[l] = d * static_cast<float>(b[l] & 0x0f);
    o->m[l] = dmin * static_cast<float>(b[l] >> 4);
  }
  for (int e = 0; e < QK; e++) u[e] = static_cast<uint8_t>(twoBits(b + 16, e));
}

void superQ3_K(const uint8_t* b, uint8_t* u, QWeightBlock* o) {
  const float d = f16ToF32(loadU16(b + 108));
  const uint8_t* s = b + 96;
  for (int l = 0; l < QLANES; l++) {
    const int low = l < 8 ? s[l] & 0x0f : s[l - 8] >> 4;
    const int high = (s[8 + (l & 3)] >> (2 * (l >> 2))) & 3;
    o->s[l] = d * static_cast<float>((low | (high << 4)) - 32);
    o->m[l] = 0.0f;
  }
  // q - (hbit ? 0 : 4) + 4
  for (int e = 0; e < QK; e++) u[e] = static_cast<uint8_t>(twoBits(b + 32, e) + (((b[e & 31] >> (e >> 5)) & 1) << 2));
}

void superQ4_K(const uint8_t* b, uint8_t* u, QWeightBlock* o) {
  const float d = f16ToF32(loadU16(b)), dmin = f16ToF32(loadU16(b + 2));
  for (int j = 0; j < 8; j++) {
    int sc, m;
    q4kScaleMin(b + 4, j, &sc, &m);
    setPair(o, j, d * static_cast<float>(sc), dmin * static_cast<float>(m));
  }
  const uint8_t* q = b + 16;
  for (int j = 0; j < 4; j++) {
#if STEPWISE_AVX2
    const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * j));
    const __m256i mask = _mm256_set1_epi8(0x0f);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(u + 64 * j), _mm256_and_si256(bytes, mask));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(u + 64 * j + 32), _mm256_and_si256(_mm256_srli_epi16(bytes, 4), mask));
#else
    for (int i = 0; i < 32; i++) {
      u[64 * j + i] = q[32 * j + i] & 0x0f;
      u[64 * j + 32 + i] = q[32 * j + i] >> 4;
    }
#endif
  }
}

void superQ5_K(const uint8_t* b, uint8_t* u, QWeightBlock* o) {
  const float d = f16ToF32(loadU16(b)), dmin = f16ToF32(loadU16(b + 2));
  for (int j = 0; j < 8; j++) {
    int sc, m;
    q4kScaleMin(b + 4, j, &sc, &m);
    setPair(o, j, d * static_cast<float>(sc), dmin * static_cast<float>(m));
  }
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + 48;
  for (int g = 0; g < 4; g++) {
    for (int i = 0; i < 32; i++) {
      const uint8_t q = qs[32 * g + i];
      u[64 * g + i] = static_cast<uint8_t>((q & 0x0f) | (((qh[i] >> (2 * g)) & 1) << 4));
      u[64 * g + 32 + i] = static_cast<uint8_t>((q >> 4) | (((qh[i] >> (2 * g + 1)) & 1) << 4));
    }
  }
}

void superQ6_K(const uint8_t* b, uint8_t* u, QWeightBlock* o) {
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = f16ToF32(loadU16(b + 208));
  for (int l = 0; l < QLANES; l++) {
    o->s[l] = d * static_cast<float>(sc[l]);
    o->m[l] = 0.0f;
  }
  for (int half = 0; half < 2; half++) {
    const uint8_t* ql = b + 64 * half;
    const uint8_t* qh = b + 128 + 32 * half;
    uint8_t* y = u + 128 * half;
    for (int l = 0; l < 32; l++) {
      y[l] = static_cast<uint8_t>((ql[l] & 0x0f) | ((qh[l] & 3) << 4));
      y[l + 32] = static_cast<uint8_t>((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4));
      y[l + 64] = static_cast<uint8_t>((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
      y[l + 96] = static_cast<uint8_t>((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
    }
  }
}

void superIQ4_XS(const uint8_t* b, uint8_t* u, QWeightBlock* o) {
  const float d = f16ToF32(loadU16(b));
  const int scalesH = loadU16(b + 2);
  for (int ib = 0; ib < 8; ib++) {
    const int ls = ((b[4 + (ib >> 1)] >> (4 * (ib & 1))) & 0x0f) | (((scalesH >> (2 * ib)) & 3) << 4);
    setPair(o, ib, d * static_cast<float>(ls - 32), 0.0f);
    for (int j = 0; j < 32; j++) u[32 * ib + j] = static_cast<uint8_t>(kIq4nl[nibble32(b + 8 + 16 * ib, 0, j)] + 128);
  }
}

template <void (*Super)(const uint8_t*, uint8_t*, QWeightBlock*), int BB>
void superblock256(const uint8_t* row, int64_t, int64_t sb, uint8_t* u, QWeightBlock* o) {
  Super(row + sb * BB, u, o);
}

#if STEPWISE_AVX512
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

void fastQ4_K(const uint8_t* b, QWeightBlock* o) {
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
  storeLanes(z[0], z[1], z[2], z[3], o->u);
}

void fastQ5_K(const uint8_t* b, QWeightBlock* o) {
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
  storeLanes(z[0], z[1], z[2], z[3], o->u);
}

void fastQ6_K(const uint8_t* b, QWeightBlock* o) {
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
  storeLanes(z[0], z[1], z[2], z[3], o->u);
}

/** 32-element block types: block j's 32 values are natural bytes 32j..32j+31. */
template <int BB, __m256i (*Values)(const uint8_t*), bool HasMin>
void fast32(const uint8_t* row, int64_t K, int64_t sb, QWeightBlock* o) {
  (void)K;  // callers pass whole superblocks only
  const int64_t first = sb * 8;
  __m512i z[4];
  for (int c = 0; c < 4; c++) {
    const uint8_t* b0 = row + (first + 2 * c) * BB;
    z[c] = join(Values(b0), Values(b0 + BB));
  }
  alignas(16) uint16_t d[8];
  for (int j = 0; j < 8; j++) d[j] = loadU16(row + (first + j) * BB);
  const __m256 dv = _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(d)));
  const __m512i pairs = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
  _mm512_storeu_ps(o->s, _mm512_permutexvar_ps(pairs, _mm512_castps256_ps512(dv)));
  static_assert(!HasMin, "fast32 serves types without a min");
  _mm512_storeu_ps(o->m, _mm512_setzero_ps());
  storeLanes(z[0], z[1], z[2], z[3], o->u);
}

inline __m256i valuesQ8_0(const uint8_t* b) { return _mm256_xor_si256(load32(b + 2), _mm256_set1_epi8(static_cast<char>(0x80))); }

inline __m256i valuesQ4_0(const uint8_t* b) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2));
  const __m128i m = _mm_set1_epi8(0x0f);
  return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_and_si128(q, m)), _mm_and_si128(_mm_srli_epi16(q, 4), m), 1);
}
#endif

}  // namespace

void unpackWeightBlock(DType t, const uint8_t* row, int64_t K, int64_t sb, QWeightBlock* out) {
#if STEPWISE_AVX512
  switch (t) {
    case DType::Q4_K: return fastQ4_K(row + sb * 144, out);
    case DType::Q5_K: return fastQ5_K(row + sb * 176, out);
    case DType::Q6_K: return fastQ6_K(row + sb * 210, out);
    case DType::Q8_0:
      if ((sb + 1) * 8 * 32 <= K) return fast32<34, valuesQ8_0, false>(row, K, sb, out);
      break;
    case DType::Q4_0:
      if ((sb + 1) * 8 * 32 <= K) return fast32<18, valuesQ4_0, false>(row, K, sb, out);
      break;
    default: break;
  }
#endif
  alignas(64) uint8_t natural[QK];
  switch (t) {
    case DType::Q8_0: superblock32<blockQ8_0, 34>(row, K, sb, natural, out); break;
    case DType::Q4_0: superblock32<blockQ4_0, 18>(row, K, sb, natural, out); break;
    case DType::Q4_1: superblock32<blockQ4_1, 20>(row, K, sb, natural, out); break;
    case DType::Q5_0: superblock32<blockQ5_0, 22>(row, K, sb, natural, out); break;
    case DType::Q5_1: superblock32<blockQ5_1, 24>(row, K, sb, natural, out); break;
    case DType::IQ4_NL: superblock32<blockIQ4_NL, 18>(row, K, sb, natural, out); break;
    case DType::Q2_K: superblock256<superQ2_K, 84>(row, K, sb, natural, out); break;
    case DType::Q3_K: superblock256<superQ3_K, 110>(row, K, sb, natural, out); break;
    case DType::Q4_K: superblock256<superQ4_K, 144>(row, K, sb, natural, out); break;
    case DType::Q5_K: superblock256<superQ5_K, 176>(row, K, sb, natural, out); break;
    case DType::Q6_K: superblock256<superQ6_K, 210>(row, K, sb, natural, out); break;
    case DType::IQ4_XS: superblock256<superIQ4_XS, 136>(row, K, sb, natural, out); break;
    default: return;  // float types never come here (qtypeInfo(t).integer is false)
  }
  permuteToLanes(natural, out->u);
}

void quantizeActRow(const float* x, int64_t K, int group, int off, QActBlock* out) {
  const int64_t nsb = numSuperblocks(K);
  alignas(64) int8_t natural[QK];
  for (int64_t sb = 0; sb < nsb; sb++) {
    QActBlock* o = out + sb;
    const int64_t k0 = sb * QK;
    float d[QK / 32];
    for (int g0 = 0; g0 < QK; g0 += group) {
      float amax = 0.0f;
      bool finite = true;
      for (int i = g0; i < g0 + group && k0 + i < K; i++) {
        const float a = std::fabs(x[k0 + i]);
        if (!(a <= 3.4028234663852886e38f)) finite = false;  // inf or NaN
        else if (a > amax) amax = a;
      }
      const float id = amax > 0.0f && finite ? 127.0f / amax : 0.0f;
      for (int i = g0; i < g0 + group; i++) {
        if (k0 + i >= K || !finite) {
          natural[i] = 0;
          continue;
        }
        const float v = x[k0 + i] * id;
        // Round half to even: adding 1.5 * 2^23 leaves no fraction bits.
        const float r = (v + 12582912.0f) - 12582912.0f;
        natural[i] = static_cast<int8_t>(static_cast<int>(r));
      }
      // A non-finite input makes its group's products NaN, as a float dot product would.
      for (int j = g0 / 32; j < (g0 + group) / 32; j++) d[j] = finite ? amax / 127.0f : NAN;
    }
    for (int l = 0; l < QLANES; l++) {
      int32_t sum = 0;
      for (int i = 0; i < 16; i++) sum += natural[16 * l + i];
      o->d[l] = d[l / 2];
      o->off[l] = off * sum;
      o->s[l] = o->d[l] * static_cast<float>(sum);
    }
    permuteToLanes(reinterpret_cast<const uint8_t*>(natural), reinterpret_cast<uint8_t*>(o->q));
  }
}

}  // namespace stepwise
