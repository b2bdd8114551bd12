// Weight element types, their ggml block layouts, and dequantization of a span of one row into
// floats. Quantized weights stay quantized in memory; the GEMM expands one small tile at a time.
#pragma once

#include <cstddef>
#include <cstdint>

namespace stepwise {

// Numbering shared with src/model/kernels/native.ts (DTYPE_CODES).
enum class DType : int { F32 = 0, F16 = 1, BF16 = 2, Q8_0 = 3, Q4_0 = 4, Q4_K = 5, Q6_K = 6 };
inline constexpr int kNumDTypes = 7;

struct DTypeInfo {
  const char* name;
  int blockSize;   // elements per block (1 for plain float types)
  int blockBytes;  // bytes per block
};

// ggml layouts (little-endian):
//   q8_0: f16 d, int8 q[32]                        -> d*q
//   q4_0: f16 d, u8 q[16] (low nibbles = 0..15, high = 16..31) -> d*(q-8)
//   q4_k: f16 d, f16 dmin, u8 scales[12] (8 six-bit scale/min pairs), u8 q[128]
//         -> (d*sc)*q - (dmin*m) per 32-element sub-block
//   q6_k: u8 ql[128], u8 qh[64], int8 scales[16], f16 d -> (d*sc)*(q-32), 16-element sub-blocks
inline constexpr DTypeInfo kDTypeInfo[kNumDTypes] = {
    {"f32", 1, 4}, {"f16", 1, 2}, {"bf16", 1, 2}, {"q8_0", 32, 34},
    {"q4_0", 32, 18}, {"q4_k", 256, 144}, {"q6_k", 256, 210},
};

inline const DTypeInfo& dtypeInfo(DType t) { return kDTypeInfo[static_cast<int>(t)]; }

/** Bytes of one row of `cols` elements (cols must be a multiple of the block size). */
inline size_t rowBytes(DType t, int64_t cols) {
  const DTypeInfo& i = dtypeInfo(t);
  return static_cast<size_t>(cols / i.blockSize) * static_cast<size_t>(i.blockBytes);
}

/**
 * Writes elements k0 .. k0+n-1 of a row (its bytes start at `row`) to out as floats. For block
 * types k0 and n must be multiples of the block size. Each element's value depends only on its
 * own block, so expanding a span gives the same bits as expanding the whole row.
 */
void dequantizeSpan(DType t, const uint8_t* row, int64_t k0, int64_t n, float* out);

}  // namespace stepwise
