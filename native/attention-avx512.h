// The AVX-512 attention kernel: flash attention over query tiles, 16 keys per tile (attention.cc
// includes this in the avx512 variant only; the avx2 and generic variants keep the 8-lane kernel).
//
// Work unit: up to kGroupRows consecutive rows of one sequence times a range of KV heads. For one
// KV head, each (row, query head sharing that KV head) is a "query vector"; the group walks its
// keys in tiles of 16 aligned to absolute positions (0-15, 16-31, ...) and takes its live vectors
// kBlock at a time, so each K and V load (f16 converted as loaded) serves up to 4 vectors:
//   1. scores: for 4 keys at a time, one 16-lane accumulator per (vector, key), lane j summing
//      head-dimension elements d = j, j+16, ... (a head-width tail is one more masked chunk);
//      then a transpose-and-add tree turns 16 keys' accumulators into one vector whose lane i is
//      key i's score, each folded by foldLanes16's tree (lane i + lane i+8, then the 8-lane tree)
//      with no per-score horizontal sum;
//   2. online softmax per vector: the tile's max (exact in any order), a 16-lane polynomial exp
//      (exp16), the running sum kept per lane and folded once at the end, and one rescale of the
//      accumulator per tile (e^(m_old - m_new), exp16 again, for the block's vectors at once);
//   3. values: acc = acc*corr, then acc += p_i * v_i for the tile's keys in order, 4 head-dimension
//      vectors at a time so each broadcast weight and each V load serves several FMAs.
// Per tile, steps 1-2 run for every block of the KV heads in the current pass before step 3 does,
// so blocks' softmax chains overlap; the next tile's K/V rows are prefetched meanwhile.
//
// Batch invariance: a vector's float operations depend only on its own query, its position (which
// tiles it sees, and its mask within the first and last of them) and the cached K/V. Blocking only
// interleaves independent vectors' identical sequences: a decode row (a group of one) runs exactly
// the operations it would run inside a 512-row prompt. Keys outside a vector's range in a partial
// tile are masked out of the value FMAs (not multiplied by a zero weight), so whatever keys share
// its tile in this batch cannot touch its accumulator, not even a zero's sign.
//
// attention.cc includes this file inside its own anonymous namespace, after its Job struct.
#pragma once

#if STEPWISE_AVX512

namespace attn512 {

constexpr int kTile = 16;       // keys per tile: one per lane of a score vector
constexpr int kGroupRows = 16;  // rows of one sequence per task: each K/V tile is read once for them
constexpr int kBlock = 4;       // query vectors per register block (4x4 score accumulators)

/** 16 head-dimension elements from p as floats, lanes outside m zero (and not read). */
inline __m512 load16(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
inline __m512 load16(const uint16_t* p, __mmask16 m) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p)); }

// The score tree. A key's 16 lanes l0..l15 must end as ((t0+t1)+(t2+t3))+((t4+t5)+(t6+t7)) with
// t_i = l_i + l_{i+8}, whichever vector and tile it is in; each step below adds two lanes of the
// same key, and pairs two keys' (or key sets') data in one vector so no add is wasted.

/** Keys a, b -> [t0..t7 of a | t0..t7 of b]. */
inline __m512 foldHalves(__m512 a, __m512 b) {
  return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0)), _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
}

/** Adds neighbouring lanes (0+1, 2+3) within each 128-bit chunk, x's pairs before y's. */
inline __m512 foldPairs(__m512 x, __m512 y) {
  return _mm512_add_ps(_mm512_shuffle_ps(x, y, _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_ps(x, y, _MM_SHUFFLE(3, 1, 3, 1)));
}

/** Adds 128-bit chunks 0+1 and 2+3 of x, then of y: [x01 | x23 | y01 | y23]. */
inline __m512 foldChunks(__m512 x, __m512 y) {
  return _mm512_add_ps(_mm512_shuffle_f32x4(x, y, _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_f32x4(x, y, _MM_SHUFFLE(3, 1, 3, 1)));
}

/**
 * The tree's first two steps for 4 keys (a, b, c, d): chunk 0 holds a's (t0+t1, t2+t3) and c's,
 * chunk 1 their (t4+t5, t6+t7), chunks 2-3 the same for b and d.
 */
inline __m512 fold4Keys(__m512 a, __m512 b, __m512 c, __m512 d) { return foldPairs(foldHalves(a, b), foldHalves(c, d)); }

/**
 * Scores of NB query vectors against the tile's 16 keys: s[v] lane i = q_v . k_i, each dot product
 * in foldLanes16's order. Keys go 4 per pass, in the order (0,4,1,5), (2,6,3,7), (8,12,9,13),
 * (10,14,11,15), which is the order that leaves key i in lane i after the last two tree steps
 * (foldPairs of two passes gives 8 keys' half sums; foldChunks of two such gives the 16 scores).
 */
template <int NB, int CH, class T>
inline void scoreTile(const float* const* qv, const T* const* kp, int64_t hd, __m512* s) {
  // CH > 0: the head width is CH whole chunks, known here, so the loop unrolls with plain loads.
  const int64_t chunks = CH > 0 ? CH : (hd + 15) / 16;
  const __mmask16 tail = CH == 0 && hd % 16 ? static_cast<__mmask16>((1u << (hd % 16)) - 1) : static_cast<__mmask16>(0xFFFF);
  __m512 pairDone[NB];  // the pass just before (even passes)
  __m512 lowKeys[NB];   // keys 0-7 after three tree steps
  for (int pass = 0; pass < 4; pass++) {
    const int base = (pass / 2) * 8 + (pass % 2) * 2;
    const T* k4[4] = {kp[base], kp[base + 4], kp[base + 1], kp[base + 5]};
    __m512 a[NB][4];
    for (int v = 0; v < NB; v++)
      for (int i = 0; i < 4; i++) a[v][i] = _mm512_setzero_ps();
    for (int64_t c = 0; c < chunks; c++) {
      const __mmask16 m = c == chunks - 1 ? tail : static_cast<__mmask16>(0xFFFF);
      __m512 qx[NB];
      for (int v = 0; v < NB; v++) qx[v] = _mm512_maskz_loadu_ps(m, qv[v] + 16 * c);
      for (int i = 0; i < 4; i++) {
        const __m512 kx = load16(k4[i] + 16 * c, m);
        for (int v = 0; v < NB; v++) a[v][i] = _mm512_fmadd_ps(qx[v], kx, a[v][i]);
      }
    }
    for (int v = 0; v < NB; v++) {
      const __m512 u = fold4Keys(a[v][0], a[v][1], a[v][2], a[v][3]);
      if (pass % 2 == 0) {
        pairDone[v] = u;
      } else if (pass == 1) {
        lowKeys[v] = foldPairs(pairDone[v], u);
      } else {
        s[v] = foldChunks(lowKeys[v], foldPairs(pairDone[v], u));
      }
    }
  }
}

/**
 * One query vector (a row and a query head) of a pass: where its query and output are, its row in
 * the group, and its state: accumulator (hd floats), running max, per-lane running sums, and the
 * current tile's weights and rescale factor (from the softmax to the values).
 */
struct VecState {
  const float* q;
  float* out;
  int row;
  float* acc;
  float* runMax;
  float* runSum;  // 16 lanes
  float* p;       // 16 weights
  float* corr;
};

/**
 * The maxima of 4 score vectors, in lanes 0-3 (max is exact, so the tree only has to keep a
 * vector's lanes apart from the others'): the score tree's shuffles with max for add, then one
 * permute. A shorter chain than 4 separate reductions, with no scalar round trip.
 */
inline __m128 max4(__m512 a, __m512 b, __m512 c, __m512 d) {
  const auto halves = [](__m512 x, __m512 y) {
    return _mm512_max_ps(_mm512_shuffle_f32x4(x, y, _MM_SHUFFLE(1, 0, 1, 0)), _mm512_shuffle_f32x4(x, y, _MM_SHUFFLE(3, 2, 3, 2)));
  };
  const __m512 ab = halves(a, b);  // [a: 8 | b: 8]
  const __m512 cd = halves(c, d);
  // Per 128-bit chunk: a's (or b's) 2 pair maxima, then c's (or d's).
  __m512 m = _mm512_max_ps(_mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 1, 3, 1)));
  m = _mm512_max_ps(m, _mm512_shuffle_ps(m, m, _MM_SHUFFLE(2, 3, 0, 1)));     // chunk: [a a c c] of its 4 lanes
  m = _mm512_max_ps(m, _mm512_shuffle_f32x4(m, m, _MM_SHUFFLE(2, 3, 0, 1)));  // chunks 0/1: a, c; 2/3: b, d
  return _mm512_castps512_ps128(_mm512_permutexvar_ps(_mm512_setr_epi32(0, 8, 2, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), m));
}

/**
 * Online softmax for NB vectors on one tile: scales the scores, masks lanes outside live[v] to
 * -inf, moves each running max to include the tile, and leaves the weights in p and the
 * accumulator's rescale factor in corr (e^(m_old - m_new): 1 exactly when the max stands, 0 on a
 * vector's first tile). The running sums take the rescale and the weights lane by lane.
 */
template <int NB>
inline void softmaxTile(const __m512* s, const __mmask16* live, float scale, const VecState* st) {
  const __m512 negInf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __m512 sv[4];
  float old[4] = {0, 0, 0, 0};
  for (int v = 0; v < NB; v++) {
    sv[v] = _mm512_mask_mul_ps(negInf, live[v], s[v], _mm512_set1_ps(scale));
    old[v] = *st[v].runMax;
  }
  for (int v = NB; v < 4; v++) sv[v] = sv[0];  // unused lanes
  const __m128 mOld = _mm_setr_ps(old[0], old[1], old[2], old[3]);
  const __m128 mNew = _mm_max_ps(mOld, max4(sv[0], sv[1], sv[2], sv[3]));
  // All NB factors in one exp16 (lanes are independent: a vector's factor is the same bits in any
  // block). Where no max moved, every factor is e^0 = 1 exactly, so the exp is skipped.
  alignas(16) float corr[4];
  alignas(16) float mn[4];
  _mm_store_ps(mn, mNew);
  if ((_mm_cmp_ps_mask(mOld, mNew, _CMP_NEQ_UQ) & ((1 << NB) - 1)) == 0) {
    _mm_store_ps(corr, _mm_set1_ps(1.0f));
  } else {
    _mm_store_ps(corr, _mm512_castps512_ps128(exp16(_mm512_zextps128_ps512(_mm_sub_ps(mOld, mNew)))));
  }
  for (int v = 0; v < NB; v++) {
    const __m512 pv = exp16(_mm512_sub_ps(sv[v], _mm512_set1_ps(mn[v])));  // exp16(-inf) = 0
    _mm512_storeu_ps(st[v].p, pv);
    _mm512_storeu_ps(st[v].runSum, _mm512_fmadd_ps(_mm512_loadu_ps(st[v].runSum), _mm512_set1_ps(corr[v]), pv));
    *st[v].runMax = mn[v];
    *st[v].corr = corr[v];
  }
}

/** Scores and softmax of one tile for a block of NB query vectors. */
template <int NB, class T>
inline void weighBlock(const float* const* qv, const VecState* st, const __mmask16* live, const T* const* kp, int64_t hd,
                       float scale) {
  __m512 s[NB];
  if (hd == 64) {
    scoreTile<NB, 4, T>(qv, kp, hd, s);
  } else if (hd == 128) {
    scoreTile<NB, 8, T>(qv, kp, hd, s);
  } else {
    scoreTile<NB, 0, T>(qv, kp, hd, s);
  }
  softmaxTile<NB>(s, live, scale, st);
}

/**
 * acc_v[d0 .. d0+16*DC) = acc_v*corr_v + sum_i p_v[i]*v_i for the tile's keys in order; chunk j's
 * lanes outside m[j] (the head-width tail) are neither read nor written. Full: every vector takes
 * all 16 keys; otherwise key i goes into vector v only where bit i of live[v] is set, by a masked
 * FMA, which leaves the other lanes exactly as they were (the same bits as the full path's FMAs
 * for the keys it does take).
 */
template <int NB, int DC, bool Full, bool Whole, class T>
inline void addValues(const VecState* st, int64_t d0, const __mmask16* m, const __mmask16* live, const T* const* vp) {
  // Whole: all DC chunks are whole, so the masks are constants and the loads plain.
  __mmask16 mk[DC];
  for (int j = 0; j < DC; j++) mk[j] = Whole ? static_cast<__mmask16>(0xFFFF) : m[j];
  __m512 a[NB][DC];
  for (int v = 0; v < NB; v++) {
    const __m512 c = _mm512_set1_ps(*st[v].corr);
    for (int j = 0; j < DC; j++) a[v][j] = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk[j], st[v].acc + d0 + 16 * j), c);
  }
  for (int i = 0; i < kTile; i++) {
    __m512 vx[DC];
    for (int j = 0; j < DC; j++) vx[j] = load16(vp[i] + d0 + 16 * j, mk[j]);
    for (int v = 0; v < NB; v++) {
      const __m512 pb = _mm512_set1_ps(st[v].p[i]);
      if constexpr (Full) {
        for (int j = 0; j < DC; j++) a[v][j] = _mm512_fmadd_ps(pb, vx[j], a[v][j]);
      } else {
        const __mmask16 take = static_cast<__mmask16>(-((live[v] >> i) & 1));
        for (int j = 0; j < DC; j++) a[v][j] = _mm512_mask3_fmadd_ps(pb, vx[j], a[v][j], take);
      }
    }
  }
  for (int v = 0; v < NB; v++)
    for (int j = 0; j < DC; j++) _mm512_mask_storeu_ps(st[v].acc + d0 + 16 * j, mk[j], a[v][j]);
}

/** addValues for a block of NB vectors over the whole head width, up to 4 chunks (64 elements) at a time. */
template <int NB, class T>
inline void addValuesBlock(const VecState* st, const __mmask16* live, const T* const* vp, int64_t hd) {
  bool full = true;
  for (int v = 0; v < NB; v++) full = full && live[v] == 0xFFFF;
  const int64_t chunks = (hd + 15) / 16;
  const __mmask16 tail = hd % 16 ? static_cast<__mmask16>((1u << (hd % 16)) - 1) : static_cast<__mmask16>(0xFFFF);
  for (int64_t c0 = 0; c0 < chunks; c0 += 4) {
    __mmask16 m[4];
    for (int j = 0; j < 4; j++) m[j] = c0 + j == chunks - 1 ? tail : static_cast<__mmask16>(0xFFFF);
    const int64_t dc = std::min<int64_t>(4, chunks - c0);
    const bool whole = dc == 4 && (c0 + 4 < chunks || hd % 16 == 0);
    if (full && whole) {
      addValues<NB, 4, true, true, T>(st, 16 * c0, m, live, vp);  // the common case
    } else if (whole) {
      addValues<NB, 4, false, true, T>(st, 16 * c0, m, live, vp);
    } else if (full) {
      switch (dc) {
        case 1: addValues<NB, 1, true, false, T>(st, 16 * c0, m, live, vp); break;
        case 2: addValues<NB, 2, true, false, T>(st, 16 * c0, m, live, vp); break;
        case 3: addValues<NB, 3, true, false, T>(st, 16 * c0, m, live, vp); break;
        default: addValues<NB, 4, true, false, T>(st, 16 * c0, m, live, vp); break;
      }
    } else {
      switch (dc) {
        case 1: addValues<NB, 1, false, false, T>(st, 16 * c0, m, live, vp); break;
        case 2: addValues<NB, 2, false, false, T>(st, 16 * c0, m, live, vp); break;
        case 3: addValues<NB, 3, false, false, T>(st, 16 * c0, m, live, vp); break;
        default: addValues<NB, 4, false, false, T>(st, 16 * c0, m, live, vp); break;
      }
    }
  }
}

/**
 * The K (or V) rows of a tile's 16 keys for KV head g. f16 / f32 caches are read in place; q8_0
 * rows are decoded (exactly) into buf, once per tile and head, and then read as an f32 cache.
 * offsets: the keys' byte offsets in the cache (past the group's last key, copies of it).
 */
template <class T>
inline void tileRows(const PagedKv& kv, const uint8_t* cache, const int64_t* offsets, int64_t g, float* buf, const T** out) {
  const int64_t hd = kv.headDim;
  if (kv.dtype != KvDtype::Q8_0) {
    for (int i = 0; i < kTile; i++) out[i] = reinterpret_cast<const T*>(cache + offsets[i]) + g * hd;
  } else if constexpr (std::is_same_v<T, float>) {
    for (int i = 0; i < kTile; i++) {
      const bool fresh = i == 0 || offsets[i] != offsets[i - 1];
      if (fresh) readKvRow(kv.dtype, cache + offsets[i], g * hd, hd, buf + i * hd);
      out[i] = fresh ? buf + i * hd : out[i - 1];
    }
  }
}

/**
 * Asks for KV head g's rows of the next tile (K or V: cache). They are a pass's work away, and
 * decode streams the cache from memory: 16 rows a whole cache row apart, which the hardware
 * prefetchers do not follow. K ahead of the scores and V ahead of the values spreads the requests.
 */
// Always inlined: GCC finds a function whose only effect is prefetching free of side effects and
// drops the calls to it.
__attribute__((always_inline)) inline void prefetchTile(const PagedKv& kv, const uint8_t* cache, const int64_t* offsets,
                                                        int64_t g) {
  const int64_t bytes = kvRowBytes(kv.dtype, kv.headDim);
  const int64_t at = kvRowBytes(kv.dtype, g * kv.headDim);
  for (int i = 0; i < kTile; i++)
    for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(cache + offsets[i] + at + o, 0, 3);
}

/** out = acc / (the 16 lane sums folded by foldLanes16's tree). */
inline void writeOutput(const VecState& s, int64_t hd, float* o) {
  const __m512 sum = _mm512_set1_ps(foldLanes16(s.runSum));
  for (int64_t d = 0; d < hd; d += 16) {
    const __mmask16 m = hd - d >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (hd - d)) - 1);
    _mm512_mask_storeu_ps(o + d, m, _mm512_div_ps(_mm512_maskz_loadu_ps(m, s.acc + d), sum));
  }
}

// Vector state a pass over KV heads keeps (the rest of L1 holds the tile's K and V).
constexpr int64_t kStateBytes = 16 * 1024;

/** A head's live vectors (indices into hs), kBlock at a time: fn(nb, their states, their live masks). */
template <class F>
inline void forBlocks(const VecState* hs, const int64_t* live, int64_t nLive, const __mmask16* liveOf, F&& fn) {
  for (int64_t b = 0; b < nLive; b += kBlock) {
    const int nb = static_cast<int>(std::min<int64_t>(kBlock, nLive - b));
    VecState bs[kBlock];
    __mmask16 masks[kBlock];
    for (int j = 0; j < nb; j++) {
      bs[j] = hs[live[b + j]];
      masks[j] = liveOf[bs[j].row];
    }
    fn(nb, bs, masks);
  }
}

/**
 * Attention for rows r0 .. r0+nRows-1 (one sequence, consecutive batch rows) and KV heads g0..g1-1.
 * T: the element type read (float: f32 caches and decoded q8_0 rows; uint16_t: f16 caches).
 *
 * The KV heads go in passes of as many as keep their vectors' state within kStateBytes: a decode
 * row takes all heads per tile, a prompt's group a few. Per tile, first every live vector's scores
 * and weights (independent blocks, so one block's softmax latency hides behind the next block's
 * FMAs), then every vector's values. Loop order changes no arithmetic.
 */
template <class T>
void attendRows(const Job& job, int64_t r0, int nRows, int64_t g0, int64_t g1, Scratch& scratch) {
  const PagedKv& kv = *job.kv;
  const int64_t hd = kv.headDim;
  const int64_t G = job.G;
  const int64_t qDim = job.nHeads * hd;
  const int64_t rowBytes = kvRowBytes(kv.dtype, kv.nKvHeads * hd);
  const int32_t* bt = job.rows->blockTables + static_cast<int64_t>(job.rows->rowSeq[r0]) * job.rows->maxBlocksPerSeq;

  int64_t n[kGroupRows];   // keys each row sees: positions 0 .. n-1
  int64_t lo[kGroupRows];  // its first key (the sliding window's start)
  int64_t nMax = 0;
  int64_t loMin = INT64_MAX;
  for (int q = 0; q < nRows; q++) {
    n[q] = static_cast<int64_t>(job.rows->positions[r0 + q]) + 1;
    lo[q] = job.window > 0 ? std::max<int64_t>(0, n[q] - job.window) : 0;
    nMax = std::max(nMax, n[q]);
    loMin = std::min(loMin, lo[q]);
  }
  // Tiles stay aligned to absolute positions so a row meets the same tiles whatever its group.
  // Each key's byte offset in the cache, once for all heads; past the last key, the last key's.
  const int64_t first = loMin / kTile * kTile;
  const int64_t tiles = (nMax - first + kTile - 1) / kTile;
  std::vector<int64_t> offsets(static_cast<size_t>(tiles * kTile));
  for (int64_t i = 0; i < tiles * kTile; i++) {
    const int64_t pos = std::min(first + i, nMax - 1);
    offsets[static_cast<size_t>(i)] = (static_cast<int64_t>(bt[pos / kv.blockSize]) * kv.blockSize + pos % kv.blockSize) * rowBytes;
  }
  // Scratch per pass, per vector (vector = row*G + query head, heads of a pass one after another):
  // accumulator (rounded up to whole 16-lane chunks), 16 lane sums, 16 weights, max, rescale.
  const int64_t perHead = nRows * G;
  const int64_t hdPad = (hd + 15) / 16 * 16;
  const int64_t floatsPerVec = hdPad + 34;
  const int64_t pass = std::clamp<int64_t>(kStateBytes / (perHead * floatsPerVec * 4), 1, g1 - g0);
  float* base = scratch.need(scratch.a, static_cast<size_t>(pass * perHead * floatsPerVec));
  std::vector<VecState> st(static_cast<size_t>(pass * perHead));
  std::vector<int64_t> live(static_cast<size_t>(perHead));  // a tile's live vectors
  float* kvBuf = kv.dtype == KvDtype::Q8_0 ? scratch.need(scratch.b, static_cast<size_t>(kTile * hd)) : nullptr;

  for (int64_t gp = g0; gp < g1; gp += pass) {
    const int64_t gEnd = std::min(g1, gp + pass);
    VecState* v = st.data();
    float* f = base;
    for (int64_t g = gp; g < gEnd; g++) {
      for (int q = 0; q < nRows; q++) {
        for (int64_t hq = 0; hq < G; hq++, v++, f += floatsPerVec) {
          const int64_t at = (r0 + q) * qDim + (g * G + hq) * hd;
          *v = {job.q + at, job.out + at, q, f, f + hdPad, f + hdPad + 1, f + hdPad + 17, f + hdPad + 33};
          std::fill(f, f + hdPad + 17, 0.0f);
          *v->runMax = -std::numeric_limits<float>::infinity();
        }
      }
    }
    for (int64_t t = 0; t < tiles; t++) {
      const int64_t t0 = first + t * kTile;
      const int64_t* off = offsets.data() + t * kTile;
      // Each row's keys in this tile as a lane mask: [start, cnt) within its window and position.
      __mmask16 liveOf[kGroupRows];
      int64_t nLive = 0;
      for (int q = 0; q < nRows; q++) {
        const int64_t cnt = std::clamp<int64_t>(n[q] - t0, 0, kTile);
        const int64_t start = std::clamp<int64_t>(lo[q] - t0, 0, kTile);
        liveOf[q] = static_cast<__mmask16>(((1u << cnt) - 1) & ~((1u << start) - 1));
        if (liveOf[q] != 0)
          for (int64_t hq = 0; hq < G; hq++) live[static_cast<size_t>(nLive++)] = q * G + hq;
      }
      for (int64_t g = gp; g < gEnd; g++) {
        if (t + 1 < tiles) prefetchTile(kv, kv.k, off + kTile, g);
        const T* kp[kTile];
        tileRows<T>(kv, kv.k, off, g, kvBuf, kp);
        forBlocks(st.data() + (g - gp) * perHead, live.data(), nLive, liveOf, [&](int nb, const VecState* bs, const __mmask16* masks) {
          const float* qv[kBlock];
          for (int j = 0; j < nb; j++) qv[j] = bs[j].q;
          switch (nb) {
            case 1: weighBlock<1, T>(qv, bs, masks, kp, hd, job.scale); break;
            case 2: weighBlock<2, T>(qv, bs, masks, kp, hd, job.scale); break;
            case 3: weighBlock<3, T>(qv, bs, masks, kp, hd, job.scale); break;
            default: weighBlock<4, T>(qv, bs, masks, kp, hd, job.scale); break;
          }
        });
      }
      for (int64_t g = gp; g < gEnd; g++) {
        if (t + 1 < tiles) prefetchTile(kv, kv.v, off + kTile, g);
        const T* vp[kTile];
        tileRows<T>(kv, kv.v, off, g, kvBuf, vp);
        forBlocks(st.data() + (g - gp) * perHead, live.data(), nLive, liveOf, [&](int nb, const VecState* bs, const __mmask16* masks) {
          switch (nb) {
            case 1: addValuesBlock<1, T>(bs, masks, vp, hd); break;
            case 2: addValuesBlock<2, T>(bs, masks, vp, hd); break;
            case 3: addValuesBlock<3, T>(bs, masks, vp, hd); break;
            default: addValuesBlock<4, T>(bs, masks, vp, hd); break;
          }
        });
      }
    }
    for (const VecState* s = st.data(); s != v; s++) writeOutput(*s, hd, s->out);
  }
}

}  // namespace attn512

#endif
