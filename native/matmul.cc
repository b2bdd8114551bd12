// Weight x activation GEMM for floating-point weights (f32, f16, bf16): out[m][n] = sum_k x[m][k] * W[n][k].
// Quantized weights go to qmatmul.cc.
//
// Shape of the work. Threads take chunks of output features (rows of W), never a slice of the
// reduction. Inside a chunk, a micro-kernel multiplies a tile of NR=4 weight rows with MR=3 (AVX2; 6 on AVX-512)
// activation rows: per step of one vector of columns it loads 4 weight vectors and 3 activation
// vectors and issues 12 FMAs into 12 register accumulators, so each weight load serves every batch
// row of the tile and the tile loop walks all M rows while the 4 weight rows sit in L1. Weights are
// read where they lie, f16/bf16 converted to floats as they are loaded, while the next tile's rows
// are prefetched a vector per step of the arithmetic: a burst of prefetches per tile waited on full
// fill buffers and left memory idle during the FMAs, so 5 batch rows cost twice one; paced, they
// cost ~1.1x one. Rows a multiple of 4 KiB long at M > 8 are first expanded into a small float tile
// (4 rows x KC columns) per block of up to 48 batch rows (their rows would compete for the same L1
// sets). Long rows (K > 1024) are cut into KC=512 column blocks so the tile stays in L1; the lanes'
// partial sums are parked in per-thread memory between blocks, exactly, as floats.
//
// Batch invariance. Every (m, n) output is the same arithmetic whatever the tile shape or M: lane
// j of VW lanes (16 on AVX-512, 8 on AVX2 and in the scalar build) accumulates x[k]*w[k] for
// k = j, j+VW, ... in increasing k with one FMA each, the lanes are folded with a fixed tree (16
// lanes: lane i + lane i+8 first, then simd.h's 8-lane tree), and a tail of K % VW columns is added
// one by one in order. Tile shapes differ only in how many such independent chains run side by
// side; in-place and tiled weights hold the same values (conversion to float is exact).
#include <algorithm>
#include <array>
#include <utility>

#include "float-weights.h"
#include "kernels.h"
#include "simd.h"

namespace stepwise {
namespace {

constexpr int NR = 4;
#if STEPWISE_AVX512
constexpr int MR = 6;  // 24 accumulators of the 32 vector registers: 10 loads per 24 FMAs
#else
constexpr int MR = 3;  // 12 of 16
#endif
constexpr int64_t MC = 48;        // batch rows per block: the activation block stays in L2
constexpr int64_t KC_MAX = 1024;  // rows this long are done in one column block
constexpr int64_t KC_SPLIT = 512; // otherwise, column blocks of this size (a multiple of 256)
#if STEPWISE_AVX512
constexpr int VW = 16;
#else
constexpr int VW = 8;
#endif

/**
 * Weights to prefetch while a micro-kernel runs: the next tile's rows (`rows` of them, `stride`
 * bytes apart, `eb` bytes per element) at the same columns, one step's worth per step, so the
 * reads of the next tile are paced with this tile's arithmetic instead of issued in one burst
 * that waits on full fill buffers.
 */
struct Prefetch {
  const char* p = nullptr;
  int64_t stride = 0;
  int rows = 0;
  int eb = 4;
};

using MicroFn = void (*)(const void* w, int64_t ldw, const float* x, int64_t ldx, int64_t kc, float* acc,
                         bool first, bool last, float* out, int64_t ldo, const Prefetch& pf);

#if STEPWISE_AVX512

template <class W, int NRx, int MRx>
void micro(const void* wp, int64_t ldw, const float* x, int64_t ldx, int64_t kc, float* accBuf, bool first, bool last,
           float* out, int64_t ldo, const Prefetch& pf) {
  const W* w = static_cast<const W*>(wp);
  __m512 acc[NRx][MRx];
  for (int i = 0; i < NRx; i++)
    for (int j = 0; j < MRx; j++) acc[i][j] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(accBuf + (i * MRx + j) * 16);
  const int64_t kv = kc & ~int64_t{15};
  for (int64_t k = 0; k < kv; k += 16) {
    for (int i = 0; i < pf.rows; i++) __builtin_prefetch(pf.p + i * pf.stride + k * pf.eb, 0, 3);
    __m512 xv[MRx];
    for (int j = 0; j < MRx; j++) {
      xv[j] = _mm512_loadu_ps(x + j * ldx + k);
      asm("" : "+v"(xv[j]));  // keep in registers (GCC would re-load operands inside each FMA)
    }
    for (int i = 0; i < NRx; i++) {
      __m512 wv = loadW(w + i * ldw + k);
      asm("" : "+v"(wv));
      for (int j = 0; j < MRx; j++) acc[i][j] = _mm512_fmadd_ps(wv, xv[j], acc[i][j]);
    }
  }
  for (int j = 0; j < MRx; j++) {
    for (int i = 0; i < NRx; i++) {
      if (!last) {
        _mm512_storeu_ps(accBuf + (i * MRx + j) * 16, acc[i][j]);
        continue;
      }
      float s = fold16(acc[i][j]);
      for (int64_t k = kv; k < kc; k++) s += x[j * ldx + k] * elem(w + i * ldw + k);
      out[j * ldo + i] = s;
    }
  }
}

#elif STEPWISE_AVX2

template <class W, int NRx, int MRx>
void micro(const void* wp, int64_t ldw, const float* x, int64_t ldx, int64_t kc, float* accBuf, bool first, bool last,
           float* out, int64_t ldo, const Prefetch& pf) {
  const W* w = static_cast<const W*>(wp);
  __m256 acc[NRx][MRx];
  for (int i = 0; i < NRx; i++)
    for (int j = 0; j < MRx; j++)
      acc[i][j] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(accBuf + (i * MRx + j) * 8);
  const int64_t kv = kc & ~int64_t{7};
  for (int64_t k = 0; k < kv; k += 8) {
    if (k % 16 == 0)
      for (int i = 0; i < pf.rows; i++) __builtin_prefetch(pf.p + i * pf.stride + k * pf.eb, 0, 3);
    __m256 xv[MRx];
    for (int j = 0; j < MRx; j++) {
      xv[j] = _mm256_loadu_ps(x + j * ldx + k);
      // Pin the activations in registers: left alone, GCC re-reads operands from memory inside
      // each FMA (12+ loads per step instead of 7), which makes the loop load-bound.
      asm("" : "+x"(xv[j]));
    }
    for (int i = 0; i < NRx; i++) {
      __m256 wv = loadW(w + i * ldw + k);
      asm("" : "+x"(wv));  // likewise: one load of each weight vector, reused for every batch row
      for (int j = 0; j < MRx; j++) acc[i][j] = _mm256_fmadd_ps(wv, xv[j], acc[i][j]);
    }
  }
  if (!last) {
    for (int i = 0; i < NRx; i++)
      for (int j = 0; j < MRx; j++) _mm256_storeu_ps(accBuf + (i * MRx + j) * 8, acc[i][j]);
    return;
  }
  const __m256 zero = _mm256_setzero_ps();
  for (int j = 0; j < MRx; j++) {
    float sums[4];
    _mm_storeu_ps(sums, fold4(acc[0][j], NRx > 1 ? acc[1 % NRx][j] : zero, NRx > 2 ? acc[2 % NRx][j] : zero,
                              NRx > 3 ? acc[3 % NRx][j] : zero));
    for (int i = 0; i < NRx; i++) {
      float s = sums[i];
      for (int64_t k = kv; k < kc; k++) s += x[j * ldx + k] * elem(w + i * ldw + k);
      out[j * ldo + i] = s;
    }
  }
}

#else

template <class W, int NRx, int MRx>
void micro(const void* wp, int64_t ldw, const float* x, int64_t ldx, int64_t kc, float* accBuf, bool first, bool last,
           float* out, int64_t ldo, const Prefetch& pf) {
  (void)pf;
  const W* w = static_cast<const W*>(wp);
  float acc[NRx][MRx][8];
  for (int i = 0; i < NRx; i++)
    for (int j = 0; j < MRx; j++)
      for (int l = 0; l < 8; l++) acc[i][j][l] = first ? 0.0f : accBuf[(i * MRx + j) * 8 + l];
  const int64_t kv = kc & ~int64_t{7};
  for (int64_t k = 0; k < kv; k += 8)
    for (int i = 0; i < NRx; i++)
      for (int j = 0; j < MRx; j++)
        for (int l = 0; l < 8; l++) acc[i][j][l] += elem(w + i * ldw + k + l) * x[j * ldx + k + l];
  if (!last) {
    for (int i = 0; i < NRx; i++)
      for (int j = 0; j < MRx; j++)
        for (int l = 0; l < 8; l++) accBuf[(i * MRx + j) * 8 + l] = acc[i][j][l];
    return;
  }
  for (int j = 0; j < MRx; j++) {
    for (int i = 0; i < NRx; i++) {
      float s = foldLanes(acc[i][j]);  // the scalar build keeps 8 lanes
      for (int64_t k = kv; k < kc; k++) s += x[j * ldx + k] * elem(w + i * ldw + k);
      out[j * ldo + i] = s;
    }
  }
}

#endif

template <class W, int N, int... Ms>
constexpr std::array<MicroFn, MR> microRow(std::integer_sequence<int, Ms...>) {
  return {micro<W, N, Ms + 1>...};
}

template <class W>
struct MicroTable {
  static constexpr std::array<MicroFn, MR> fns[NR] = {
      microRow<W, 1>(std::make_integer_sequence<int, MR>{}), microRow<W, 2>(std::make_integer_sequence<int, MR>{}),
      microRow<W, 3>(std::make_integer_sequence<int, MR>{}), microRow<W, 4>(std::make_integer_sequence<int, MR>{}),
  };
};

}  // namespace

void matmulParts(Context& ctx, const WeightPart* parts, int nParts, const float* x, DType dt, int64_t K, int64_t M) {
#if STEPWISE_AVX512
  if (isInterleaved(dt) && M > 0) {
    if (qtypeInfo(dt).integer) qmatmulX16Parts(ctx, parts, nParts, x, dt, K, M);
    else matmulX16Parts(ctx, parts, nParts, x, dt, K, M);
    return;
  }
#endif
  for (int i = 0; i < nParts; i++) matmul(ctx, parts[i].out, x, parts[i].w, dt, parts[i].rows, K, M);
}

void matmul(Context& ctx, float* out, const float* x, const uint8_t* w, DType dt, int64_t N, int64_t K, int64_t M) {
  if (N <= 0 || M <= 0) return;
#if STEPWISE_AVX512
  if (dt == DType::F32_X16 || dt == DType::F16_X16 || dt == DType::BF16_X16) {
    matmulX16(ctx, out, x, w, dt, N, K, M);
    return;
  }
#endif
  if (qtypeInfo(dt).integer) {
    qmatmul(ctx, out, x, w, dt, N, K, M);
    return;
  }
  const int64_t KC = K <= KC_MAX ? K : KC_SPLIT;
  const int64_t nkb = (K + KC - 1) / KC;
  const int64_t ldBuf = KC + 16;  // tile row stride, padded off a multiple of 4 KiB
  const size_t rb = rowBytes(dt, K);
  const size_t eb = dt == DType::F32 ? 4 : 2;  // bytes per weight element
  // Chunks of output features: as large as possible (each reads the activations once) while
  // leaving at least 4 chunks per thread, so a thread slowed by other load does not stall the job.
  const int64_t threads = ctx.pool.size();
  int64_t NC = 64;
  while (NC > NR && (N + NC - 1) / NC < 4 * threads) NC /= 2;
  const int64_t ntasks = (N + NC - 1) / NC;
  // Weights are read where they lie, with the next tile's rows prefetched in step with the
  // arithmetic (so at small M the loads overlap the FMAs and a few rows cost about what one row
  // does: speculative verification, small batches). Only rows a multiple of 4 KiB long at M > 8
  // are copied into a float tile first: their rows compete for the same few L1 sets, and many
  // batch rows amortise the copy. Same values either way.
  const bool inPlace = M <= 8 || (K * static_cast<int64_t>(eb)) % 4096 != 0;
  const auto& fns = !inPlace || dt == DType::F32 ? MicroTable<float>::fns
                    : dt == DType::F16           ? MicroTable<Half>::fns
                                                 : MicroTable<BHalf>::fns;

  const Prefetch none;  // later batch rows of a tile: its first rows already prefetched the next one
  ctx.pool.parallelFor(ntasks, [&](int64_t task, int tid) {
    Scratch& s = ctx.scratch[static_cast<size_t>(tid)];
    float* wbuf = inPlace ? nullptr : s.need(s.a, static_cast<size_t>(NR * ldBuf));
    float* accBuf = nkb > 1 ? s.need(s.b, static_cast<size_t>(MC * NC * VW)) : nullptr;
    const int64_t n0 = task * NC;
    const int64_t n1 = std::min(N, n0 + NC);
    for (int64_t mc0 = 0; mc0 < M; mc0 += MC) {
      const int64_t mc1 = std::min(M, mc0 + MC);
      for (int64_t kb = 0; kb < nkb; kb++) {
        const int64_t k0 = kb * KC;
        const int64_t kc = std::min(KC, K - k0);
        for (int64_t n = n0; n < n1; n += NR) {
          const int nr = static_cast<int>(std::min<int64_t>(NR, n1 - n));
          // The next tile's weights, paced with this one's arithmetic (by its first batch rows).
          const Prefetch next{reinterpret_cast<const char*>(w + static_cast<size_t>(n + NR) * rb + static_cast<size_t>(k0) * eb),
                              static_cast<int64_t>(rb), static_cast<int>(std::clamp<int64_t>(N - n - NR, 0, NR)),
                              static_cast<int>(eb)};
          const void* wt;
          int64_t ldw;
          if (inPlace) {
            wt = w + static_cast<size_t>(n) * rb + static_cast<size_t>(k0) * eb;
            ldw = K;
          } else {
            for (int i = 0; i < nr; i++) dequantizeSpan(dt, w + static_cast<size_t>(n + i) * rb, k0, kc, wbuf + i * ldBuf);
            wt = wbuf;
            ldw = ldBuf;
          }
          for (int64_t m = mc0; m < mc1; m += MR) {
            const int mr = static_cast<int>(std::min<int64_t>(MR, mc1 - m));
            float* acc = accBuf ? accBuf + (((m - mc0) / MR) * (NC / NR) + (n - n0) / NR) * (NR * MR * VW) : nullptr;
            fns[nr - 1][mr - 1](wt, ldw, x + m * K + k0, K, kc, acc, kb == 0, kb == nkb - 1, out + m * N + n, N,
                                m == mc0 ? next : none);
          }
        }
      }
    }
  });
}

}  // namespace stepwise
