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
#include "qunpack-avx512.h"
#include "simd.h"

namespace stepwise {

using namespace ggml;

// Every type with mins has off 0: the AVX-512 GEMMs skip the off term for them (qmatmul.cc).
QTypeInfo qtypeInfo(DType t) {
  switch (t) {
    case DType::F32:
    case DType::F16:
    case DType::BF16:
    case DType::F32_X16:
    case DType::F16_X16:
    case DType::BF16_X16:
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
    // The interleaved forms multiply as the file types they were made from.
    case DType::Q4_0_X16: return qtypeInfo(DType::Q4_0);
    case DType::Q8_0_X16: return qtypeInfo(DType::Q8_0);
    case DType::Q6_K_X16: return qtypeInfo(DType::Q6_K);
    case DType::Q5_K_X16: return qtypeInfo(DType::Q5_K);
    case DType::Q4_K_X16: return qtypeInfo(DType::Q4_K);
    case DType::Q4_1_X16: return qtypeInfo(DType::Q4_1);
    case DType::Q5_0_X16: return qtypeInfo(DType::Q5_0);
    case DType::Q5_1_X16: return qtypeInfo(DType::Q5_1);
    case DType::IQ4_NL_X16: return qtypeInfo(DType::IQ4_NL);
    case DType::IQ4_XS_X16: return qtypeInfo(DType::IQ4_XS);
    case DType::Q3_K_X16: return qtypeInfo(DType::Q3_K);
    case DType::Q2_K_X16: return qtypeInfo(DType::Q2_K);
  }
  return {false, 0, false, false, 0};
}

void permuteToLanes(const uint8_t* natural, uint8_t* out) {
#if STEPWISE_AVX512
  const __m512i z[4] = {_mm512_loadu_si512(natural), _mm512_loadu_si512(natural + 64),
                        _mm512_loadu_si512(natural + 128), _mm512_loadu_si512(natural + 192)};
  __m512i u[4];
  avx512q::toLanes(z, u);
  avx512q::storeLanes(u, out);
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
  for (int l = 0; l < QLANES; l++) {
    o->s[l] = d * static_cast<float>(q3kScale(b, l));
    o->m[l] = 0.0f;
  }
  for (int e = 0; e < QK; e++) u[e] = static_cast<uint8_t>(q3kValue(b, e));  // q + 4 (off 4)
}

/** q4_k / q5_k: sub-block j's d*sc and dmin*m on lanes 2j, 2j+1. */
void kLaneScales(const uint8_t* b, QWeightBlock* o) {
  const float d = f16ToF32(loadU16(b)), dmin = f16ToF32(loadU16(b + 2));
  for (int j = 0; j < 8; j++) {
    int sc, m;
    q4kScaleMin(b + 4, j, &sc, &m);
    setPair(o, j, d * static_cast<float>(sc), dmin * static_cast<float>(m));
  }
}

void superQ4_K(const uint8_t* b, uint8_t* u, QWeightBlock* o) {
  kLaneScales(b, o);
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
  kLaneScales(b, o);
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
  for (int ib = 0; ib < 8; ib++) {
    setPair(o, ib, d * static_cast<float>(iq4xsScale(b, ib)), 0.0f);
    for (int j = 0; j < 32; j++) u[32 * ib + j] = static_cast<uint8_t>(kIq4nl[nibble32(b + 8 + 16 * ib, 0, j)] + 128);
  }
}

template <void (*Super)(const uint8_t*, uint8_t*, QWeightBlock*), int BB>
void superblock256(const uint8_t* row, int64_t, int64_t sb, uint8_t* u, QWeightBlock* o) {
  Super(row + sb * BB, u, o);
}

}  // namespace

void unpackWeightBlock(DType t, const uint8_t* row, int64_t K, int64_t sb, QWeightBlock* out) {
#if STEPWISE_AVX512
  __m512i u[4];
  if (avx512q::unpackRegs(t, row, K, sb, out, u)) return avx512q::storeLanes(u, out->u);
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

#if STEPWISE_AVX512
namespace {

/**
 * One whole superblock of quantizeActRow in vectors: the same float operations element for element
 * (|x|'s maximum, 127 / amax, x * id, round half to even), so the same bits as the scalar loop;
 * vector l of the 16 holds lane l's 16 elements, and the lane sums come from dot products with
 * ones on the lane-ordered bytes. A prompt's activations are quantized once per GEMM, and the
 * scalar loop cost a tenth of a quantized prompt's time.
 */
void quantizeActBlock(const float* x, int group, int off, QActBlock* o) {
  const __m512 signMask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
  const __m512 maxFinite = _mm512_set1_ps(3.4028234663852886e38f);
  __m512 v[QLANES];
  __m512 d16 = _mm512_setzero_ps();  // lane l: its group's d
  for (int g0 = 0; g0 < QK; g0 += group) {
    const int l0 = g0 / 16, nl = group / 16;
    __m512 amaxv = _mm512_setzero_ps();
    __mmask16 finite = 0xffff;
    for (int l = l0; l < l0 + nl; l++) {
      v[l] = _mm512_loadu_ps(x + 16 * l);
      const __m512 a = _mm512_and_ps(v[l], signMask);
      finite &= _mm512_cmp_ps_mask(a, maxFinite, _CMP_LE_OQ);
      amaxv = _mm512_max_ps(amaxv, a);
    }
    const float amax = _mm512_reduce_max_ps(amaxv);
    const bool ok = finite == 0xffff;
    const float id = amax > 0.0f && ok ? 127.0f / amax : 0.0f;
    const __m512 idv = _mm512_set1_ps(id);
    for (int l = l0; l < l0 + nl; l++)
      v[l] = ok ? _mm512_roundscale_ps(_mm512_mul_ps(v[l], idv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC) : _mm512_setzero_ps();
    const float d = ok ? amax / 127.0f : NAN;
    d16 = _mm512_mask_mov_ps(d16, static_cast<__mmask16>(((1u << nl) - 1) << l0), _mm512_set1_ps(d));
  }
  // Natural order: 64 bytes = lanes 4c..4c+3.
  __m512i z[4];
  for (int c = 0; c < 4; c++) {
    __m128i b[4];
    for (int i = 0; i < 4; i++) b[i] = _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(v[4 * c + i]));
    z[c] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set_m128i(b[1], b[0])), _mm256_set_m128i(b[3], b[2]), 1);
  }
  __m512i q[4];
  avx512q::toLanes(z, q);
  __m512i sum = _mm512_setzero_si512();
  for (int c = 0; c < 4; c++) {
    _mm512_storeu_si512(o->q + 64 * c, q[c]);
    sum = _mm512_dpbusd_epi32(sum, _mm512_set1_epi8(1), q[c]);
  }
  _mm512_storeu_ps(o->d, d16);
  _mm512_storeu_si512(o->sum, sum);
  _mm512_storeu_si512(o->off, _mm512_mullo_epi32(_mm512_set1_epi32(off), sum));
  _mm512_storeu_ps(o->s, _mm512_mul_ps(d16, _mm512_cvtepi32_ps(sum)));
}

}  // namespace
#endif

void quantizeActRow(const float* x, int64_t K, int group, int off, QActBlock* out) {
  const int64_t nsb = numSuperblocks(K);
  alignas(64) int8_t natural[QK];
  for (int64_t sb = 0; sb < nsb; sb++) {
    QActBlock* o = out + sb;
    const int64_t k0 = sb * QK;
#if STEPWISE_AVX512
    if (k0 + QK <= K) {
      quantizeActBlock(x + k0, group, off, o);
      continue;
    }
#endif
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
      o->sum[l] = sum;
      o->off[l] = off * sum;
      o->s[l] = o->d[l] * static_cast<float>(sum);
    }
    permuteToLanes(reinterpret_cast<const uint8_t*>(natural), reinterpret_cast<uint8_t*>(o->q));
  }
}

}  // namespace stepwise
