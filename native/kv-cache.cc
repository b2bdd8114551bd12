// The KV cache's element types: rows are encoded on write (f16, q8_0) and decoded for attention.
// The encoders give the bytes src/model/kv-dtype.ts gives, and decoding is exact, so the native and
// TypeScript kernels attend over the same values.
#include <cmath>
#include <cstring>

#include "kernels.h"
#include "simd.h"

namespace stepwise {
namespace {

/** float -> IEEE half, rounding to nearest even (F16C's rounding, and half.ts's f32ToF16). */
uint16_t f32ToF16(float f) {
#if STEPWISE_AVX2
  return static_cast<uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#else
  uint32_t b;
  std::memcpy(&b, &f, 4);
  const uint32_t sign = (b >> 16) & 0x8000;
  const int32_t exp = static_cast<int32_t>((b >> 23) & 0xff);
  uint32_t mant = b & 0x7fffff;
  if (exp == 0xff) return static_cast<uint16_t>(sign | 0x7c00 | (mant ? 0x200 : 0));
  const int32_t e = exp - 127 + 15;
  if (e >= 0x1f) return static_cast<uint16_t>(sign | 0x7c00);
  if (e <= 0) {
    if (e < -10) return static_cast<uint16_t>(sign);
    mant |= 0x800000;
    const int shift = 14 - e;
    uint32_t m = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (m & 1))) m++;
    return static_cast<uint16_t>(sign | m);
  }
  uint32_t h = (static_cast<uint32_t>(e) << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
  return static_cast<uint16_t>(sign | h);
#endif
}

void encodeF16(const float* x, int64_t n, uint8_t* out) {
  int64_t i = 0;
#if STEPWISE_AVX2
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2 * i), h);
  }
#endif
  for (; i < n; i++) {
    const uint16_t h = f32ToF16(x[i]);
    std::memcpy(out + 2 * i, &h, 2);
  }
}

/** As quant.ts's encodeQ8_0: scale and rounding in doubles, the scale stored as f16. */
void encodeQ8_0(const float* x, uint8_t* b) {
  double amax = 0;
  for (int j = 0; j < 32; j++) {
    const double a = std::fabs(static_cast<double>(x[j]));
    if (a != a) {
      amax = NAN;  // Math.max propagates NaN
      break;
    }
    if (a > amax) amax = a;
  }
  const double d = amax / 127;
  const double id = d != 0 && d == d ? 1 / d : 0;
  const uint16_t h = f32ToF16(static_cast<float>(d));
  std::memcpy(b, &h, 2);
  for (int j = 0; j < 32; j++) {
    const double v = static_cast<double>(x[j]) * id;
    // JavaScript's Math.round (floor, then up from a fraction >= 0.5), away from zero for negatives.
    const double a = std::fabs(v);
    double r = std::floor(a);
    if (a - r >= 0.5) r += 1;
    if (v < 0) r = -r;
    if (r != r) r = 0;  // NaN: quant.ts's clamp passes it through and & 0xff makes it 0
    if (r < -127) r = -127;
    if (r > 127) r = 127;
    b[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(static_cast<int>(r)));
  }
}

void encodeRow(KvDtype dt, const float* x, int64_t width, uint8_t* out) {
  switch (dt) {
    case KvDtype::F32:
      std::memcpy(out, x, static_cast<size_t>(width) * 4);
      return;
    case KvDtype::F16:
      encodeF16(x, width, out);
      return;
    case KvDtype::Q8_0:
      for (int64_t b = 0; b < width / 32; b++) encodeQ8_0(x + 32 * b, out + 34 * b);
      return;
  }
}

}  // namespace

void writeKv(uint8_t* kc, uint8_t* vc, KvDtype dt, int64_t kvDim, const float* k, const float* v, int64_t numRows,
             const int32_t* slots) {
  const int64_t rb = kvRowBytes(dt, kvDim);
  for (int64_t r = 0; r < numRows; r++) {
    const int64_t s = slots[r];
    if (s == -1) continue;
    encodeRow(dt, k + r * kvDim, kvDim, kc + s * rb);
    encodeRow(dt, v + r * kvDim, kvDim, vc + s * rb);
  }
}

void readKvRow(KvDtype dt, const uint8_t* row, int64_t off, int64_t n, float* out) {
  // The cache's rows are laid out as weight rows of the same type: the dequantizer reads them.
  dequantizeSpan(dt == KvDtype::F32 ? DType::F32 : dt == KvDtype::F16 ? DType::F16 : DType::Q8_0, row, off, n, out);
}

}  // namespace stepwise
