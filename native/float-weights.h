// Float weight elements as the float GEMMs read them (matmul.cc's row form, matmul-x16.cc's
// interleaved form): f32, or f16 / bf16 bits widened to f32 as loaded. Both forms must widen the
// same way (exactly), so they share these.
#pragma once

#include <cstdint>

#include "simd.h"

namespace stepwise {

// Weight element types read in place: floats, or f16 / bf16 bits.
struct Half { uint16_t bits; };
struct BHalf { uint16_t bits; };

inline float elem(const float* p) { return loadF32(p); }
inline float elem(const Half* p) { return f16ToF32(loadU16(p)); }
inline float elem(const BHalf* p) { return bf16ToF32(loadU16(p)); }

#if STEPWISE_AVX512
inline __m512 loadW(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 loadW(const Half* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
inline __m512 loadW(const BHalf* p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
}
#elif STEPWISE_AVX2
inline __m256 loadW(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 loadW(const Half* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
inline __m256 loadW(const BHalf* p) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
}
#endif

}  // namespace stepwise
