// Byte layouts of the interleaved weight forms (16 rows side by side), shared by the repacking
// (qrepack.cc, which describes each form in full) and the GEMM that reads them (qmatmul-x16.cc).
#pragma once

#include <cstdint>

#include "dtypes.h"

namespace stepwise {
namespace x16 {

// The k-quant forms: bytes per group of 16 rows and 256-column superblock.
inline constexpr int64_t kQ4KBlock = 16 * 148;  // q4_k's 144 bytes a row, and the mins re-laid as 16-bit pairs
inline constexpr int64_t kQ5KBlock = 16 * 180;  // q4_k_x16's 2368 bytes, then the fifth bits
inline constexpr int64_t kQ6KBlock = 16 * 210;
inline constexpr int64_t kIQ4XSBlock = 16 * 138;  // iq4_xs's 136 bytes a row, its scales whole bytes
inline constexpr int64_t kQ3KBlock = 16 * 114;    // q3_k's 110 bytes a row, its scales whole bytes
inline constexpr int64_t kQ2KBlock = 16 * 100;    // q2_k's 84 bytes a row, its scales and mins whole bytes

/**
 * The 32-column block forms, per group of 16 rows and 32-column block: the values first (8
 * vectors of bytes plus 128 for q8_0, else 4 vectors of nibble pairs as the file's bytes), then
 * for q5_0/q5_1 64 bytes of fifth bits (byte 4r + i: bit v for column 4v + i, bit 4 + v for
 * column 16 + 4v + i), then the 16 rows' f16 scales, then for q4_1/q5_1 their f16 mins.
 */
struct Block32 {
  bool bytes;   // q8_0: whole bytes
  bool five;    // q5_0, q5_1: a fifth bit per value
  bool mins;    // q4_1, q5_1: w = d * q + min
  bool table;   // iq4_nl: the nibble indexes ggml's non-linear table
  int64_t fileBlock;  // bytes of one row's block in the file
  int64_t valuesAt;   // where the file block's values start
  int64_t fifthAt;    // where its 32-bit fifth-bit mask is (five)
  constexpr int64_t scales() const { return bytes ? 512 : five ? 320 : 256; }
  constexpr int64_t minsAt() const { return scales() + 32; }
  constexpr int64_t size() const { return scales() + (mins ? 64 : 32); }
};

inline constexpr Block32 kQ4_0{false, false, false, false, 18, 2, 0};
inline constexpr Block32 kQ8_0{true, false, false, false, 34, 2, 0};
inline constexpr Block32 kQ4_1{false, false, true, false, 20, 4, 0};
inline constexpr Block32 kQ5_0{false, true, false, false, 22, 6, 2};
inline constexpr Block32 kQ5_1{false, true, true, false, 24, 8, 4};
inline constexpr Block32 kIQ4_NL{false, false, false, true, 18, 2, 0};

/** The 32-column block form of an interleaved type, or null. */
inline const Block32* block32Of(DType t) {
  switch (t) {
    case DType::Q4_0_X16: return &kQ4_0;
    case DType::Q8_0_X16: return &kQ8_0;
    case DType::Q4_1_X16: return &kQ4_1;
    case DType::Q5_0_X16: return &kQ5_0;
    case DType::Q5_1_X16: return &kQ5_1;
    case DType::IQ4_NL_X16: return &kIQ4_NL;
    default: return nullptr;
  }
}

}  // namespace x16
}  // namespace stepwise
