// GEMM for quantized weights with integer dot products: out[m][n] = sum_k x[m][k] * W[n][k].
//
// The activations are quantized once per call to int8 (per 32 or 256 elements, as llama.cpp does
// for the same weight types); each weight row is unpacked a superblock at a time into bytes and
// lane scales (qblocks.h); then a superblock of one (weight row, activation row) pair is 4 VNNI
// instructions into one 16-lane integer accumulator, and one multiply-add of its float value by
// the lane scales into a 16-lane float accumulator. The work is split like the float GEMM
// (matmul.cc): threads take chunks of output features; a tile of NR weight rows is unpacked once
// per block of MC activation rows and multiplied with MR activation rows at a time; long rows are
// cut into blocks of KCS superblocks with the float lanes parked exactly in between.
//
// Batch invariance. For every (m, n) the integer sums are exact, and the float lanes see the same
// operations in the same superblock order whatever the tile shape, M or thread; the 16 lanes are
// folded by one fixed tree (lane i + lane i+8, then simd.h's 8-lane tree). The AVX2 build gives
// the same bits as the AVX-512 one (same float operations, lane for lane); the scalar build does
// not fuse multiply-adds, so it differs from both, deterministically.
#include <algorithm>

#include "kernels.h"
#include "qblocks.h"
#include "qunpack-avx512.h"
#include "simd.h"

namespace stepwise {
namespace {

#if STEPWISE_AVX512
constexpr int NR = 4;
constexpr int MR = 3;
#elif STEPWISE_AVX2
constexpr int NR = 2;  // 16 registers: 2 x 2 pairs of 2 integer halves, plus operands
constexpr int MR = 2;
#else
constexpr int NR = 4;
constexpr int MR = 3;
#endif
constexpr int64_t MC = 48;   // activation rows per block
constexpr int64_t KCS = 8;   // superblocks per column block (2048 elements: 3 KiB per weight row)

using QMicroFn = void (*)(const QWeightBlock* w, int64_t ldw, const QActBlock* x, int64_t ldx, int64_t nsb,
                          float* acc, bool first, bool last, float* out, int64_t ldo);

#if STEPWISE_AVX512

/**
 * One superblock's integer sum added to a pair's float lanes: every AVX-512 path (the tiled
 * micro-kernel and the few-row register path) goes through this, so their bits agree by
 * construction. Types with mins have off 0 (qunpack.cc's table), so their off term is skipped:
 * exact either way.
 */
template <bool HasMin>
__attribute__((always_inline)) inline __m512 addSuperblock(__m512 acc, __m512i sum, __m512 ws, const float* wm, const QActBlock& xb) {
  const __m512i exact = HasMin ? sum : _mm512_sub_epi32(sum, _mm512_loadu_si512(xb.off));
  const __m512 scale = _mm512_mul_ps(ws, _mm512_loadu_ps(xb.d));
  acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(exact), scale, acc);
  if (HasMin) acc = _mm512_fnmadd_ps(_mm512_loadu_ps(wm), _mm512_loadu_ps(xb.s), acc);
  return acc;
}

template <int NRx, int MRx, bool HasMin, bool Wide>
void qmicro(const QWeightBlock* w, int64_t ldw, const QActBlock* x, int64_t ldx, int64_t nsb, float* accBuf,
            bool first, bool last, float* out, int64_t ldo) {
  __m512 acc[NRx][MRx];
  for (int i = 0; i < NRx; i++)
    for (int j = 0; j < MRx; j++) acc[i][j] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(accBuf + (i * MRx + j) * 16);
  for (int64_t s = 0; s < nsb; s++) {
    __m512i sum[NRx][MRx];
    for (int i = 0; i < NRx; i++)
      for (int j = 0; j < MRx; j++) sum[i][j] = _mm512_setzero_si512();
    for (int c = 0; c < 4; c++) {
      __m512i xv[MRx];
      for (int j = 0; j < MRx; j++) {
        xv[j] = _mm512_loadu_si512(x[j * ldx + s].q + 64 * c);
        asm("" : "+v"(xv[j]));  // keep operands in registers (see matmul.cc)
      }
      for (int i = 0; i < NRx; i++) {
        __m512i wv = _mm512_loadu_si512(w[i * ldw + s].u + 64 * c);
        asm("" : "+v"(wv));
        for (int j = 0; j < MRx; j++) sum[i][j] = _mm512_dpbusd_epi32(sum[i][j], wv, xv[j]);
      }
    }
    for (int i = 0; i < NRx; i++) {
      const QWeightBlock& wb = w[i * ldw + s];
      const __m512 ws = _mm512_loadu_ps(wb.s);
      for (int j = 0; j < MRx; j++) {
        const QActBlock& xb = x[j * ldx + s];
        acc[i][j] = addSuperblock<HasMin>(acc[i][j], sum[i][j], ws, wb.m, xb);
      }
    }
  }
  for (int i = 0; i < NRx; i++) {
    for (int j = 0; j < MRx; j++) {
      if (!last) {
        _mm512_storeu_ps(accBuf + (i * MRx + j) * 16, acc[i][j]);
      } else {
        out[j * ldo + i] = fold16(acc[i][j]);
      }
    }
  }
}

#elif STEPWISE_AVX2

/**
 * 32-bit lane sums of 4 byte products u*q (u unsigned, q signed), as VNNI's dpbusd. maddubs sums
 * byte pairs into saturating 16-bit values, which cannot overflow while u <= 127 (2*127*127);
 * Wide types split u into its low 7 bits and its top bit.
 */
template <bool Wide>
inline __m256i dot4(__m256i u, __m256i q) {
  const __m256i ones = _mm256_set1_epi16(1);
  if (!Wide) return _mm256_madd_epi16(_mm256_maddubs_epi16(u, q), ones);
  const __m256i lo = _mm256_and_si256(u, _mm256_set1_epi8(0x7f));
  const __m256i top = _mm256_and_si256(_mm256_srli_epi16(u, 7), _mm256_set1_epi8(1));
  const __m256i a = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, q), ones);
  const __m256i b = _mm256_madd_epi16(_mm256_maddubs_epi16(top, q), ones);
  return _mm256_add_epi32(a, _mm256_slli_epi32(b, 7));
}

template <int NRx, int MRx, bool HasMin, bool Wide>
void qmicro(const QWeightBlock* w, int64_t ldw, const QActBlock* x, int64_t ldx, int64_t nsb, float* accBuf,
            bool first, bool last, float* out, int64_t ldo) {
  // Float lanes live in memory (too many for 16 registers); lanes 0-7 and 8-15 are the two halves.
  alignas(32) float acc[NRx][MRx][16];
  for (int i = 0; i < NRx; i++)
    for (int j = 0; j < MRx; j++)
      for (int l = 0; l < 16; l++) acc[i][j][l] = first ? 0.0f : accBuf[(i * MRx + j) * 16 + l];
  for (int64_t s = 0; s < nsb; s++) {
    for (int h = 0; h < 2; h++) {
      __m256i sum[NRx][MRx];
      for (int i = 0; i < NRx; i++)
        for (int j = 0; j < MRx; j++) sum[i][j] = _mm256_setzero_si256();
      for (int c = 0; c < 4; c++) {
        __m256i xv[MRx];
        for (int j = 0; j < MRx; j++)
          xv[j] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[j * ldx + s].q + 64 * c + 32 * h));
        for (int i = 0; i < NRx; i++) {
          const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[i * ldw + s].u + 64 * c + 32 * h));
          for (int j = 0; j < MRx; j++) sum[i][j] = _mm256_add_epi32(sum[i][j], dot4<Wide>(wv, xv[j]));
        }
      }
      for (int i = 0; i < NRx; i++) {
        const QWeightBlock& wb = w[i * ldw + s];
        const __m256 ws = _mm256_loadu_ps(wb.s + 8 * h);
        for (int j = 0; j < MRx; j++) {
          const QActBlock& xb = x[j * ldx + s];
          const __m256i exact =
              _mm256_sub_epi32(sum[i][j], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.off + 8 * h)));
          const __m256 scale = _mm256_mul_ps(ws, _mm256_loadu_ps(xb.d + 8 * h));
          __m256 a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(exact), scale, _mm256_load_ps(acc[i][j] + 8 * h));
          if (HasMin) a = _mm256_fnmadd_ps(_mm256_loadu_ps(wb.m + 8 * h), _mm256_loadu_ps(xb.s + 8 * h), a);
          _mm256_store_ps(acc[i][j] + 8 * h, a);
        }
      }
    }
  }
  for (int i = 0; i < NRx; i++) {
    for (int j = 0; j < MRx; j++) {
      if (!last) {
        for (int l = 0; l < 16; l++) accBuf[(i * MRx + j) * 16 + l] = acc[i][j][l];
      } else {
        out[j * ldo + i] = fold1(_mm256_add_ps(_mm256_load_ps(acc[i][j]), _mm256_load_ps(acc[i][j] + 8)));
      }
    }
  }
}

#else

template <int NRx, int MRx, bool HasMin, bool Wide>
void qmicro(const QWeightBlock* w, int64_t ldw, const QActBlock* x, int64_t ldx, int64_t nsb, float* accBuf,
            bool first, bool last, float* out, int64_t ldo) {
  for (int i = 0; i < NRx; i++) {
    for (int j = 0; j < MRx; j++) {
      float acc[16];
      for (int l = 0; l < 16; l++) acc[l] = first ? 0.0f : accBuf[(i * MRx + j) * 16 + l];
      for (int64_t s = 0; s < nsb; s++) {
        const QWeightBlock& wb = w[i * ldw + s];
        const QActBlock& xb = x[j * ldx + s];
        int32_t sum[16] = {};
        for (int c = 0; c < 4; c++)
          for (int p = 0; p < 64; p++) sum[p / 4] += static_cast<int32_t>(wb.u[64 * c + p]) * xb.q[64 * c + p];
        for (int l = 0; l < 16; l++) {
          acc[l] = acc[l] + static_cast<float>(sum[l] - xb.off[l]) * (wb.s[l] * xb.d[l]);
          if (HasMin) acc[l] = acc[l] - wb.m[l] * xb.s[l];
        }
      }
      if (!last) {
        for (int l = 0; l < 16; l++) accBuf[(i * MRx + j) * 16 + l] = acc[l];
      } else {
        out[j * ldo + i] = foldLanes16(acc);
      }
    }
  }
}

#endif

#if STEPWISE_AVX512
/**
 * A few activation rows (decoding up to 4 sequences, verifying proposals, a draft's catch-up): each
 * weight row's superblocks are unpacked in registers once and multiplied with every activation row,
 * with qmicro's float operations in qmicro's order (the column-block boundaries only parked the
 * lanes exactly), so the bits equal the tiled path's. Output row m of weight row r goes to
 * out[m * ldo + r].
 */
template <bool HasMin, int R, int MM>
void qdotRows(DType dt, const uint8_t* w, size_t rb, int64_t K, const QActBlock* x, int64_t nsb, float* out, int64_t ldo,
              const uint8_t* next, int nextRows) {
  // R rows side by side: independent chains for the out-of-order core, and the per-row overheads
  // (prefetch, fold) shared by short rows (768 columns are only 3 superblocks).
  __m512 acc[R][MM];
  for (int r = 0; r < R; r++)
    for (int m = 0; m < MM; m++) acc[r][m] = _mm512_setzero_ps();
  QWeightBlock wb[R];  // scales and mins (and the bytes, for the types without a register path)
  const size_t sbBytes = rb / static_cast<size_t>(nsb);  // bytes per superblock (whole superblocks: K % 256 == 0 or the tail is ignored)
  for (int64_t s = 0; s < nsb; s++) {
    // The same superblock of the next rows: a few lines per step keeps the fill buffers busy
    // without flooding them (a whole 4-row burst stalled on them).
    for (int r = 0; r < nextRows; r++) prefetchBytes(next + static_cast<size_t>(r) * rb + static_cast<size_t>(s) * sbBytes, sbBytes);
    for (int r = 0; r < R; r++) {
      const uint8_t* row = w + static_cast<size_t>(r) * rb;
      __m512i u[4];
      if (!avx512q::unpackRegs(dt, row, K, s, &wb[r], u)) {
        unpackWeightBlock(dt, row, K, s, &wb[r]);
        for (int c = 0; c < 4; c++) u[c] = _mm512_loadu_si512(wb[r].u + 64 * c);
      }
      const __m512 ws = _mm512_loadu_ps(wb[r].s);
      for (int m = 0; m < MM; m++) {
        const QActBlock& xb = x[m * nsb + s];
        __m512i sum = _mm512_setzero_si512();
        for (int c = 0; c < 4; c++) sum = _mm512_dpbusd_epi32(sum, u[c], _mm512_loadu_si512(xb.q + 64 * c));
        acc[r][m] = addSuperblock<HasMin>(acc[r][m], sum, ws, wb[r].m, xb);
      }
    }
  }
  for (int r = 0; r < R; r++)
    for (int m = 0; m < MM; m++) out[m * ldo + r] = fold16(acc[r][m]);
}

/** qdotRows over rows [n0, n1) for MM activation rows: groups of 4 weight rows, then single rows. */
template <bool HasMin, int MM>
void qdotRange(DType dt, const uint8_t* w, size_t rb, int64_t N, int64_t K, const QActBlock* x, int64_t nsb, float* out,
               int64_t n0, int64_t n1) {
  int64_t n = n0;
  for (; n + 4 <= n1; n += 4) {
    const uint8_t* rows = w + static_cast<size_t>(n) * rb;
    const int ahead = static_cast<int>(std::clamp<int64_t>(N - n - 4, 0, 4));  // rows to prefetch
    qdotRows<HasMin, 4, MM>(dt, rows, rb, K, x, nsb, out + n, N, rows + 4 * rb, ahead);
  }
  for (; n < n1; n++) {
    const uint8_t* row = w + static_cast<size_t>(n) * rb;
    qdotRows<HasMin, 1, MM>(dt, row, rb, K, x, nsb, out + n, N, row, 0);
  }
}

using QRangeFn = void (*)(DType, const uint8_t*, size_t, int64_t, int64_t, const QActBlock*, int64_t, float*, int64_t, int64_t);
constexpr QRangeFn kQRange[2][4] = {
    {qdotRange<false, 1>, qdotRange<false, 2>, qdotRange<false, 3>, qdotRange<false, 4>},
    {qdotRange<true, 1>, qdotRange<true, 2>, qdotRange<true, 3>, qdotRange<true, 4>},
};
#endif

template <bool HasMin, bool Wide>
struct QMicroTable {
  static constexpr QMicroFn fns[4][3] = {
      {qmicro<1, 1, HasMin, Wide>, qmicro<1, 2, HasMin, Wide>, qmicro<1, 3, HasMin, Wide>},
      {qmicro<2, 1, HasMin, Wide>, qmicro<2, 2, HasMin, Wide>, qmicro<2, 3, HasMin, Wide>},
      {qmicro<3, 1, HasMin, Wide>, qmicro<3, 2, HasMin, Wide>, qmicro<3, 3, HasMin, Wide>},
      {qmicro<4, 1, HasMin, Wide>, qmicro<4, 2, HasMin, Wide>, qmicro<4, 3, HasMin, Wide>},
  };
};

QMicroFn pickMicro(const QTypeInfo& qi, int nr, int mr) {
  if (qi.hasMin) return qi.wide ? QMicroTable<true, true>::fns[nr - 1][mr - 1] : QMicroTable<true, false>::fns[nr - 1][mr - 1];
  return qi.wide ? QMicroTable<false, true>::fns[nr - 1][mr - 1] : QMicroTable<false, false>::fns[nr - 1][mr - 1];
}

}  // namespace

void qmatmul(Context& ctx, float* out, const float* x, const uint8_t* w, DType dt, int64_t N, int64_t K, int64_t M) {
  if (N <= 0 || M <= 0) return;
#if STEPWISE_AVX512
  if (isInterleaved(dt)) {
    qmatmulX16(ctx, out, x, w, dt, N, K, M);  // quantizes the activations its own way
    return;
  }
#endif
  const QTypeInfo qi = qtypeInfo(dt);
  const int64_t nsb = numSuperblocks(K);
  const size_t rb = rowBytes(dt, K);

  // The activations, quantized once for every thread's use.
  if (ctx.qact.size() < static_cast<size_t>(M * nsb)) ctx.qact.resize(static_cast<size_t>(M * nsb));
  QActBlock* xq = ctx.qact.data();
  ctx.pool.parallelFor(M, [&](int64_t m, int) { quantizeActRow(x + m * K, K, qi.group, qi.off, xq + m * nsb); });

  const int64_t threads = ctx.pool.size();
#if STEPWISE_AVX512
  if (M <= 4) {
    // Chunks of rows, several per thread; each weight superblock is unpacked once for all M
    // activation rows, and the next rows' weights are prefetched a superblock at a time.
    const int64_t chunk = std::max<int64_t>(8, (N + 8 * threads - 1) / (8 * threads));
    const QRangeFn range = kQRange[qi.hasMin ? 1 : 0][M - 1];
    ctx.pool.parallelFor((N + chunk - 1) / chunk, [&](int64_t task, int) {
      const int64_t n0 = task * chunk;
      range(dt, w, rb, N, K, xq, nsb, out, n0, std::min(N, n0 + chunk));
    });
    return;
  }
#endif
  const int64_t nkb = (nsb + KCS - 1) / KCS;
  int64_t NC = 64;
  while (NC > NR && (N + NC - 1) / NC < 4 * threads) NC /= 2;
  const int64_t ntasks = (N + NC - 1) / NC;
  constexpr size_t kBlockFloats = sizeof(QWeightBlock) / sizeof(float);
  static_assert(sizeof(QWeightBlock) % sizeof(float) == 0, "weight blocks are whole floats");

  const DTypeInfo& di = dtypeInfo(dt);
  ctx.pool.parallelFor(ntasks, [&](int64_t task, int tid) {
    Scratch& sc = ctx.scratch[static_cast<size_t>(tid)];
    QWeightBlock* tile = reinterpret_cast<QWeightBlock*>(sc.need(sc.a, static_cast<size_t>(NR * KCS) * kBlockFloats));
    float* accBuf = nkb > 1 ? sc.need(sc.b, static_cast<size_t>(MC * NC * 16)) : nullptr;
    const int64_t n0 = task * NC;
    const int64_t n1 = std::min(N, n0 + NC);
    for (int64_t mc0 = 0; mc0 < M; mc0 += MC) {
      const int64_t mc1 = std::min(M, mc0 + MC);
      for (int64_t kb = 0; kb < nkb; kb++) {
        const int64_t s0 = kb * KCS;
        const int64_t ns = std::min(KCS, nsb - s0);
        const size_t spanOff = static_cast<size_t>(s0 * QK / di.blockSize) * di.blockBytes;
        const size_t spanBytes = static_cast<size_t>(std::min<int64_t>(ns * QK, K - s0 * QK) / di.blockSize) * di.blockBytes;
        for (int64_t n = n0; n < n1; n += NR) {
          const int nr = static_cast<int>(std::min<int64_t>(NR, n1 - n));
          // The next tile's weights, a superblock's bytes per superblock unpacked here: paced, so
          // memory keeps working during the unpacking (a burst per tile waited on the fill buffers).
          const int64_t aheadRows = std::clamp<int64_t>(N - n - NR, 0, NR);
          const size_t sbSpan = spanBytes / static_cast<size_t>(ns);
          for (int i = 0; i < nr; i++) {
            for (int64_t s = 0; s < ns; s++) {
              if (i < aheadRows) prefetchBytes(w + static_cast<size_t>(n + NR + i) * rb + spanOff + static_cast<size_t>(s) * sbSpan, sbSpan);
              unpackWeightBlock(dt, w + static_cast<size_t>(n + i) * rb, K, s0 + s, tile + i * KCS + s);
            }
          }
          for (int64_t m = mc0; m < mc1; m += MR) {
            const int mr = static_cast<int>(std::min<int64_t>(MR, mc1 - m));
            float* acc = accBuf ? accBuf + (((m - mc0) / MR) * (NC / NR) + (n - n0) / NR) * (NR * MR * 16) : nullptr;
            pickMicro(qi, nr, mr)(tile, KCS, xq + m * nsb + s0, nsb, ns, acc, kb == 0, kb == nkb - 1, out + m * N + n, N);
          }
        }
      }
    }
  });
}

}  // namespace stepwise
