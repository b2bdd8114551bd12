// Causal attention over paged KV with an online softmax (no score matrix), grouped-query aware.
//
// Two kernels, one per build: the avx512 variant runs the 16-lane flash-attention kernel in
// attention-avx512.h (query tiles of up to 16 rows, 16-key tiles, a polynomial exp); the avx2 and
// generic variants run the 8-lane kernel below. Each is batch invariant on its own; their bits
// differ from each other's. This file holds the 8-lane kernel and the dispatcher both share.
//
// The 8-lane kernel's work unit: a group of up to QR=3 consecutive batch rows of the same sequence
// (a prefill chunk gives such groups; a decode row is a group of one) times a range of KV heads.
// The group walks its keys in tiles of 8 aligned to absolute positions (0-7, 8-15, ...). Per tile
// and head, each K vector load serves every query row of the group and every query head sharing
// that KV head: the scores are a small GEMM with the same register blocking as matmul.cc. Then,
// per row, the running max and sum are updated (the accumulator is rescaled by e^(m_old - m_new))
// and the tile's values are added in position order, each V load again shared by the group's rows.
//
// Batch invariance: for one row and head the operations are always the same, whatever the group
// or the task split: dot products with 8 lanes over the head dimension folded by the fixed tree,
// the same tile boundaries (they depend only on absolute positions), and values added in key
// order. Grouping only interleaves independent rows. So a row's output depends only on its query,
// its position and the cached keys and values: not on the batch, the chunking or the threads.
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels.h"
#include "simd.h"

namespace stepwise {
namespace {

struct Job {
  float* out;
  const float* q;
  const PagedKv* kv;
  const AttentionRows* rows;
  int64_t nHeads;
  int64_t G;       // query heads per KV head
  float scale;
  int64_t window;  // 0: every earlier key
};

constexpr int64_t kParallelWork = 1 << 15;   // key*dim products below which one thread is quicker

}  // namespace
}  // namespace stepwise

#if STEPWISE_AVX512
namespace stepwise {
namespace {
#include "attention-avx512.h"
}  // namespace
}  // namespace stepwise
#else
namespace stepwise {
namespace {

constexpr int kTile = 8;

// K/V elements are floats (f32 caches, and q8_0 rows decoded per tile) or f16 bits converted as
// they are loaded; the conversion is exact, so both give the same arithmetic.
inline float elem(const float* p, int64_t i) { return p[i]; }
inline float elem(const uint16_t* p, int64_t i) { return f16ToF32(p[i]); }
#if STEPWISE_AVX2
inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
#endif
constexpr int QR = 3;                        // rows per group

/**
 * s[q*kTile + koff + i] = q_q . k_i for KN keys (4 or 8) and NQ query rows: the dot products only,
 * scaling and masking come later. Lane j of each 8-lane accumulator sums d = j, j+8, ...; fold4
 * applies the fixed tree; a head-dimension tail is added element by element. NQ*KN accumulators
 * run side by side (at most 12, so all stay in registers).
 */
template <int NQ, int KN, class T>
inline void scores(const float* const* qv, const T* const* kp, int64_t hd, float* s, int koff) {
  const int64_t hv = hd & ~int64_t{7};
#if STEPWISE_AVX2
  __m256 a[NQ][KN];
  for (int q = 0; q < NQ; q++)
    for (int i = 0; i < KN; i++) a[q][i] = _mm256_setzero_ps();
  for (int64_t d = 0; d < hv; d += 8) {
    __m256 qx[NQ];
    for (int q = 0; q < NQ; q++) {
      qx[q] = _mm256_loadu_ps(qv[q] + d);
      asm("" : "+x"(qx[q]));  // keep in registers (see matmul.cc)
    }
    for (int i = 0; i < KN; i++) {
      __m256 kx = load8(kp[i] + d);
      asm("" : "+x"(kx));
      for (int q = 0; q < NQ; q++) a[q][i] = _mm256_fmadd_ps(qx[q], kx, a[q][i]);
    }
  }
  for (int q = 0; q < NQ; q++)
    for (int i = 0; i < KN; i += 4)
      _mm_storeu_ps(s + q * kTile + koff + i, fold4(a[q][i], a[q][i + 1], a[q][i + 2], a[q][i + 3]));
#else
  for (int q = 0; q < NQ; q++) {
    for (int i = 0; i < KN; i++) {
      float l[8] = {0};
      for (int64_t d = 0; d < hv; d += 8)
        for (int j = 0; j < 8; j++) l[j] += qv[q][d + j] * elem(kp[i], d + j);
      s[q * kTile + koff + i] = foldLanes(l);
    }
  }
#endif
  for (int q = 0; q < NQ; q++) {
    for (int i = 0; i < KN; i++) {
      float v = s[q * kTile + koff + i];
      for (int64_t d = hv; d < hd; d++) v += qv[q][d] * elem(kp[i], d);
      s[q * kTile + koff + i] = v;
    }
  }
}

/**
 * One tile for one row and head: scales and masks the scores (keys i < start are before the row's
 * sliding window, keys i >= cnt after its position),
 * updates the running max and sum, and leaves the softmax weights in p and the accumulator's
 * rescale factor in *corr.
 */
inline void softmaxTile(float* s, int start, int cnt, float scale, float& runMax, float& runSum, float* p, float* corr) {
  const float negInf = -std::numeric_limits<float>::infinity();
#if STEPWISE_AVX2
  // Lanes outside start..cnt-1 are masked to -inf (their weights come out 0). max is exact in any order.
  const __m256 lane = _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256 live = _mm256_and_ps(_mm256_cmp_ps(lane, _mm256_set1_ps(static_cast<float>(cnt)), _CMP_LT_OQ),
                                    _mm256_cmp_ps(lane, _mm256_set1_ps(static_cast<float>(start)), _CMP_GE_OQ));
  const __m256 sv = _mm256_blendv_ps(_mm256_set1_ps(negInf), _mm256_mul_ps(_mm256_loadu_ps(s), _mm256_set1_ps(scale)), live);
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(sv), _mm256_extractf128_ps(sv, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
  const float tmax = _mm_cvtss_f32(m4);
#else
  for (int i = 0; i < kTile; i++) s[i] = i >= start && i < cnt ? s[i] * scale : negInf;
  float tmax = s[0];
  for (int i = 1; i < cnt; i++) tmax = std::max(tmax, s[i]);
#endif
  const float mNew = std::max(runMax, tmax);
  // e^0 is exactly 1, so skipping the exp when the max stands changes no bits.
  *corr = mNew == runMax ? 1.0f : runMax == negInf ? 0.0f : std::exp(runMax - mNew);
#if STEPWISE_AVX2
  const __m256 pv = exp8(_mm256_sub_ps(sv, _mm256_set1_ps(mNew)));  // exp8(-inf) = 0
  _mm256_storeu_ps(p, pv);
  const __m256 zero = _mm256_setzero_ps();
  runSum = runSum * *corr + _mm_cvtss_f32(fold4(pv, zero, zero, zero));
#else
  for (int i = 0; i < kTile; i++) p[i] = i < cnt ? std::exp(s[i] - mNew) : 0.0f;
  runSum = runSum * *corr + foldLanes(p);
#endif
  runMax = mNew;
}

/** acc_q = acc_q*corr_q + sum_{i<cnt_q} p_q[i]*v_i for the group's rows, keys in order. */
template <int NQ, class T>
inline void accumulate(float* const* acc, const float* corr, const float* p, const int* cnt, const T* const* vp,
                       int64_t hd) {
  int maxCnt = 0;
  bool full = true;
  for (int q = 0; q < NQ; q++) {
    maxCnt = std::max(maxCnt, cnt[q]);
    full = full && cnt[q] == kTile;
  }
  int64_t d = 0;
#if STEPWISE_AVX2
  if (full) {
    // Every row takes all 8 keys (all tiles but a row's last): the same FMAs in the same order,
    // without per-key checks, 4 head-dimension vectors at a time so each broadcast weight and
    // each V load serves several FMAs (12 accumulators at NQ = 3).
    constexpr int DC = NQ == 1 ? 8 : 4;
    for (; d + 8 * DC <= hd; d += 8 * DC) {
      __m256 a[NQ][DC];
      for (int q = 0; q < NQ; q++) {
        const __m256 c = _mm256_set1_ps(corr[q]);
        for (int j = 0; j < DC; j++) a[q][j] = _mm256_mul_ps(_mm256_loadu_ps(acc[q] + d + 8 * j), c);
      }
      for (int i = 0; i < kTile; i++) {
        __m256 pb[NQ];
        for (int q = 0; q < NQ; q++) {
          pb[q] = _mm256_broadcast_ss(p + q * kTile + i);
          asm("" : "+x"(pb[q]));
        }
        for (int j = 0; j < DC; j++) {
          __m256 v = load8(vp[i] + d + 8 * j);
          asm("" : "+x"(v));
          for (int q = 0; q < NQ; q++) a[q][j] = _mm256_fmadd_ps(pb[q], v, a[q][j]);
        }
      }
      for (int q = 0; q < NQ; q++)
        for (int j = 0; j < DC; j++) _mm256_storeu_ps(acc[q] + d + 8 * j, a[q][j]);
    }
  }
  for (; d + 8 <= hd; d += 8) {
    __m256 a[NQ];
    for (int q = 0; q < NQ; q++) a[q] = _mm256_mul_ps(_mm256_loadu_ps(acc[q] + d), _mm256_set1_ps(corr[q]));
    for (int i = 0; i < maxCnt; i++) {
      const __m256 v = load8(vp[i] + d);
      for (int q = 0; q < NQ; q++) {
        if (i < cnt[q]) a[q] = _mm256_fmadd_ps(_mm256_set1_ps(p[q * kTile + i]), v, a[q]);
      }
    }
    for (int q = 0; q < NQ; q++) _mm256_storeu_ps(acc[q] + d, a[q]);
  }
  for (; d < hd; d++) {
    for (int q = 0; q < NQ; q++) {
      float a = acc[q][d] * corr[q];
      for (int i = 0; i < cnt[q]; i++) a = std::fma(p[q * kTile + i], elem(vp[i], d), a);
      acc[q][d] = a;
    }
  }
#else
  for (; d < hd; d++) {
    for (int q = 0; q < NQ; q++) {
      float a = acc[q][d] * corr[q];
      for (int i = 0; i < cnt[q]; i++) a += p[q * kTile + i] * elem(vp[i], d);
      acc[q][d] = a;
    }
  }
#endif
}

/** Attention for NQ rows of one sequence (batch rows r[0..NQ)) and KV heads g0..g1-1. */
/** T: the element type read (float: f32 caches and decoded q8_0 rows; uint16_t: f16 caches). */
template <int NQ, class T>
void attendGroup(const Job& job, const int64_t* r, int64_t g0, int64_t g1, Scratch& scratch) {
  const PagedKv& kv = *job.kv;
  const int64_t hd = kv.headDim;
  const int64_t G = job.G;
  const int64_t qDim = job.nHeads * hd;
  const int64_t kvDim = kv.nKvHeads * hd;
  const int64_t heads = (g1 - g0) * G;  // query heads this task covers
  const int32_t* bt = job.rows->blockTables + static_cast<int64_t>(job.rows->rowSeq[r[0]]) * job.rows->maxBlocksPerSeq;

  int64_t n[NQ];
  int64_t lo[NQ];  // first key each row sees (its sliding window's start)
  int64_t nMax = 0;
  int64_t loMin = INT64_MAX;
  for (int q = 0; q < NQ; q++) {
    n[q] = static_cast<int64_t>(job.rows->positions[r[q]]) + 1;
    lo[q] = job.window > 0 ? std::max<int64_t>(0, n[q] - job.window) : 0;
    nMax = std::max(nMax, n[q]);
    loMin = std::min(loMin, lo[q]);
  }
  // Scratch: accumulators [NQ][heads][hd], then each (row, head)'s running max and sum.
  float* accBase = scratch.need(scratch.a, static_cast<size_t>(NQ * heads * (hd + 2)));
  float* runMax = accBase + NQ * heads * hd;
  float* runSum = runMax + NQ * heads;
  std::fill(accBase, accBase + NQ * heads * hd, 0.0f);
  std::fill(runMax, runMax + NQ * heads, -std::numeric_limits<float>::infinity());
  std::fill(runSum, runSum + NQ * heads, 0.0f);
  const bool decode = kv.dtype == KvDtype::Q8_0;
  float* kvBuf = decode ? scratch.need(scratch.b, static_cast<size_t>(2 * kTile * hd)) : nullptr;
  const int64_t rowBytes = kvRowBytes(kv.dtype, kvDim);

  const T* kp[kTile];
  const T* vp[kTile];
  alignas(32) float s[QR * kTile];
  alignas(32) float p[QR * kTile];
  float corr[QR];
  int cnt[QR];
  int start[QR];
  const float* qv[QR];
  float* acc[QR];
  // Tiles stay aligned to absolute positions (multiples of kTile) so a row meets the same tiles
  // whatever group it is in; tiles wholly before a row's window are skipped for that row.
  for (int64_t t0 = loMin / kTile * kTile; t0 < nMax; t0 += kTile) {
    const int tileCnt = static_cast<int>(std::min<int64_t>(kTile, nMax - t0));
    int64_t slot[kTile];
    for (int i = 0; i < kTile; i++) {
      // Past the last key, point at a real key; its score is masked.
      const int64_t pos = t0 + std::min(i, tileCnt - 1);
      slot[i] = static_cast<int64_t>(bt[pos / kv.blockSize]) * kv.blockSize + pos % kv.blockSize;
    }
    for (int q = 0; q < NQ; q++) {
      cnt[q] = static_cast<int>(std::clamp<int64_t>(n[q] - t0, 0, kTile));
      start[q] = static_cast<int>(std::clamp<int64_t>(lo[q] - t0, 0, kTile));
      if (start[q] >= cnt[q]) cnt[q] = 0;  // nothing of this tile is in the row's window
    }
    for (int64_t g = g0; g < g1; g++) {
      for (int i = 0; i < kTile; i++) {
        const uint8_t* krow = kv.k + slot[i] * rowBytes;
        const uint8_t* vrow = kv.v + slot[i] * rowBytes;
        if (!decode) {
          kp[i] = reinterpret_cast<const T*>(krow) + g * hd;
          vp[i] = reinterpret_cast<const T*>(vrow) + g * hd;
        } else if constexpr (std::is_same_v<T, float>) {
          // q8_0 rows are decoded once per tile and KV head (exactly), then every query row and
          // head of the group reads the floats: the same arithmetic as an f32 cache after that.
          readKvRow(kv.dtype, krow, g * hd, hd, kvBuf + i * hd);
          readKvRow(kv.dtype, vrow, g * hd, hd, kvBuf + (kTile + i) * hd);
          kp[i] = kvBuf + i * hd;
          vp[i] = kvBuf + (kTile + i) * hd;
        }
      }
      for (int64_t hq = 0; hq < G; hq++) {
        const int64_t h = g * G + hq;            // query head
        const int64_t hl = (g - g0) * G + hq;    // its index within this task
        for (int q = 0; q < NQ; q++) {
          qv[q] = job.q + r[q] * qDim + h * hd;
          acc[q] = accBase + (q * heads + hl) * hd;
        }
        if constexpr (NQ == 1) {
          scores<1, 8, T>(qv, kp, hd, s, 0);
        } else {
          scores<NQ, 4, T>(qv, kp, hd, s, 0);
          scores<NQ, 4, T>(qv, kp + 4, hd, s, 4);
        }
        for (int q = 0; q < NQ; q++) {
          // A row whose keys are all done keeps its accumulator as is (corr 1, no values).
          corr[q] = 1.0f;
          if (cnt[q] > 0) {
            softmaxTile(s + q * kTile, start[q], cnt[q], job.scale, runMax[q * heads + hl], runSum[q * heads + hl], p + q * kTile, &corr[q]);
          }
        }
        accumulate<NQ, T>(acc, corr, p, cnt, vp, hd);
      }
    }
  }
  for (int q = 0; q < NQ; q++) {
    for (int64_t hl = 0; hl < heads; hl++) {
      const float* a = accBase + (q * heads + hl) * hd;
      const float sum = runSum[q * heads + hl];
      float* o = job.out + r[q] * qDim + (g0 * G + hl) * hd;
      for (int64_t d = 0; d < hd; d++) o[d] = a[d] / sum;
    }
  }
}

/** The 8-lane kernel for rows r0 .. r0+nRows-1 (nRows <= QR) of one sequence, KV heads g0..g1-1. */
template <class T>
void attendRows(const Job& job, int64_t r0, int nRows, int64_t g0, int64_t g1, Scratch& scratch) {
  const int64_t r[QR] = {r0, r0 + 1, r0 + 2};
  switch (nRows) {
    case 1: attendGroup<1, T>(job, r, g0, g1, scratch); break;
    case 2: attendGroup<2, T>(job, r, g0, g1, scratch); break;
    default: attendGroup<3, T>(job, r, g0, g1, scratch); break;
  }
}

}  // namespace
}  // namespace stepwise
#endif

namespace stepwise {
namespace {
#if STEPWISE_AVX512
using attn512::attendRows;
constexpr int kGroupRows = attn512::kGroupRows;
#else
constexpr int kGroupRows = QR;
#endif
}  // namespace

void attention(Context& ctx, float* out, const float* q, const PagedKv& kv, const AttentionRows& rows, int64_t nHeads,
               float scale, int64_t window) {
  if (rows.numRows <= 0) return;
  const int64_t hd = kv.headDim;
  const Job job{out, q, &kv, &rows, nHeads, nHeads / kv.nKvHeads, scale, window};

  // Groups of up to kGroupRows consecutive rows of one sequence: start index, size, keys read.
  struct Group {
    int64_t r0;
    int size;
    int64_t keys;
  };
  std::vector<Group> groups;
  int64_t work = 0;
  for (int64_t r = 0; r < rows.numRows; r++) {
    const int64_t pos = static_cast<int64_t>(rows.positions[r]) + 1;
    const int64_t keys = window > 0 ? std::min(pos, window) : pos;
    work += keys * nHeads * hd;
    if (!groups.empty() && groups.back().size < kGroupRows && rows.rowSeq[groups.back().r0] == rows.rowSeq[r]) {
      groups.back().size++;
      groups.back().keys = std::max(groups.back().keys, keys);
    } else {
      groups.push_back({r, 1, keys});
    }
  }
  // The costliest groups first (a prompt's last rows see the most keys), so the threads do not
  // wait on one long task at the end. The order changes no result: tasks are independent.
  std::stable_sort(groups.begin(), groups.end(), [](const Group& a, const Group& b) { return a.keys * a.size > b.keys * b.size; });
  // KV heads per task: all of them unless that leaves fewer tasks than threads. One decode row on
  // 2 threads: 2 tasks of 6 heads, each reading one stretch of every cached key row, rather than
  // 6 of 2 heads (a third of a stretch each): 20% less attention time per decode step on the 110m
  // shape (a cold cache, the weights streamed between layers), alternating runs.
  const int64_t numGroups = static_cast<int64_t>(groups.size());
  const int64_t wantTasks = ctx.pool.size();
  const int64_t chunks = std::min(kv.nKvHeads, std::max<int64_t>(1, (wantTasks + numGroups - 1) / numGroups));
  const int64_t perChunk = (kv.nKvHeads + chunks - 1) / chunks;
  const int64_t headChunks = (kv.nKvHeads + perChunk - 1) / perChunk;

  const auto task = [&](int64_t t, int tid) {
    const Group& grp = groups[static_cast<size_t>(t / headChunks)];
    const int64_t g0 = (t % headChunks) * perChunk;
    const int64_t g1 = std::min(kv.nKvHeads, g0 + perChunk);
    Scratch& sc = ctx.scratch[static_cast<size_t>(tid)];
    if (kv.dtype == KvDtype::F16) {
      attendRows<uint16_t>(job, grp.r0, grp.size, g0, g1, sc);
    } else {
      attendRows<float>(job, grp.r0, grp.size, g0, g1, sc);
    }
  };
  const int64_t ntasks = numGroups * headChunks;
  if (work < kParallelWork) {
    for (int64_t t = 0; t < ntasks; t++) task(t, 0);
  } else {
    ctx.pool.parallelFor(ntasks, task);
  }
}

}  // namespace stepwise
