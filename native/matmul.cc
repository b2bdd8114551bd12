// Weight x activation GEMM: out[m][n] = sum_k x[m][k] * W[n][k].
//
// Shape of the work. Threads take chunks of output features (rows of W), never a slice of the
// reduction. Inside a chunk, a micro-kernel multiplies a tile of NR=4 weight rows with MR=3
// activation rows: per step of 8 columns it loads 4 weight vectors and 3 activation vectors and
// issues 12 FMAs into 12 register accumulators, so each weight load serves every batch row of the
// tile and the tile loop walks all M rows while the 4 weight rows sit in L1. Non-f32 weights are
// expanded into a small float tile (4 rows x KC columns) once per block of up to 48 batch rows and
// reused for all of them (f32 weights too when M >= 4, see below); activations stay f32, so
// results match the float reference. Long rows (K > 1024) are cut into KC=512 column blocks so
// the tile stays in L1; the 8-lane partial sums are parked in per-thread memory between blocks,
// exactly, as floats. At M = 1 the work is a stream over the weights, bound by memory bandwidth.
//
// Batch invariance. Every (m, n) output is the same arithmetic whatever the tile shape or M: lane
// j accumulates x[k]*w[k] for k = j, j+8, ... in increasing k with one FMA each, the lanes are
// folded with the fixed tree of simd.h, and a tail of K % 8 columns is added one by one in order.
// Tile shapes differ only in how many such independent chains run side by side.
#include <algorithm>

#include "kernels.h"
#include "simd.h"

namespace stepwise {
namespace {

constexpr int NR = 4;
constexpr int MR = 3;
constexpr int64_t MC = 48;        // batch rows per block: the activation block stays in L2
constexpr int64_t KC_MAX = 1024;  // rows this long are done in one column block
constexpr int64_t KC_SPLIT = 512; // otherwise, column blocks of this size (a multiple of 256)

using MicroFn = void (*)(const float* w, int64_t ldw, const float* x, int64_t ldx, int64_t kc, float* acc,
                         bool first, bool last, float* out, int64_t ldo);

#if STEPWISE_AVX2

template <int NRx, int MRx>
void micro(const float* w, int64_t ldw, const float* x, int64_t ldx, int64_t kc, float* accBuf, bool first,
           bool last, float* out, int64_t ldo) {
  __m256 acc[NRx][MRx];
  for (int i = 0; i < NRx; i++)
    for (int j = 0; j < MRx; j++)
      acc[i][j] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(accBuf + (i * MRx + j) * 8);
  const int64_t kv = kc & ~int64_t{7};
  for (int64_t k = 0; k < kv; k += 8) {
    __m256 xv[MRx];
    for (int j = 0; j < MRx; j++) {
      xv[j] = _mm256_loadu_ps(x + j * ldx + k);
      // Pin the activations in registers: left alone, GCC re-reads operands from memory inside
      // each FMA (12+ loads per step instead of 7), which makes the loop load-bound.
      asm("" : "+x"(xv[j]));
    }
    for (int i = 0; i < NRx; i++) {
      __m256 wv = _mm256_loadu_ps(w + i * ldw + k);
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
      for (int64_t k = kv; k < kc; k++) s += x[j * ldx + k] * loadF32(w + i * ldw + k);
      out[j * ldo + i] = s;
    }
  }
}

#else

template <int NRx, int MRx>
void micro(const float* w, int64_t ldw, const float* x, int64_t ldx, int64_t kc, float* accBuf, bool first,
           bool last, float* out, int64_t ldo) {
  float acc[NRx][MRx][8];
  for (int i = 0; i < NRx; i++)
    for (int j = 0; j < MRx; j++)
      for (int l = 0; l < 8; l++) acc[i][j][l] = first ? 0.0f : accBuf[(i * MRx + j) * 8 + l];
  const int64_t kv = kc & ~int64_t{7};
  for (int64_t k = 0; k < kv; k += 8)
    for (int i = 0; i < NRx; i++)
      for (int j = 0; j < MRx; j++)
        for (int l = 0; l < 8; l++) acc[i][j][l] += loadF32(w + i * ldw + k + l) * x[j * ldx + k + l];
  if (!last) {
    for (int i = 0; i < NRx; i++)
      for (int j = 0; j < MRx; j++)
        for (int l = 0; l < 8; l++) accBuf[(i * MRx + j) * 8 + l] = acc[i][j][l];
    return;
  }
  for (int j = 0; j < MRx; j++) {
    for (int i = 0; i < NRx; i++) {
      float s = foldLanes(acc[i][j]);
      for (int64_t k = kv; k < kc; k++) s += x[j * ldx + k] * loadF32(w + i * ldw + k);
      out[j * ldo + i] = s;
    }
  }
}

#endif

constexpr MicroFn kMicro[NR][MR] = {
    {micro<1, 1>, micro<1, 2>, micro<1, 3>},
    {micro<2, 1>, micro<2, 2>, micro<2, 3>},
    {micro<3, 1>, micro<3, 2>, micro<3, 3>},
    {micro<4, 1>, micro<4, 2>, micro<4, 3>},
};

}  // namespace

void matmul(Context& ctx, float* out, const float* x, const uint8_t* w, DType dt, int64_t N, int64_t K, int64_t M) {
  if (N <= 0 || M <= 0) return;
  if (qtypeInfo(dt).integer) {
    qmatmul(ctx, out, x, w, dt, N, K, M);
    return;
  }
  const int64_t KC = K <= KC_MAX ? K : KC_SPLIT;
  const int64_t nkb = (K + KC - 1) / KC;
  const int64_t ldBuf = KC + 16;  // tile row stride, padded off a multiple of 4 KiB
  const size_t rb = rowBytes(dt, K);
  // Chunks of output features: as large as possible (each reads the activations once) while
  // leaving at least 4 chunks per thread, so a thread slowed by other load does not stall the job.
  const int64_t threads = ctx.pool.size();
  int64_t NC = 64;
  while (NC > NR && (N + NC - 1) / NC < 4 * threads) NC /= 2;
  const int64_t ntasks = (N + NC - 1) / NC;

  ctx.pool.parallelFor(ntasks, [&](int64_t task, int tid) {
    Scratch& s = ctx.scratch[static_cast<size_t>(tid)];
    // f32 weights are used in place at small M (the copy would cost as much as the reads); at
    // larger M they are copied too, because rows of 2^k floats sit a multiple of 4 KiB apart and
    // would all compete for the same few L1 sets. Same values either way, so same results.
    float* wbuf = dt == DType::F32 && M < 4 ? nullptr : s.need(s.a, static_cast<size_t>(NR * ldBuf));
    float* accBuf = nkb > 1 ? s.need(s.b, static_cast<size_t>(MC * NC * 8)) : nullptr;
    const int64_t n0 = task * NC;
    const int64_t n1 = std::min(N, n0 + NC);
    for (int64_t mc0 = 0; mc0 < M; mc0 += MC) {
      const int64_t mc1 = std::min(M, mc0 + MC);
      for (int64_t kb = 0; kb < nkb; kb++) {
        const int64_t k0 = kb * KC;
        const int64_t kc = std::min(KC, K - k0);
        for (int64_t n = n0; n < n1; n += NR) {
          const int nr = static_cast<int>(std::min<int64_t>(NR, n1 - n));
          const float* wt;
          int64_t ldw;
          {
            // The next tile's weights, while this one is multiplied.
            const size_t eb = static_cast<size_t>(dtypeInfo(dt).blockBytes) / static_cast<size_t>(dtypeInfo(dt).blockSize);
            for (int64_t i = n + NR; i < std::min(N, n + 2 * NR); i++)
              prefetchBytes(w + static_cast<size_t>(i) * rb + static_cast<size_t>(k0) * eb, static_cast<size_t>(kc) * eb);
          }
          if (!wbuf) {
            wt = reinterpret_cast<const float*>(w + static_cast<size_t>(n) * rb) + k0;
            ldw = K;
          } else {
            for (int i = 0; i < nr; i++) dequantizeSpan(dt, w + static_cast<size_t>(n + i) * rb, k0, kc, wbuf + i * ldBuf);
            wt = wbuf;
            ldw = ldBuf;
          }
          for (int64_t m = mc0; m < mc1; m += MR) {
            const int mr = static_cast<int>(std::min<int64_t>(MR, mc1 - m));
            float* acc = accBuf ? accBuf + (((m - mc0) / MR) * (NC / NR) + (n - n0) / NR) * (NR * MR * 8) : nullptr;
            kMicro[nr - 1][mr - 1](wt, ldw, x + m * K + k0, K, kc, acc, kb == 0, kb == nkb - 1, out + m * N + n, N);
          }
        }
      }
    }
  });
}

}  // namespace stepwise
