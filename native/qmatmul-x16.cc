// GEMM for the interleaved quantized forms of qrepack.cc (AVX-512 build; layouts: x16-forms.h):
// out[m][n] = sum_k x[m][k] W[n][k], with x quantized to int8 here (quantizeActRow: QActBlock,
// qblocks.h), as for the lane form.
//
// Outputs in lanes. A 64-byte weight vector holds 4 columns of 16 rows; the activation's 4 bytes
// of those columns are broadcast, and one vpdpbusd adds 4 products into each of the 16 rows'
// integer sums. A tile is NG groups of 16 rows by MR activation rows; the broadcasts serve all NG
// groups and each unpacked weight vector all MR rows. Per 32-column block the exact integer sums
// become floats once, for 16 rows at a time:
//   q4_0, q8_0, q5_0, iq4_nl:  acc += float(sum(u * q) - off * sum(q)) * (d_w[rows] * d_x)
//          (off 8, 128, 16, 128; iq4_nl's u looked up in its table);  q4_1, q5_1 add
//          min_w[rows] * (d_x * sum(q))
//   q4_k (q5_k: the fifth bit or-ed in):  per superblock  f = sum over sub-blocks j of float(sum_j(u * q)) * sc_j[rows], then
//          acc += f * (d[rows] * d_x) - float(sum_j m_j[rows] * sum_j(q)) * (dmin[rows] * d_x)
// (the min term's integer sum by 16-bit dot products of min pairs with sub-block sum pairs);
//   q6_k (q3_k, q2_k: 3- and 2-bit values, offsets 4 and 0):  per superblock  t = sum over
//          16-column sub-blocks of (sum(u * q) - off * sum(q)) * sc[rows] in integers, then
//          acc += float(t) * (d[rows] * d_x);  q2_k subtracts its mins as q4_k does
//   iq4_xs:  as q6_k over 32-column sub-blocks of table values (offset 128)
// Against the lane form (qmatmul.cc) this is one float step per 512 products instead of one per
// 256 of a single (row, activation row) pair, and no horizontal fold at the end.
//
// Batch invariance: an output's integer sums are exact, and its float operations are the same
// sequence (blocks in column order) whatever the tile shape, M, thread or chunk of activation rows
// computed it; rows only sit in different lanes of different vectors.
#include <algorithm>

#include "ggml-blocks.h"
#include "kernels.h"
#include "qblocks.h"
#include "simd.h"
#include "x16-forms.h"

#if STEPWISE_AVX512

namespace stepwise {
namespace {

using x16::kQ4KBlock;
using x16::kQ5KBlock;
using x16::kQ6KBlock;
using x16::kIQ4XSBlock;
using x16::kQ3KBlock;
using x16::kQ2KBlock;
constexpr int NG = 4;                    // groups per tile, at most (2 unless one activation row: decode)
constexpr int MR40 = 6;                  // activation rows per tile, q4_0 and q8_0
constexpr int MR4K = 4;                  // the k-quants keep a third accumulator per pair
constexpr int64_t MC = 96;               // activation rows per task: a multiple of both MRs
constexpr int64_t kRowSplit = 128;       // from this many activation rows, tasks split the rows (see qmatmulX16)

/** What the tiles need of an activation block besides its bytes. */
struct XSummary {
  float d;       // its scale
  int32_t v[4];  // 32-column blocks: v[0] = -off * sum(q);  q4_k: sub-block sums of q as 16-bit pairs (2p, 2p+1)
  float ms;      // 32-column blocks: d * sum(q), which the weights' mins multiply (q4_1, q5_1)
};

/** 4 activation bytes as one 32-bit lane, for a broadcast. */
inline int32_t load4(const int8_t* p) { return static_cast<int32_t>(ggml::loadU32(reinterpret_cast<const uint8_t*>(p))); }

/** The nibbles of one weight vector: columns 4v..4v+3 (low) and 16+4v.. (high) of 16 rows. */
__attribute__((always_inline)) inline void nibbles(const uint8_t* p, __m512i* lo, __m512i* hi) {
  const __m512i mask = _mm512_set1_epi8(0x0f);
  const __m512i raw = _mm512_loadu_si512(p);
  *lo = _mm512_and_si512(raw, mask);
  *hi = _mm512_and_si512(_mm512_srli_epi16(raw, 4), mask);
}

/**
 * isum[g][m] += the products of one 32-column block: `blk[g]` its weight bytes per group, `q[m]`
 * the activation rows' lane-ordered bytes at that block (columns 4v + i of it sit at 64v + i,
 * columns 16 + 4v + i at 64v + 4 + i; qblocks.h). Bytes: 8 vectors of whole bytes (q8_0), else 4
 * of nibble pairs.
 */
template <bool Bytes, int G, int MR, bool Five = false, bool Table = false>
__attribute__((always_inline)) inline void blockSums(const uint8_t* const* blk, const int8_t* const* q, __m512i (&isum)[NG][MR],
                                                     const uint8_t* const* high = nullptr) {
  if constexpr (Bytes) {
    for (int v = 0; v < 8; v++) {
      __m512i u[G];
      for (int g = 0; g < G; g++) u[g] = _mm512_loadu_si512(blk[g] + 64 * v);
      for (int m = 0; m < MR; m++) {
        const __m512i xv = _mm512_set1_epi32(load4(q[m] + 64 * (v % 4) + 4 * (v / 4)));
        for (int g = 0; g < G; g++) isum[g][m] = _mm512_dpbusd_epi32(isum[g][m], u[g], xv);
      }
    }
    return;
  }
  for (int v = 0; v < 4; v++) {
    __m512i lo[G], hi[G];
    for (int g = 0; g < G; g++) {
      nibbles(blk[g] + 64 * v, &lo[g], &hi[g]);
      if constexpr (Five) {
        // q5_k: bit v of the high byte is column 4v+i's fifth bit, bit 4+v column 16+4v+i's; both
        // moved to bit 4 (16-bit shifts of at most 4: only bit 4 of each byte is kept).
        const __m512i hb = _mm512_loadu_si512(high[g]), b4 = _mm512_set1_epi8(0x10);
        const __m512i hl = v == 0 ? _mm512_slli_epi16(hb, 4) : v == 1 ? _mm512_slli_epi16(hb, 3) : v == 2 ? _mm512_slli_epi16(hb, 2) : _mm512_slli_epi16(hb, 1);
        const __m512i hh = v == 0 ? hb : v == 1 ? _mm512_srli_epi16(hb, 1) : v == 2 ? _mm512_srli_epi16(hb, 2) : _mm512_srli_epi16(hb, 3);
        lo[g] = _mm512_or_si512(lo[g], _mm512_and_si512(hl, b4));
        hi[g] = _mm512_or_si512(hi[g], _mm512_and_si512(hh, b4));
      }
      if constexpr (Table) {
        // iq4_nl: the nibbles index ggml's 16 values (plus 128, unsigned for VNNI), in every 128-bit lane.
        const __m512i tbl = _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(ggml::kIq4nlUnsigned.v)));
        lo[g] = _mm512_shuffle_epi8(tbl, lo[g]);
        hi[g] = _mm512_shuffle_epi8(tbl, hi[g]);
      }
    }
    for (int m = 0; m < MR; m++) {
      const __m512i xl = _mm512_set1_epi32(load4(q[m] + 64 * v)), xh = _mm512_set1_epi32(load4(q[m] + 64 * v + 4));
      for (int g = 0; g < G; g++) {
        isum[g][m] = _mm512_dpbusd_epi32(isum[g][m], lo[g], xl);
        isum[g][m] = _mm512_dpbusd_epi32(isum[g][m], hi[g], xh);
      }
    }
  }
}

/**
 * G groups x MR activation rows of a 32-column block form F (x16-forms.h). w: the first group's
 * bytes; x: the first activation row's superblocks (rows nsb apart); xs: its block summaries (rows
 * nb apart); out: row 0's outputs of the tile's first weight row (rows ldo apart); rows: the tile's
 * weight rows that exist; wEnd: the end of the weights, which prefetches stay before.
 */
template <const x16::Block32& F, int G, int MR>
void tileBlock32(const uint8_t* w, int64_t nb, const QActBlock* x, int64_t nsb, const XSummary* xs, float* out, int64_t ldo, int rows,
                 const uint8_t* wEnd) {
  constexpr int64_t blockBytes = F.size(), scales = F.scales();
  __m512 acc[NG][MR];
  for (int g = 0; g < G; g++)
    for (int m = 0; m < MR; m++) acc[g][m] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; b++) {
    __m512i isum[NG][MR];
    const int8_t* q[MR];
    for (int m = 0; m < MR; m++) {
      const __m512i init = _mm512_set1_epi32(xs[m * nb + b].v[0]);  // -off * sum(q): exact either way
      for (int g = 0; g < G; g++) isum[g][m] = init;
      q[m] = x[m * nsb + b / 8].q + 8 * (b % 8);
    }
    const uint8_t* blk[NG];
    const uint8_t* high[NG];
    for (int g = 0; g < G; g++) {
      blk[g] = w + (g * nb + b) * blockBytes;
      high[g] = blk[g] + 256;  // q5_0, q5_1: the fifth bits
    }
    // One activation row (decode) is a stream of weights: 12 blocks (3.4 KB) ahead in every group, so
    // enough loads are in flight when both cores stream (4 blocks ahead: q4_0 on 2 threads 0.33 ms
    // for the 32000x768 output matrix, 12: 0.285 ms). Near a group's end, the same block of the
    // next tile's group: the tiles of a one-row task follow each other in memory.
    if constexpr (MR == 1)
      for (int g = 0; g < G; g++) {
        const uint8_t* p = blk[g] + 12 * blockBytes + (b + 12 < nb ? 0 : (G - 1) * nb * blockBytes);
        if (p < wEnd) prefetchBytes(p, blockBytes);
      }
    blockSums<F.bytes, G, MR, F.five, F.table>(blk, q, isum, high);
    for (int g = 0; g < G; g++) {
      const __m512 ws = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk[g] + scales)));
      for (int m = 0; m < MR; m++)
        acc[g][m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[g][m]), _mm512_mul_ps(ws, _mm512_set1_ps(xs[m * nb + b].d)), acc[g][m]);
      if constexpr (F.mins) {
        // w = d * q + min: the min times the block's activation sum, d_x * sum(q).
        const __m512 wm = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk[g] + F.minsAt())));
        for (int m = 0; m < MR; m++) acc[g][m] = _mm512_fmadd_ps(wm, _mm512_set1_ps(xs[m * nb + b].ms), acc[g][m]);
      }
    }
  }
  for (int g = 0; g < G; g++)
    for (int m = 0; m < MR; m++) storeRows16(out + m * ldo + 16 * g, acc[g][m], rows - 16 * g);
}

/**
 * One activation row (decode) of a superblock form: sub-block j's eighth of the next superblock of
 * the group at sb (two ahead measured slower on one thread and no faster on two); after a group's
 * last, the first of the next tile's group, since the tiles of a one-row task follow each other in
 * memory. Never at or past wEnd.
 */
template <int64_t Bytes, int G>
__attribute__((always_inline)) inline void prefetchNextSuperblock(const uint8_t* sb, int64_t s, int64_t nsb, int j, const uint8_t* wEnd) {
  constexpr int64_t share = (Bytes / 8 + 63) / 64 * 64;  // whole lines; the last shares may be short or empty
  const int64_t n = std::min<int64_t>(share, Bytes - j * share);
  const uint8_t* p = sb + Bytes + j * share + (s + 1 < nsb ? 0 : (G - 1) * nsb * Bytes);
  if (n > 0 && p < wEnd) prefetchBytes(p, static_cast<size_t>(n));
}

/** tileBlock32 for q4_k_x16 (and q5_k_x16: Five); xs: one summary per superblock (rows nsb apart). */
template <bool Five, int G, int MR>
void tileQ4_K(const uint8_t* w, int64_t /*nb*/, const QActBlock* x, int64_t nsb, const XSummary* xs, float* out, int64_t ldo, int rows,
              const uint8_t* wEnd) {
  __m512 acc[NG][MR];
  for (int g = 0; g < G; g++)
    for (int m = 0; m < MR; m++) acc[g][m] = _mm512_setzero_ps();
  for (int64_t s = 0; s < nsb; s++) {
    const uint8_t* sb[NG];
    for (int g = 0; g < G; g++) sb[g] = w + (g * nsb + s) * (Five ? kQ5KBlock : kQ4KBlock);
    __m512 f[NG][MR];
    for (int g = 0; g < G; g++)
      for (int m = 0; m < MR; m++) f[g][m] = _mm512_setzero_ps();
    for (int j = 0; j < 8; j++) {
      __m512i isum[NG][MR];
      const int8_t* q[MR];
      for (int m = 0; m < MR; m++) q[m] = x[m * nsb + s].q + 8 * j;
      for (int g = 0; g < G; g++)
        for (int m = 0; m < MR; m++) isum[g][m] = _mm512_setzero_si512();
      const uint8_t* blk[NG];
      const uint8_t* high[NG];
      for (int g = 0; g < G; g++) {
        blk[g] = sb[g] + 256 * j;
        high[g] = sb[g] + 2368 + 64 * j;
      }
      if constexpr (MR == 1)
        for (int g = 0; g < G; g++) prefetchNextSuperblock<Five ? kQ5KBlock : kQ4KBlock, G>(sb[g], s, nsb, j, wEnd);
      blockSums<false, G, MR, Five>(blk, q, isum, high);
      for (int g = 0; g < G; g++) {
        const __m512 sc = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sb[g] + 2112 + 16 * j))));
        for (int m = 0; m < MR; m++) f[g][m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[g][m]), sc, f[g][m]);
      }
    }
    for (int g = 0; g < G; g++) {
      const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sb[g] + 2048)));
      const __m512 dmin = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sb[g] + 2080)));
      __m512i mins[MR];
      for (int m = 0; m < MR; m++) mins[m] = _mm512_setzero_si512();
      for (int p = 0; p < 4; p++) {
        const __m512i mp = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sb[g] + 2240 + 32 * p)));
        for (int m = 0; m < MR; m++) mins[m] = _mm512_dpwssd_epi32(mins[m], mp, _mm512_set1_epi32(xs[m * nsb + s].v[p]));
      }
      for (int m = 0; m < MR; m++) {
        const __m512 xd = _mm512_set1_ps(xs[m * nsb + s].d);
        acc[g][m] = _mm512_fmadd_ps(f[g][m], _mm512_mul_ps(d, xd), acc[g][m]);
        acc[g][m] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(mins[m]), _mm512_mul_ps(dmin, xd), acc[g][m]);
      }
    }
  }
  for (int g = 0; g < G; g++)
    for (int m = 0; m < MR; m++) storeRows16(out + m * ldo + 16 * g, acc[g][m], rows - 16 * g);
}

/**
 * The 6-bit values of q6_k_x16's 32-column block at `blk`, vector v (columns 4v..4v+3 if !hi, else
 * 16+4v..): 4 low bits from the nibble vector, 2 high bits moved from their pair byte to bits 4-5
 * (16-bit shifts: what crosses a byte boundary is masked off).
 */
template <bool Hi>
__attribute__((always_inline)) inline __m512i q6Values(const uint8_t* blk, int v) {
  const __m512i m4 = _mm512_set1_epi8(0x0f), m2 = _mm512_set1_epi8(0x30);
  const __m512i nib = _mm512_loadu_si512(blk + 64 * v), hb = _mm512_loadu_si512(blk + 256 + 64 * (v / 2));
  const bool odd = v % 2;
  const __m512i low = Hi ? _mm512_and_si512(_mm512_srli_epi16(nib, 4), m4) : _mm512_and_si512(nib, m4);
  const __m512i high = Hi ? (odd ? _mm512_srli_epi16(hb, 2) : hb) : (odd ? _mm512_slli_epi16(hb, 2) : _mm512_slli_epi16(hb, 4));
  return _mm512_or_si512(low, _mm512_and_si512(high, m2));
}

/**
 * q3_k_x16's 3-bit values of its 32-column block at `blk`, vector v (as q6Values): the vector's
 * 24-byte run holds value b at bits 3b..3b+2. A byte permute gives each 8-byte lane its 3 bytes
 * (values 8l..8l+7), a multishift puts value 8l + k's bits at the bottom of byte k, a mask clears
 * the rest: three operations where the two-plane form took six shifts and masks.
 */
template <bool Hi>
__attribute__((always_inline)) inline __m512i q3Values(const uint8_t* blk, int v) {
  constexpr auto lane = [](int64_t l) { return 3 * l | (3 * l + 1) << 8 | (3 * l + 2) << 16; };  // bytes 3l, 3l+1, 3l+2
  const __m512i spread = _mm512_set_epi64(lane(7), lane(6), lane(5), lane(4), lane(3), lane(2), lane(1), lane(0));
  const __m512i shifts = _mm512_set1_epi64(0x15120f0c09060300);  // byte k: bit 3k
  const __m512i run = _mm512_loadu_si512(blk + 24 * (v + (Hi ? 4 : 0)));  // 64 bytes, within the superblock: scales follow
  return _mm512_and_si512(_mm512_multishift_epi64_epi8(shifts, _mm512_permutexvar_epi8(spread, run)), _mm512_set1_epi8(7));
}

/** q2_k_x16's 2-bit values, in q6_k_x16's high-pair layout. */
template <bool Hi>
__attribute__((always_inline)) inline __m512i q2Values(const uint8_t* blk, int v) {
  return _mm512_and_si512(_mm512_srli_epi16(_mm512_loadu_si512(blk + 64 * (v / 2)), 2 * (v % 2) + (Hi ? 4 : 0)), _mm512_set1_epi8(3));
}

/**
 * The 16-column sub-block forms (tile16): where their parts lie, and their values. mins: q2_k's
 * 4-bit sub-block mins as 16-bit pairs at `mins` (32p + 2r + t: sub-block 2p + t), and its f16
 * dmin at `dmin`.
 */
struct Q6KForm {
  static constexpr int64_t bytes = kQ6KBlock, block = 384, scales = 3072, d = 3328, mins = 0, dmin = 0;
  template <bool Hi>
  static __m512i values(const uint8_t* blk, int v) { return q6Values<Hi>(blk, v); }
};
struct Q3KForm {
  static constexpr int64_t bytes = kQ3KBlock, block = 192, scales = 1536, d = 1792, mins = 0, dmin = 0;
  template <bool Hi>
  static __m512i values(const uint8_t* blk, int v) { return q3Values<Hi>(blk, v); }
};
struct Q2KForm {
  static constexpr int64_t bytes = kQ2KBlock, block = 128, scales = 1024, d = 1536, mins = 1280, dmin = 1568;
  template <bool Hi>
  static __m512i values(const uint8_t* blk, int v) { return q2Values<Hi>(blk, v); }
};

/**
 * tileBlock32 for the 16-column sub-block forms (q6_k_x16, q3_k_x16, q2_k_x16). A sub-block has its
 * own int8 scale, so its exact sum (the offset, 32, 4 or 0, removed) is scaled in integers and
 * summed over the superblock (|total| < 2^29), which goes to float once: acc += float(total) *
 * (d[rows] * d_x). q2_k's mins: the integer sum of min * (the sub-block's activation sum) by 16-bit
 * dot products of pairs, then acc -= float(that) * (dmin[rows] * d_x), as q4_k's.
 */
template <class F, int G, int MR>
void tile16(const uint8_t* w, int64_t /*nb*/, const QActBlock* x, int64_t nsb, const XSummary* /*xs*/, float* out, int64_t ldo, int rows,
            const uint8_t* wEnd) {
  __m512 acc[NG][MR];
  for (int g = 0; g < G; g++)
    for (int m = 0; m < MR; m++) acc[g][m] = _mm512_setzero_ps();
  for (int64_t s = 0; s < nsb; s++) {
    const uint8_t* sb[NG];
    for (int g = 0; g < G; g++) sb[g] = w + (g * nsb + s) * F::bytes;
    __m512i total[NG][MR];
    for (int g = 0; g < G; g++)
      for (int m = 0; m < MR; m++) total[g][m] = _mm512_setzero_si512();
    for (int j = 0; j < 8; j++) {
      if constexpr (MR == 1)
        for (int g = 0; g < G; g++) prefetchNextSuperblock<F::bytes, G>(sb[g], s, nsb, j, wEnd);
      for (int hi = 0; hi < 2; hi++) {
        const int lane = 2 * j + hi;  // the 16-column sub-block, as a lane of the activation (qblocks.h)
        __m512i isum[NG][MR];
        for (int m = 0; m < MR; m++) {
          const __m512i init = _mm512_set1_epi32(-x[m * nsb + s].off[lane]);  // -off * sum(q)
          for (int g = 0; g < G; g++) isum[g][m] = init;
        }
        for (int v = 0; v < 4; v++) {
          __m512i u[NG];
          for (int g = 0; g < G; g++) u[g] = hi ? F::template values<true>(sb[g] + F::block * j, v) : F::template values<false>(sb[g] + F::block * j, v);
          for (int m = 0; m < MR; m++) {
            const __m512i xv = _mm512_set1_epi32(load4(x[m * nsb + s].q + 64 * v + 8 * j + 4 * hi));
            for (int g = 0; g < G; g++) isum[g][m] = _mm512_dpbusd_epi32(isum[g][m], u[g], xv);
          }
        }
        for (int g = 0; g < G; g++) {
          const __m512i sc = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sb[g] + F::scales + 16 * lane)));
          for (int m = 0; m < MR; m++) total[g][m] = _mm512_add_epi32(total[g][m], _mm512_mullo_epi32(isum[g][m], sc));
        }
      }
    }
    for (int g = 0; g < G; g++) {
      const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sb[g] + F::d)));
      for (int m = 0; m < MR; m++)
        acc[g][m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(total[g][m]), _mm512_mul_ps(d, _mm512_set1_ps(x[m * nsb + s].d[0])), acc[g][m]);
      if constexpr (F::mins != 0) {
        __m512i mins[MR];
        for (int m = 0; m < MR; m++) mins[m] = _mm512_setzero_si512();
        for (int p = 0; p < 8; p++) {
          const __m512i mp = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sb[g] + F::mins + 32 * p)));
          for (int m = 0; m < MR; m++) {
            const int32_t* sum = x[m * nsb + s].sum;  // lane sums, |sum| <= 16 * 127: 16-bit pairs
            const uint32_t pair = static_cast<uint16_t>(sum[2 * p]) | (static_cast<uint32_t>(static_cast<uint16_t>(sum[2 * p + 1])) << 16);
            mins[m] = _mm512_dpwssd_epi32(mins[m], mp, _mm512_set1_epi32(static_cast<int32_t>(pair)));
          }
        }
        const __m512 dmin = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sb[g] + F::dmin)));
        for (int m = 0; m < MR; m++)
          acc[g][m] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(mins[m]), _mm512_mul_ps(dmin, _mm512_set1_ps(x[m * nsb + s].d[0])), acc[g][m]);
      }
    }
  }
  for (int g = 0; g < G; g++)
    for (int m = 0; m < MR; m++) storeRows16(out + m * ldo + 16 * g, acc[g][m], rows - 16 * g);
}

/**
 * tileBlock32 for iq4_xs_x16: as tile16, but 32-column sub-blocks of table values (offset 128)
 * whose scales (ls - 32) multiply the exact sums in integers (|total| < 2^28), then float once.
 */
template <int G, int MR>
void tileIQ4_XS(const uint8_t* w, int64_t /*nb*/, const QActBlock* x, int64_t nsb, const XSummary* /*xs*/, float* out, int64_t ldo, int rows,
                const uint8_t* wEnd) {
  __m512 acc[NG][MR];
  for (int g = 0; g < G; g++)
    for (int m = 0; m < MR; m++) acc[g][m] = _mm512_setzero_ps();
  for (int64_t s = 0; s < nsb; s++) {
    const uint8_t* sb[NG];
    for (int g = 0; g < G; g++) sb[g] = w + (g * nsb + s) * kIQ4XSBlock;
    __m512i total[NG][MR];
    for (int g = 0; g < G; g++)
      for (int m = 0; m < MR; m++) total[g][m] = _mm512_setzero_si512();
    for (int j = 0; j < 8; j++) {
      if constexpr (MR == 1)
        for (int g = 0; g < G; g++) prefetchNextSuperblock<kIQ4XSBlock, G>(sb[g], s, nsb, j, wEnd);
      __m512i isum[NG][MR];
      const int8_t* q[MR];
      for (int m = 0; m < MR; m++) {
        const QActBlock& a = x[m * nsb + s];
        const __m512i init = _mm512_set1_epi32(-(a.off[2 * j] + a.off[2 * j + 1]));  // -128 * sum(q)
        for (int g = 0; g < G; g++) isum[g][m] = init;
        q[m] = a.q + 8 * j;
      }
      const uint8_t* blk[NG];
      for (int g = 0; g < G; g++) blk[g] = sb[g] + 256 * j;
      blockSums<false, G, MR, false, true>(blk, q, isum);
      for (int g = 0; g < G; g++) {
        const __m512i sc = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sb[g] + 2048 + 16 * j)));
        for (int m = 0; m < MR; m++) total[g][m] = _mm512_add_epi32(total[g][m], _mm512_mullo_epi32(isum[g][m], sc));
      }
    }
    for (int g = 0; g < G; g++) {
      const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sb[g] + 2176)));
      for (int m = 0; m < MR; m++)
        acc[g][m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(total[g][m]), _mm512_mul_ps(d, _mm512_set1_ps(x[m * nsb + s].d[0])), acc[g][m]);
    }
  }
  for (int g = 0; g < G; g++)
    for (int m = 0; m < MR; m++) storeRows16(out + m * ldo + 16 * g, acc[g][m], rows - 16 * g);
}

using TileFn = void (*)(const uint8_t*, int64_t, const QActBlock*, int64_t, const XSummary*, float*, int64_t, int, const uint8_t*);

template <const x16::Block32& F>
struct B32 {
  template <int G, int MR>
  struct T {
    static constexpr TileFn fn = tileBlock32<F, G, MR>;
  };
};
template <class F>
struct Sub16 {
  template <int G, int MR>
  struct T {
    static constexpr TileFn fn = tile16<F, G, MR>;
  };
};
template <bool Five>
struct K45 {
  template <int G, int MR>
  struct T {
    static constexpr TileFn fn = tileQ4_K<Five, G, MR>;
  };
};
template <int G, int MR>
struct IQ4XS {
  static constexpr TileFn fn = tileIQ4_XS<G, MR>;
};

template <template <int, int> class T, int... Ms>
constexpr TileFn kTiles[NG][sizeof...(Ms)] = {{T<1, Ms>::fn...}, {T<2, Ms>::fn...}, {T<3, Ms>::fn...}, {T<4, Ms>::fn...}};

/** The tile of type dt for ng groups and n activation rows. */
TileFn tileFor(DType dt, int ng, int n) {
  switch (dt) {
    case DType::Q4_K_X16: return kTiles<K45<false>::T, 1, 2, 3, 4>[ng - 1][n - 1];
    case DType::Q5_K_X16: return kTiles<K45<true>::T, 1, 2, 3, 4>[ng - 1][n - 1];
    case DType::Q6_K_X16: return kTiles<Sub16<Q6KForm>::T, 1, 2, 3, 4>[ng - 1][n - 1];
    case DType::IQ4_XS_X16: return kTiles<IQ4XS, 1, 2, 3, 4>[ng - 1][n - 1];
    case DType::Q3_K_X16: return kTiles<Sub16<Q3KForm>::T, 1, 2, 3, 4>[ng - 1][n - 1];
    case DType::Q2_K_X16: return kTiles<Sub16<Q2KForm>::T, 1, 2, 3, 4>[ng - 1][n - 1];
    case DType::Q8_0_X16: return kTiles<B32<x16::kQ8_0>::T, 1, 2, 3, 4, 5, 6>[ng - 1][n - 1];
    case DType::Q4_1_X16: return kTiles<B32<x16::kQ4_1>::T, 1, 2, 3, 4, 5, 6>[ng - 1][n - 1];
    case DType::Q5_0_X16: return kTiles<B32<x16::kQ5_0>::T, 1, 2, 3, 4, 5, 6>[ng - 1][n - 1];
    case DType::Q5_1_X16: return kTiles<B32<x16::kQ5_1>::T, 1, 2, 3, 4, 5, 6>[ng - 1][n - 1];
    case DType::IQ4_NL_X16: return kTiles<B32<x16::kIQ4_NL>::T, 1, 2, 3, 4, 5, 6>[ng - 1][n - 1];
    default: return kTiles<B32<x16::kQ4_0>::T, 1, 2, 3, 4, 5, 6>[ng - 1][n - 1];
  }
}

/** Summaries of M activation rows: per 32-column block (q4_0) or per superblock (q4_k). */
void summarize(const QActBlock* xq, int64_t M, int64_t nsb, int64_t nb, bool k, XSummary* xs) {
  for (int64_t m = 0; m < M; m++) {
    for (int64_t s = 0; s < nsb; s++) {
      const QActBlock& a = xq[m * nsb + s];
      if (k) {
        XSummary& o = xs[m * nsb + s];
        o.d = a.d[0];
        for (int p = 0; p < 4; p++) {
          const int32_t lo = a.sum[4 * p] + a.sum[4 * p + 1], hi = a.sum[4 * p + 2] + a.sum[4 * p + 3];
          o.v[p] = static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint16_t>(lo)) | (static_cast<uint32_t>(static_cast<uint16_t>(hi)) << 16));
        }
      } else {
        for (int j = 0; j < 8 && s * 8 + j < nb; j++) {
          XSummary& o = xs[m * nb + s * 8 + j];
          o.d = a.d[2 * j];
          o.v[0] = -(a.off[2 * j] + a.off[2 * j + 1]);
          o.ms = o.d * static_cast<float>(a.sum[2 * j] + a.sum[2 * j + 1]);
        }
      }
    }
  }
}

}  // namespace

void qmatmulX16(Context& ctx, float* out, const float* x, const uint8_t* w, DType dt, int64_t N, int64_t K, int64_t M) {
  const WeightPart part{w, N, out};
  qmatmulX16Parts(ctx, &part, 1, x, dt, K, M);
}

void qmatmulX16Parts(Context& ctx, const WeightPart* parts, int nParts, const float* x, DType dt, int64_t K, int64_t M) {
  const QTypeInfo qi = qtypeInfo(dt);
  const x16::Block32* b32 = x16::block32Of(dt);
  const bool k = !b32;  // q2_k, q3_k, q4_k, q5_k, q6_k, iq4_xs: 256-column superblocks
  const int64_t nsb = numSuperblocks(K);
  const int64_t nb = k ? nsb : K / 32;      // summaries per activation row
  const int64_t groupBytes = dt == DType::Q4_K_X16   ? nsb * kQ4KBlock
                             : dt == DType::Q5_K_X16 ? nsb * kQ5KBlock
                             : dt == DType::Q6_K_X16 ? nsb * kQ6KBlock
                             : dt == DType::IQ4_XS_X16 ? nsb * kIQ4XSBlock
                             : dt == DType::Q3_K_X16 ? nsb * kQ3KBlock
                             : dt == DType::Q2_K_X16 ? nsb * kQ2KBlock
                                                     : nb * b32->size();
  const int mr = k ? MR4K : MR40;
  const bool summaries = dt == DType::Q4_K_X16 || dt == DType::Q5_K_X16 || b32;  // the others' tiles read the activation blocks alone
  if (ctx.qact.size() < static_cast<size_t>(M * nsb)) ctx.qact.resize(static_cast<size_t>(M * nsb));
  if (ctx.qsummary.size() < static_cast<size_t>(M * nb) * sizeof(XSummary)) ctx.qsummary.resize(static_cast<size_t>(M * nb) * sizeof(XSummary));
  QActBlock* xq = ctx.qact.data();
  XSummary* xs = reinterpret_cast<XSummary*>(ctx.qsummary.data());
  // Activation rows m0..m1-1 quantized and summarized.
  const auto prepare = [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; m++) quantizeActRow(x + m * K, K, qi.group, qi.off, xq + m * nsb);
    if (summaries) summarize(xq + m0 * nsb, m1 - m0, nsb, nb, k, xs + m0 * nb);
  };

  // One activation row has no broadcasts to share: 4 groups give 4 independent chains of sums
  // and 4 weight streams in flight. More rows take 2 groups, so the accumulators fit in registers.
  const int ngTile = M == 1 ? 4 : 2;
  const PartGroups pg(parts, nParts, ngTile);
  // Rows m0..m1-1 times groups gA..gB-1 of part i, in tiles of up to ngTile groups.
  const auto multiply = [&](int64_t m0, int64_t m1, int i, int64_t gA, int64_t gB) {
    const WeightPart& p = parts[i];
    const uint8_t* wEnd = p.w + (p.rows + 15) / 16 * groupBytes;
    for (int64_t g0 = gA; g0 < gB; g0 += ngTile) {
      const int ng = static_cast<int>(std::min<int64_t>(ngTile, gB - g0));
      const int rows = static_cast<int>(std::min<int64_t>(16 * ng, p.rows - 16 * g0));
      for (int64_t m = m0; m < m1; m += mr) {
        const int n = static_cast<int>(std::min<int64_t>(mr, m1 - m));
        const TileFn fn = tileFor(dt, ng, n);
        fn(p.w + g0 * groupBytes, nb, xq + m * nsb, nsb, xs + m * nb, p.out + m * p.rows + 16 * g0, p.rows, rows, wEnd);
      }
    }
  };

  const int64_t threads = ctx.pool.size();
  if (M >= kRowSplit && threads > 1) {
    // Many rows (a prompt): each task takes a share of the rows, quantizes them and multiplies them
    // with every weight tile. The rows a core quantized are the rows it reads, and there is one
    // round of the pool instead of two; every task reads all the weights, which many rows amortize.
    const int64_t shares = 2 * threads;
    const int64_t per = ((M + shares - 1) / shares + mr - 1) / mr * mr;
    ctx.pool.parallelFor((M + per - 1) / per, [&](int64_t task, int) {
      const int64_t m0 = task * per, m1 = std::min(M, m0 + per);
      prepare(m0, m1);
      for (int64_t t = 0; t < pg.tiles(); t++) pg.forTile(t, [&](int i, int64_t gA, int64_t gB) { multiply(m0, m1, i, gA, gB); });
    });
    return;
  }
  if (M == 1) {
    // One row (decode): one task per thread, each a run of consecutive groups, so a thread streams
    // one stretch of memory and its prefetches run on into its next tile. Split by groups, not
    // tiles: 12 groups (768 rows) as 3 tiles of 4 would leave one of two threads a third of the
    // work. Measured on 2 threads against 2, 4 and 8 tasks per thread, alternating in one
    // process: 1 was fastest for every shape, q4_0 768x768 43 GB/s against 39, 36 and 31.
    prepare(0, 1);
    const int64_t tasks = std::min(pg.groups(), threads);
    ctx.pool.parallelFor(tasks, [&](int64_t task, int) {
      pg.forGroups(pg.groups() * task / tasks, pg.groups() * (task + 1) / tasks, [&](int i, int64_t gA, int64_t gB) { multiply(0, 1, i, gA, gB); });
    });
    return;
  }
  ctx.pool.parallelFor(M, [&](int64_t m, int) { quantizeActRow(x + m * K, K, qi.group, qi.off, xq + m * nsb); });
  if (summaries) summarize(xq, M, nsb, nb, k, xs);
  const int64_t chunks = (M + MC - 1) / MC, tiles = pg.tiles();
  ctx.pool.parallelFor(chunks * tiles, [&](int64_t task, int) {
    const int64_t m0 = (task / tiles) * MC;
    pg.forTile(task % tiles, [&](int i, int64_t gA, int64_t gB) { multiply(m0, std::min(M, m0 + MC), i, gA, gB); });
  });
}

}  // namespace stepwise

#endif
