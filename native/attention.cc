// Causal attention over paged KV with an online softmax (no score matrix), grouped-query aware.
//
// One task is one (row, KV head): the row's G = nHeads/nKvHeads query heads that share that KV
// head walk the row's keys together, so each key and value vector is loaded once for all of
// them. Keys go in tiles of 8 aligned to absolute positions (0-7, 8-15, ...): per tile, 8 scores
// per head, the running max and sum are updated (rescaling the accumulator by e^(m_old - m_new)),
// and the tile's values are added in position order. A row's result therefore depends only on
// its query, its position and the cached keys/values, not on the batch or on prompt chunking.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels.h"
#include "simd.h"

namespace stepwise {
namespace {

constexpr int kTile = 8;
constexpr int64_t kParallelWork = 1 << 15;  // key*dim products below which one thread is quicker

/** s[i] = (q . k_i) * scale for 8 keys, each dot with the fixed lane order and fold tree. */
inline void scoreTile(const float* q, const float* const* kp, int64_t hd, float scale, float* s) {
  const int64_t hv = hd & ~int64_t{7};
#if STEPWISE_AVX2
  __m256 a[kTile];
  for (int i = 0; i < kTile; i++) a[i] = _mm256_setzero_ps();
  for (int64_t d = 0; d < hv; d += 8) {
    const __m256 qv = _mm256_loadu_ps(q + d);
    for (int i = 0; i < kTile; i++) a[i] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kp[i] + d), a[i]);
  }
  _mm_storeu_ps(s, fold4(a[0], a[1], a[2], a[3]));
  _mm_storeu_ps(s + 4, fold4(a[4], a[5], a[6], a[7]));
#else
  for (int i = 0; i < kTile; i++) {
    float l[8] = {0};
    for (int64_t d = 0; d < hv; d += 8)
      for (int j = 0; j < 8; j++) l[j] += q[d + j] * kp[i][d + j];
    s[i] = foldLanes(l);
  }
#endif
  for (int i = 0; i < kTile; i++) {
    float v = s[i];
    for (int64_t d = hv; d < hd; d++) v += q[d] * kp[i][d];
    s[i] = v * scale;
  }
}

/** acc = acc*corr + sum_i p[i]*v_i (i < cnt, in order). */
inline void accumulateTile(float* acc, float corr, const float* p, const float* const* vp, int cnt, int64_t hd) {
  int64_t d = 0;
#if STEPWISE_AVX2
  const __m256 c = _mm256_set1_ps(corr);
  for (; d + 8 <= hd; d += 8) {
    __m256 a = _mm256_mul_ps(_mm256_loadu_ps(acc + d), c);
    for (int i = 0; i < cnt; i++) a = _mm256_fmadd_ps(_mm256_set1_ps(p[i]), _mm256_loadu_ps(vp[i] + d), a);
    _mm256_storeu_ps(acc + d, a);
  }
  for (; d < hd; d++) {
    float a = acc[d] * corr;
    for (int i = 0; i < cnt; i++) a = std::fma(p[i], vp[i][d], a);
    acc[d] = a;
  }
#else
  for (; d < hd; d++) {
    float a = acc[d] * corr;
    for (int i = 0; i < cnt; i++) a += p[i] * vp[i][d];
    acc[d] = a;
  }
#endif
}

/** p[i] = e^(s[i] - m), 0 for masked (-inf) scores. */
inline void expTile(const float* s, float m, float* p) {
#if STEPWISE_AVX2
  _mm256_storeu_ps(p, exp8(_mm256_sub_ps(_mm256_loadu_ps(s), _mm256_set1_ps(m))));
#else
  for (int i = 0; i < kTile; i++) p[i] = std::exp(s[i] - m);
#endif
}

}  // namespace

void attention(Context& ctx, float* out, const float* q, const PagedKv& kv, const AttentionRows& rows, int64_t nHeads) {
  const int64_t hd = kv.headDim;
  const int64_t G = nHeads / kv.nKvHeads;
  const int64_t qDim = nHeads * hd;
  const int64_t kvDim = kv.nKvHeads * hd;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  const float negInf = -std::numeric_limits<float>::infinity();

  int64_t work = 0;
  for (int64_t r = 0; r < rows.numRows; r++) work += (static_cast<int64_t>(rows.positions[r]) + 1) * qDim;
  const int64_t ntasks = rows.numRows * kv.nKvHeads;
  const auto task = [&](int64_t t, int tid) {
    const int64_t r = t / kv.nKvHeads;
    const int64_t g = t % kv.nKvHeads;
    const int64_t n = static_cast<int64_t>(rows.positions[r]) + 1;
    const int32_t* bt = rows.blockTables + static_cast<int64_t>(rows.rowSeq[r]) * rows.maxBlocksPerSeq;
    Scratch& sc = ctx.scratch[static_cast<size_t>(tid)];
    float* acc = sc.need(sc.a, static_cast<size_t>(G * hd + G * 2));
    float* mx = acc + G * hd;
    float* sum = mx + G;
    std::fill(acc, acc + G * hd, 0.0f);
    std::fill(mx, mx + G, negInf);
    std::fill(sum, sum + G, 0.0f);
    const float* qr = q + r * qDim + g * G * hd;
    const float* kp[kTile];
    const float* vp[kTile];
    alignas(32) float s[kTile];
    alignas(32) float p[kTile];
    for (int64_t t0 = 0; t0 < n; t0 += kTile) {
      const int cnt = static_cast<int>(std::min<int64_t>(kTile, n - t0));
      for (int i = 0; i < kTile; i++) {
        // Past the row's last key, point at a real key and mask its score below.
        const int64_t pos = t0 + std::min(i, cnt - 1);
        const int64_t slot = static_cast<int64_t>(bt[pos / kv.blockSize]) * kv.blockSize + pos % kv.blockSize;
        kp[i] = kv.k + slot * kvDim + g * hd;
        vp[i] = kv.v + slot * kvDim + g * hd;
      }
      for (int64_t h = 0; h < G; h++) {
        scoreTile(qr + h * hd, kp, hd, scale, s);
        for (int i = cnt; i < kTile; i++) s[i] = negInf;
        float tmax = s[0];
        for (int i = 1; i < cnt; i++) tmax = std::max(tmax, s[i]);
        const float mNew = std::max(mx[h], tmax);
        const float corr = mx[h] == negInf ? 0.0f : std::exp(mx[h] - mNew);
        expTile(s, mNew, p);
        for (int i = cnt; i < kTile; i++) p[i] = 0.0f;
        sum[h] = sum[h] * corr + foldLanes(p);
        accumulateTile(acc + h * hd, corr, p, vp, cnt, hd);
        mx[h] = mNew;
      }
    }
    for (int64_t h = 0; h < G; h++) {
      float* o = out + r * qDim + (g * G + h) * hd;
      for (int64_t d = 0; d < hd; d++) o[d] = acc[h * hd + d] / sum[h];
    }
  };
  if (work < kParallelWork) {
    for (int64_t t = 0; t < ntasks; t++) task(t, 0);
  } else {
    ctx.pool.parallelFor(ntasks, task);
  }
}

}  // namespace stepwise
