// Integer dot products for quantized weights: the common form every ggml block type is unpacked
// into, and the int8 form activations are quantized into (as llama.cpp's Q8_0 / Q8_K).
//
// A row is cut into superblocks of 256 elements; a superblock is 16 "lanes" of 16 elements, and
// every lane has one weight scale: the ggml types' scales cover 16 elements (q2_k, q3_k, q6_k),
// 32 (q4_k, q5_k, iq4_xs and the 32-element block types) or more, never fewer. Weights become
// unsigned bytes u with w = s[lane] * (u - off) - m[lane] (off per type, so that u >= 0), and
// activations signed bytes q with x = d[lane] * q. Then one superblock's dot product is
//
//   sum over lanes l of  float(sum_k u_k q_k - off * sum_k q_k) * (s_l * d_l)  -  m_l * (d_l * sum_k q_k)
//
// where the integer sums are exact, so their order never matters. Elements are stored permuted:
// element 16*l + 4*c + b of a superblock sits at byte 64*c + 4*l + b. A 64-byte vector c then holds
// 4 consecutive elements of every lane, and a VNNI dot product (4 bytes into one 32-bit lane) adds
// lane l's products into 32-bit lane l for all 4 vectors: one accumulator per superblock, no
// shuffles, and the scales are applied once per superblock.
#pragma once

#include <cstdint>

#include "dtypes.h"

namespace stepwise {

inline constexpr int QK = 256;     // elements per superblock
inline constexpr int QLANES = 16;  // lanes per superblock, 16 elements each

/** One superblock of one weight row, unpacked (see above). */
struct QWeightBlock {
  uint8_t u[QK];
  float s[QLANES];
  float m[QLANES];
};

/** One superblock of one activation row, quantized. off = the weight type's off * sum of q in the lane. */
struct QActBlock {
  int8_t q[QK];
  float d[QLANES];
  int32_t off[QLANES];
  float s[QLANES];  // d[l] * (sum of q in lane l), for the weights' m term
  int32_t sum[QLANES];  // sum of q in lane l
};

/** How a weight type takes part in integer dot products. */
struct QTypeInfo {
  bool integer;  // false: f32/f16/bf16, multiplied in floating point
  int off;       // the offset that makes every u non-negative
  bool hasMin;   // m[] is used
  bool wide;     // u may exceed 127 (AVX2's maddubs would saturate)
  int group;     // activation elements per scale: 32 (as Q8_0) or 256 (as Q8_K)
};

QTypeInfo qtypeInfo(DType t);

inline int64_t numSuperblocks(int64_t K) { return (K + QK - 1) / QK; }

/**
 * Unpacks superblock sb of a weight row (`row`: its bytes, K columns). Blocks past the row's end
 * (32-element types whose K is not a multiple of 256) become zeros.
 */
void unpackWeightBlock(DType t, const uint8_t* row, int64_t K, int64_t sb, QWeightBlock* out);

/**
 * Quantizes one activation row of K floats into numSuperblocks(K) blocks: per `group` elements,
 * d = amax / 127 and q = round-half-even(x * (127 / amax)). The TypeScript reference kernels do
 * the same float operations (src/model/kernels/activation-quant.ts).
 */
void quantizeActRow(const float* x, int64_t K, int group, int off, QActBlock* out);

/** Permutes 256 bytes from natural order to the lane order described above. */
void permuteToLanes(const uint8_t* natural, uint8_t* out);

}  // namespace stepwise
