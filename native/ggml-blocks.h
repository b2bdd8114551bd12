// Small readers of ggml block fields shared by the dequantizer (dequant.cc) and the integer
// unpacker (qunpack.cc). Layouts: src/model/quant-codecs.ts.
#pragma once

#include <cstdint>

namespace stepwise {
namespace ggml {

// The 6-bit scale and min of sub-block j (0..7) of a q4_k block.
inline void q4kScaleMin(const uint8_t* s, int j, int* sc, int* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
    *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

inline constexpr int8_t kIq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

/** kIq4nl plus 128: the unsigned bytes the integer GEMMs take (offset 128), for a 16-byte table lookup. */
struct Iq4nlUnsigned {
  alignas(16) uint8_t v[16];
};
constexpr Iq4nlUnsigned makeIq4nlUnsigned() {
  Iq4nlUnsigned t{};
  for (int i = 0; i < 16; i++) t.v[i] = static_cast<uint8_t>(kIq4nl[i] + 128);
  return t;
}
inline constexpr Iq4nlUnsigned kIq4nlUnsigned = makeIq4nlUnsigned();

inline uint32_t loadU32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}

/** Value j (0..31) of 16 nibble bytes (j low nibble, j+16 high) with a 5th bit from qh. */
inline int nibble32(const uint8_t* qs, uint32_t qh, int j) {
  const int lo = j < 16 ? qs[j] & 0x0f : qs[j - 16] >> 4;
  return lo | static_cast<int>(((qh >> j) & 1u) << 4);
}

/** 2-bit value e of a q2_k/q3_k block's 64 qs bytes. */
inline int twoBits(const uint8_t* qs, int e) {
  const int r = e & 127;
  return (qs[(e >> 7) * 32 + (r & 31)] >> (2 * (r >> 5))) & 3;
}

/** Value e (0..255) of the q3_k block b as 0..7: its 2 bits, plus 4 when its hmask bit is set (ggml's q is this minus 4). */
inline int q3kValue(const uint8_t* b, int e) { return twoBits(b + 32, e) | (((b[e & 31] >> (e >> 5)) & 1) << 2); }

/**
 * The signed scale (-32..31) of 16-element lane l of the q3_k block b: low 4 bits from bytes 96-103
 * (lanes 0-7 the low nibbles, 8-15 the high), high 2 bits from byte 104 + (l & 3) at shift 2 * (l >> 2).
 */
inline int q3kScale(const uint8_t* b, int l) {
  const uint8_t* s = b + 96;
  const int low = l < 8 ? s[l] & 0x0f : s[l - 8] >> 4;
  return (low | (((s[8 + (l & 3)] >> (2 * (l >> 2))) & 3) << 4)) - 32;
}

/** The signed scale (-32..31) of 32-element sub-block ib of the iq4_xs block b. */
inline int iq4xsScale(const uint8_t* b, int ib) {
  const int high = b[2] | (b[3] << 8);
  return (((b[4 + (ib >> 1)] >> (4 * (ib & 1))) & 0x0f) | (((high >> (2 * ib)) & 3) << 4)) - 32;
}

}  // namespace ggml
}  // namespace stepwise
