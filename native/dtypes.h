// Weight element types, their ggml block layouts, and dequantization of a span of one row into
// floats. Quantized weights stay quantized in memory; the GEMM expands one small tile at a time.
#pragma once

#include <cstddef>
#include <cstdint>

namespace stepwise {

// Numbering shared with src/model/kernels/native.ts (DTYPE_CODES).
enum class DType : int {
  F32 = 0, F16 = 1, BF16 = 2, Q8_0 = 3, Q4_0 = 4, Q4_K = 5, Q6_K = 6,
  Q4_1 = 7, Q5_0 = 8, Q5_1 = 9, Q2_K = 10, Q3_K = 11, Q5_K = 12, IQ4_NL = 13, IQ4_XS = 14,
  // Interleaved forms (qrepack.cc): never in a file; the AVX-512 build makes them from the file types.
  Q4_0_X16 = 15, Q4_K_X16 = 16, Q8_0_X16 = 17, Q6_K_X16 = 18, Q5_K_X16 = 19,
  F32_X16 = 20, F16_X16 = 21, BF16_X16 = 22, Q4_1_X16 = 23, Q5_0_X16 = 24, Q5_1_X16 = 25, IQ4_NL_X16 = 26,
  IQ4_XS_X16 = 27, Q3_K_X16 = 28, Q2_K_X16 = 29,
};
inline constexpr int kNumDTypes = 30;
// Codes JavaScript may pass: the file types.
inline constexpr int kNumFileDTypes = 15;

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
//   q4_1, q5_0, q5_1, q2_k, q3_k, q5_k, iq4_nl, iq4_xs: see src/model/quant-codecs.ts
inline constexpr DTypeInfo kDTypeInfo[kNumDTypes] = {
    {"f32", 1, 4},     {"f16", 1, 2},      {"bf16", 1, 2},     {"q8_0", 32, 34},   {"q4_0", 32, 18},
    {"q4_k", 256, 144}, {"q6_k", 256, 210}, {"q4_1", 32, 20},   {"q5_0", 32, 22},   {"q5_1", 32, 24},
    {"q2_k", 256, 84},  {"q3_k", 256, 110}, {"q5_k", 256, 176}, {"iq4_nl", 32, 18}, {"iq4_xs", 256, 136},
    {"q4_0_x16", 32, 18}, {"q4_k_x16", 256, 148}, {"q8_0_x16", 32, 34},
    {"q6_k_x16", 256, 210}, {"q5_k_x16", 256, 180}, {"f32_x16", 1, 4},   {"f16_x16", 1, 2},  {"bf16_x16", 1, 2},
    {"q4_1_x16", 32, 20},   {"q5_0_x16", 32, 22},   {"q5_1_x16", 32, 24}, {"iq4_nl_x16", 32, 18}, {"iq4_xs_x16", 256, 138}, {"q3_k_x16", 256, 114}, {"q2_k_x16", 256, 100},
};

inline const DTypeInfo& dtypeInfo(DType t) { return kDTypeInfo[static_cast<int>(t)]; }

/** Bytes of one row of `cols` elements (cols must be a multiple of the block size). */
inline size_t rowBytes(DType t, int64_t cols) {
  const DTypeInfo& i = dtypeInfo(t);
  return static_cast<size_t>(cols / i.blockSize) * static_cast<size_t>(i.blockBytes);
}

/**
 * The interleaved forms store 16 rows side by side (qrepack.cc), so their tensors are padded to a
 * whole number of 16-row groups; rowBytes is still each row's share.
 */
inline constexpr int64_t kInterleave = 16;
inline bool isInterleaved(DType t) {
  return static_cast<int>(t) >= static_cast<int>(DType::Q4_0_X16);
}

/** Rows a tensor of t stores for `rows` rows: whole groups for the interleaved forms. */
inline int64_t storedRows(DType t, int64_t rows) {
  return isInterleaved(t) ? (rows + kInterleave - 1) / kInterleave * kInterleave : rows;
}

/**
 * Writes elements k0 .. k0+n-1 of a row (its bytes start at `row`) to out as floats. For block
 * types k0 and n must be multiples of the block size. Each element's value depends only on its
 * own block, so expanding a span gives the same bits as expanding the whole row.
 */
void dequantizeSpan(DType t, const uint8_t* row, int64_t k0, int64_t n, float* out);

}  // namespace stepwise
