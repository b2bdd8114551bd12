// Interleaving of weights, once per tensor, into the forms the AVX-512 GEMMs of qmatmul-x16.cc
// (q4_0, q4_1, q5_0, q5_1, iq4_nl, q8_0, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_xs) and matmul-x16.cc (f32, f16, bf16: element k of row r at 16k + r
// of its group) read; what llama.cpp's CPU "repack" buffer types do for the same formats.
//
// 16 consecutive rows are stored side by side, so one 64-byte vector holds the same 4 columns of
// all 16 rows: a VNNI dot product with 4 activation bytes broadcast then adds into 16 outputs at
// once, and the scales of a block are one vector over the rows. The per-pair epilogue of the
// lane form (qblocks.h: one per 256 products of one weight row and one activation row) becomes one
// per 32 products of 16 rows, and no horizontal folds remain.
//
// q4_0_x16, per group of 16 rows and per 32-column block b (288 bytes, the file's 16 x 18):
//   bytes 64v + 4r + i (v < 4, r < 16, i < 4): row r's file byte 4v + i, i.e. column 4v + i in the
//   low nibble and column 16 + 4v + i in the high one;  bytes 256 + 2r: row r's f16 scale.
// q4_k_x16, per group and per 256-column superblock (2368 bytes, 148 per row against 144):
//   bytes 256j + 64v + 4r + i: sub-block j's columns 32j + 4v + i (low nibble) and
//   32j + 16 + 4v + i (high);  2048 + 2r: f16 d;  2080 + 2r: f16 dmin;  2112 + 16j + r: the
//   6-bit scale of sub-block j;  2240 + 32p + 2r + t: the 6-bit min of sub-block 2p + t (pairs
//   of 16-bit lanes once widened, for the 16-bit dot product of the min term).
// q5_k_x16, per group and superblock (2880 bytes, 180 per row against 176): q4_k_x16's 2368
//   bytes for the low 4 bits, scales and mins, then per block j 64 bytes at 2368 + 64j: byte 4r + i
//   holds the fifth bits of columns 4v + i (bit v) and 16 + 4v + i (bit 4 + v), v < 4.
// q8_0_x16, per group and 32-column block (544 bytes, the file's 16 x 34):
//   bytes 64v + 4r + i (v < 8): row r's value 4v + i plus 128 (an unsigned byte, as VNNI takes
//   weights);  bytes 512 + 2r: row r's f16 scale.
// iq4_nl_x16: q4_0_x16's layout (the nibbles index ggml's table; the GEMM looks them up).
// q4_1_x16 (320 bytes, 16 x 20): q4_0_x16's, then 288 + 2r: row r's f16 min.
// q5_0_x16 (352 bytes, 16 x 22): the nibbles as q4_0_x16's, then 256 + 4r + i: the fifth bits of
//   columns 4v + i (bit v) and 16 + 4v + i (bit 4 + v), v < 4, as q5_k_x16's;  320 + 2r: f16 scale.
// q5_1_x16 (384 bytes, 16 x 24): q5_0_x16's, then 352 + 2r: row r's f16 min.
// q6_k_x16, per group and superblock (3360 bytes, the file's 16 x 210): per 32-column block j at
//   384j, the low 4 bits as q4_0_x16's 256 bytes, then 128 bytes of high 2-bit pairs: byte
//   256 + 64h + 4r + i (h < 2) holds those of columns 4(2h) + i, 4(2h+1) + i, 16 + 4(2h) + i and
//   16 + 4(2h+1) + i at shifts 0, 2, 4, 6;  3072 + 16t + r: the int8 scale of 16-column
//   sub-block t;  3328 + 2r: f16 d.
// iq4_xs_x16, per group and superblock (2208 bytes, 138 per row against 136): per 32-column
//   sub-block j at 256j, q4_0_x16's nibble layout (indexes into ggml's table);  2048 + 16j + r: the
//   sub-block's scale minus 32 as an int8;  2176 + 2r: f16 d.
// q3_k_x16, per group and superblock (1824 bytes, 114 per row against 110): per 32-column block j
//   at 192j, 8 runs of 24 bytes, run n = 4h + v holding the 3-bit values (2 bits + 4 * the hmask
//   bit, offset 4, as the lane form's) of columns 16h + 4v + i of row r at bits 3(4r + i) .. +2, so
//   a byte permute and a multishift put each in its byte;  1536 + 16t + r: the 6-bit scale of
//   16-column sub-block t minus 32, an int8;  1792 + 2r: f16 d.
// q2_k_x16, per group and superblock (1600 bytes, 100 per row against 84): per 32-column block j
//   at 128j, the 2-bit values as q6_k_x16's high pairs;  1024 + 16t + r: the 4-bit scale of 16-column
//   sub-block t;  1280 + 32p + 2r + i: the 4-bit min of sub-block 2p + i (16-bit pairs once
//   widened, as q4_k_x16's);  1536 + 2r: f16 d;  1568 + 2r: f16 dmin.
// Rows past the tensor's end, up to the group's 16, are zeros.
#include <cstring>

#include "ggml-blocks.h"
#include "kernels.h"
#include "qblocks.h"
#include "simd.h"  // STEPWISE_AVX512: without it the repacking was compiled out, silently
#include "x16-forms.h"

namespace stepwise {

bool repackedType(DType t, int64_t K, DType* out) {
#if STEPWISE_AVX512
  if (t == DType::Q4_K && K % QK == 0) return *out = DType::Q4_K_X16, true;
  if (t == DType::Q4_0 && K % 32 == 0) return *out = DType::Q4_0_X16, true;
  if (t == DType::Q8_0 && K % 32 == 0) return *out = DType::Q8_0_X16, true;
  if (t == DType::Q4_1 && K % 32 == 0) return *out = DType::Q4_1_X16, true;
  if (t == DType::Q5_0 && K % 32 == 0) return *out = DType::Q5_0_X16, true;
  if (t == DType::Q5_1 && K % 32 == 0) return *out = DType::Q5_1_X16, true;
  if (t == DType::IQ4_NL && K % 32 == 0) return *out = DType::IQ4_NL_X16, true;
  if (t == DType::IQ4_XS && K % QK == 0) return *out = DType::IQ4_XS_X16, true;
  if (t == DType::Q3_K && K % QK == 0) return *out = DType::Q3_K_X16, true;
  if (t == DType::Q2_K && K % QK == 0) return *out = DType::Q2_K_X16, true;
  if (t == DType::Q6_K && K % QK == 0) return *out = DType::Q6_K_X16, true;
  if (t == DType::Q5_K && K % QK == 0) return *out = DType::Q5_K_X16, true;
  if (t == DType::F32) return *out = DType::F32_X16, true;
  if (t == DType::F16) return *out = DType::F16_X16, true;
  if (t == DType::BF16) return *out = DType::BF16_X16, true;
#else
  (void)t;
  (void)K;
  (void)out;
#endif
  return false;
}

namespace {

using x16::kQ4KBlock;
using x16::kQ5KBlock;
using x16::kQ6KBlock;
using x16::kIQ4XSBlock;
using x16::kQ3KBlock;
using x16::kQ2KBlock;

// The planes of a 32-column block, row r of the group: every form lays out a block's columns the
// same way (byte 4r + i of a 64-byte vector holds row r's columns 4v + i and 16 + 4v + i), and
// these write one row's share. Columns c are a superblock's (block j covers 32j .. 32j + 31).

/** Nibble plane bytes 64v + 4r + i: nib(c) of column c = 32j + 4v + i low, of c + 16 high. */
template <class F>
void nibblePlanes(uint8_t* blk, int j, int r, F nib) {
  for (int v = 0; v < 4; v++)
    for (int i = 0; i < 4; i++) {
      const int c = 32 * j + 4 * v + i;
      blk[64 * v + 4 * r + i] = static_cast<uint8_t>((nib(c) & 0x0f) | ((nib(c + 16) & 0x0f) << 4));
    }
}

/** 2-bit plane bytes 64h + 4r + i: two(c) of columns c = e, e + 4, e + 16, e + 20 (e = 32j + 8h + i) at shifts 0, 2, 4, 6. */
template <class F>
void pairPlanes(uint8_t* blk, int j, int r, F two) {
  for (int h = 0; h < 2; h++)
    for (int i = 0; i < 4; i++) {
      const int e = 32 * j + 8 * h + i;
      blk[64 * h + 4 * r + i] = static_cast<uint8_t>(two(e) | (two(e + 4) << 2) | (two(e + 16) << 4) | (two(e + 20) << 6));
    }
}

/** 1-bit plane byte 4r + i, or-ed in: bit(c) of column c = 32j + 4v + i at bit v, of c + 16 at bit 4 + v. */
template <class F>
void bitPlane(uint8_t* blk, int j, int r, F bit) {
  for (int v = 0; v < 4; v++)
    for (int i = 0; i < 4; i++) {
      const int c = 32 * j + 4 * v + i;
      blk[4 * r + i] |= static_cast<uint8_t>((bit(c) << v) | (bit(c + 16) << (4 + v)));
    }
}

/**
 * Walks group g's blocks of a form: for each of the n column blocks, zeroes its formBytes at dst
 * (rows past the tensor's end stay zero) and calls fn(o, b, r) for each of its rows r, with o the
 * form's block and b the row's block in the file (fileBlock bytes, rows rb bytes apart).
 */
template <class F>
void forGroupBlocks(const uint8_t* src, int64_t rows, size_t rb, int64_t n, int64_t fileBlock, int64_t formBytes, int64_t g, uint8_t* dst,
                    F fn) {
  for (int64_t s = 0; s < n; s++) {
    uint8_t* o = dst + (g * n + s) * formBytes;
    std::memset(o, 0, static_cast<size_t>(formBytes));
    for (int r = 0; r < 16 && g * 16 + r < rows; r++) fn(o, src + static_cast<size_t>(g * 16 + r) * rb + s * fileBlock, r);
  }
}

/** 3-bit run bytes (q3_k_x16): val(c) of column c = 32j + 16h + 4v + i at bits 3(4r + i) of run 4h + v, or-ed in. */
template <class F>
void tripleRuns(uint8_t* blk, int j, int r, F val) {
  for (int n = 0; n < 8; n++)
    for (int i = 0; i < 4; i++) {
      const int bit = 3 * (4 * r + i), c = 32 * j + 16 * (n / 4) + 4 * (n % 4) + i;
      const unsigned v = static_cast<unsigned>(val(c)) << (bit % 8);  // up to 10 bits: two bytes
      blk[24 * n + bit / 8] |= static_cast<uint8_t>(v);
      if (v > 0xff) blk[24 * n + bit / 8 + 1] |= static_cast<uint8_t>(v >> 8);
    }
}

/**
 * The 32-column block forms (x16-forms.h): per block, the file's nibble bytes as they are (q8_0:
 * its values plus 128), the fifth bits of q5_0/q5_1 moved to their byte and bit, the f16 scales and
 * the f16 mins side by side.
 */
void interleaveBlock32(const x16::Block32& f, DType file, const uint8_t* src, int64_t rows, int64_t K, int64_t g, uint8_t* dst) {
  const int vectors = f.bytes ? 8 : 4;
  forGroupBlocks(src, rows, rowBytes(file, K), K / 32, f.fileBlock, f.size(), g, dst, [&](uint8_t* o, const uint8_t* blk, int r) {
    const uint8_t* q = blk + f.valuesAt;
    for (int v = 0; v < vectors; v++)
      for (int i = 0; i < 4; i++) o[64 * v + 4 * r + i] = static_cast<uint8_t>(q[4 * v + i] ^ (f.bytes ? 0x80 : 0));
    if (f.five) {
      const uint32_t qh = ggml::loadU32(blk + f.fifthAt);  // bit c: column c's fifth bit
      bitPlane(o + 256, 0, r, [&](int c) { return static_cast<int>((qh >> c) & 1); });
    }
    std::memcpy(o + f.scales() + 2 * r, blk, 2);
    if (f.mins) std::memcpy(o + f.minsAt() + 2 * r, blk + 2, 2);
  });
}

/** q4_k_x16, or q5_k_x16 with Five (the fifth bits after q4_k's layout). */
template <bool Five>
void interleaveK(const uint8_t* src, int64_t rows, int64_t K, int64_t g, uint8_t* dst) {
  const DType t = Five ? DType::Q5_K : DType::Q4_K;
  uint8_t u[QK];  // one superblock's values in column order (5 bits for q5_k)
  forGroupBlocks(src, rows, rowBytes(t, K), K / QK, Five ? 176 : 144, Five ? kQ5KBlock : kQ4KBlock, g, dst, [&](uint8_t* o, const uint8_t* b, int r) {
    // 64-column chunks of 32 bytes: low nibbles are the chunk's first 32 columns; q5_k's fifth
    // bits: qh[t] bit 2c (column 64c + t) and 2c + 1 (column 64c + 32 + t).
    const uint8_t* qs = b + (Five ? 48 : 16);
    for (int c = 0; c < 4; c++)
      for (int t2 = 0; t2 < 32; t2++) {
        const int h0 = Five ? ((b[16 + t2] >> (2 * c)) & 1) << 4 : 0, h1 = Five ? ((b[16 + t2] >> (2 * c + 1)) & 1) << 4 : 0;
        u[64 * c + t2] = static_cast<uint8_t>((qs[32 * c + t2] & 0x0f) | h0);
        u[64 * c + 32 + t2] = static_cast<uint8_t>((qs[32 * c + t2] >> 4) | h1);
      }
    for (int j = 0; j < 8; j++) {
      nibblePlanes(o + 256 * j, j, r, [&](int c) { return u[c]; });
      if (Five) bitPlane(o + 2368 + 64 * j, j, r, [&](int c) { return u[c] >> 4; });
    }
    std::memcpy(o + 2048 + 2 * r, b, 2);
    std::memcpy(o + 2080 + 2 * r, b + 2, 2);
    for (int j = 0; j < 8; j++) {
      int sc, m;
      ggml::q4kScaleMin(b + 4, j, &sc, &m);
      o[2112 + 16 * j + r] = static_cast<uint8_t>(sc);
      o[2240 + 32 * (j / 2) + 2 * r + j % 2] = static_cast<uint8_t>(m);
    }
  });
}

/** Column e (< 256) of a q6_k superblock's 6-bit values (ggml's layout: 128-column halves). */
inline int q6kValue(const uint8_t* b, int e) {
  const uint8_t* ql = b + 64 * (e / 128);
  const uint8_t* qh = b + 128 + 32 * (e / 128);
  const int quarter = e % 128 / 32, t = e % 32;
  const int low = (ql[t + 32 * (quarter & 1)] >> (4 * (quarter >> 1))) & 0x0f;
  return low | (((qh[t] >> (2 * quarter)) & 3) << 4);
}

void interleaveQ6_K(const uint8_t* src, int64_t rows, int64_t K, int64_t g, uint8_t* dst) {
  uint8_t u[QK];
  forGroupBlocks(src, rows, rowBytes(DType::Q6_K, K), K / QK, 210, kQ6KBlock, g, dst, [&](uint8_t* o, const uint8_t* b, int r) {
    for (int e = 0; e < QK; e++) u[e] = static_cast<uint8_t>(q6kValue(b, e));
    for (int j = 0; j < 8; j++) {
      nibblePlanes(o + 384 * j, j, r, [&](int c) { return u[c]; });
      pairPlanes(o + 384 * j + 256, j, r, [&](int c) { return u[c] >> 4; });
    }
    for (int t = 0; t < 16; t++) o[3072 + 16 * t + r] = b[192 + t];
    std::memcpy(o + 3328 + 2 * r, b + 208, 2);
  });
}

void interleaveIQ4_XS(const uint8_t* src, int64_t rows, int64_t K, int64_t g, uint8_t* dst) {
  forGroupBlocks(src, rows, rowBytes(DType::IQ4_XS, K), K / QK, 136, kIQ4XSBlock, g, dst, [&](uint8_t* o, const uint8_t* b, int r) {
    for (int j = 0; j < 8; j++) {
      // Sub-block j's 16 bytes hold column i in the low nibble and 16 + i in the high one, as q4_0's.
      for (int v = 0; v < 4; v++)
        for (int i = 0; i < 4; i++) o[256 * j + 64 * v + 4 * r + i] = b[8 + 16 * j + 4 * v + i];
      o[2048 + 16 * j + r] = static_cast<uint8_t>(static_cast<int8_t>(ggml::iq4xsScale(b, j)));
    }
    std::memcpy(o + 2176 + 2 * r, b, 2);
  });
}

void interleaveQ3_K(const uint8_t* src, int64_t rows, int64_t K, int64_t g, uint8_t* dst) {
  uint8_t u[QK];
  forGroupBlocks(src, rows, rowBytes(DType::Q3_K, K), K / QK, 110, kQ3KBlock, g, dst, [&](uint8_t* o, const uint8_t* b, int r) {
    for (int e = 0; e < QK; e++) u[e] = static_cast<uint8_t>(ggml::q3kValue(b, e));
    for (int j = 0; j < 8; j++) tripleRuns(o + 192 * j, j, r, [&](int c) { return u[c]; });
    for (int t = 0; t < 16; t++) o[1536 + 16 * t + r] = static_cast<uint8_t>(static_cast<int8_t>(ggml::q3kScale(b, t)));
    std::memcpy(o + 1792 + 2 * r, b + 108, 2);
  });
}

void interleaveQ2_K(const uint8_t* src, int64_t rows, int64_t K, int64_t g, uint8_t* dst) {
  forGroupBlocks(src, rows, rowBytes(DType::Q2_K, K), K / QK, 84, kQ2KBlock, g, dst, [&](uint8_t* o, const uint8_t* b, int r) {
    for (int j = 0; j < 8; j++) pairPlanes(o + 128 * j, j, r, [&](int c) { return ggml::twoBits(b + 16, c); });
    for (int t = 0; t < 16; t++) {
      o[1024 + 16 * t + r] = b[t] & 0x0f;
      o[1280 + 32 * (t / 2) + 2 * r + t % 2] = b[t] >> 4;
    }
    std::memcpy(o + 1536 + 2 * r, b + 80, 2);
    std::memcpy(o + 1568 + 2 * r, b + 82, 2);
  });
}

/** f32 / f16 / bf16: element k of row r at 16k + r of its group (eb bytes each). */
void interleaveFloat(const uint8_t* src, int64_t rows, int64_t K, int64_t g, size_t eb, uint8_t* dst) {
  uint8_t* o = dst + static_cast<size_t>(g * K) * 16 * eb;
  std::memset(o, 0, static_cast<size_t>(K) * 16 * eb);
  for (int r = 0; r < 16 && g * 16 + r < rows; r++) {
    const uint8_t* row = src + static_cast<size_t>(g * 16 + r) * K * eb;
    for (int64_t k = 0; k < K; k++) std::memcpy(o + (static_cast<size_t>(k) * 16 + r) * eb, row + k * eb, eb);
  }
}

}  // namespace

void repackRows(Context& ctx, DType t, const uint8_t* src, int64_t rows, int64_t K, uint8_t* dst) {
  DType rt;
  if (!repackedType(t, K, &rt)) return;
  const int64_t groups = storedRows(rt, rows) / kInterleave;
  ctx.pool.parallelFor(groups, [&](int64_t g, int) {
    if (t == DType::F32 || t == DType::F16 || t == DType::BF16) interleaveFloat(src, rows, K, g, t == DType::F32 ? 4 : 2, dst);
    else if (const x16::Block32* f = x16::block32Of(rt)) interleaveBlock32(*f, t, src, rows, K, g, dst);
    else if (t == DType::Q6_K) interleaveQ6_K(src, rows, K, g, dst);
    else if (t == DType::IQ4_XS) interleaveIQ4_XS(src, rows, K, g, dst);
    else if (t == DType::Q3_K) interleaveQ3_K(src, rows, K, g, dst);
    else if (t == DType::Q2_K) interleaveQ2_K(src, rows, K, g, dst);
    else if (t == DType::Q5_K) interleaveK<true>(src, rows, K, g, dst);
    else interleaveK<false>(src, rows, K, g, dst);
  });
}

}  // namespace stepwise
