// GEMM for the interleaved float forms of qrepack.cc (f32 / f16 / bf16 weights, AVX-512 build):
// out[m][n] = sum_k x[m][k] * W[n][k], with 16 weight rows stored side by side (element k of row r
// of a group at 16k + r).
//
// Outputs in lanes. One weight vector holds column k of 16 rows; x[m][k] is broadcast and one FMA
// adds into 16 outputs. A tile is G groups x MR activation rows: per column, G weight loads (f16 /
// bf16 widened as loaded) and MR broadcasts feed G*MR FMAs into register accumulators (4 x 6). The row
// form (matmul.cc) keeps 16 partial sums per output and folds them at the end; with short rows
// (768 columns) the folds and the activation vectors streamed per tile bound it at about half the
// FMA peak. Here nothing is folded and an activation column is 4 bytes per row.
//
// Batch invariance: every output is the same sum whatever the tile shape, M, thread or chunk of
// activation rows (chains of FMAs over 64-column blocks in order, added in order); rows only sit
// in different lanes.
#include <algorithm>
#include <array>
#include <utility>

#include "float-weights.h"
#include "kernels.h"
#include "simd.h"

#if STEPWISE_AVX512

namespace stepwise {
namespace {

constexpr int GMAX = 4;          // groups per tile (fewer at the tensor's end)
constexpr int MR = 6;            // activation rows per tile: 24 accumulators, 4 weight vectors, 1 broadcast
constexpr int64_t MC = 96;       // activation rows per task

/**
 * G groups x R activation rows. w: the tile's first group (groups 16K elements apart); x: the
 * first activation row (rows ldx apart); out: row 0's outputs of the tile's first weight row (rows
 * ldo apart); rows: the tile's weight rows that exist.
 */
template <class W, int G, int R>
void tile(const W* w, int64_t K, const float* x, int64_t ldx, float* out, int64_t ldo, int rows) {
  // A chain of FMAs over all K columns rounds K times into one sum; chains of KB columns added
  // into a total (kept in memory: the registers hold the chains) round about KB + K/KB times,
  // as accurate as the row form's 16 lanes.
  constexpr int64_t KB = 64;
  __m512 total[G][R];
  for (int g = 0; g < G; g++)
    for (int m = 0; m < R; m++) total[g][m] = _mm512_setzero_ps();
  for (int64_t k0 = 0; k0 < K; k0 += KB) {
    const int64_t k1 = std::min(K, k0 + KB);
    __m512 acc[G][R];
    for (int g = 0; g < G; g++)
      for (int m = 0; m < R; m++) acc[g][m] = _mm512_setzero_ps();
    for (int64_t k = k0; k < k1; k++) {
      if constexpr (R == 1) {
        // One activation row (decode): every group's stream 2 KB ahead, a line per line read.
        // f16/bf16 output matrix 59-69 -> 64-75 GB/s (alternating in one process; 1 KB ahead
        // gained less, 3 KB nothing); f32 about the same either way.
        constexpr int64_t ahead = 2048 / (16 * static_cast<int64_t>(sizeof(W)));  // columns
        if ((k * static_cast<int64_t>(sizeof(W)) * 16) % 64 == 0)
          for (int g = 0; g < G; g++) __builtin_prefetch(w + (g * K + k + ahead) * 16, 0, 3);
      }
      __m512 wv[G];
      for (int g = 0; g < G; g++) wv[g] = loadW(w + (g * K + k) * 16);
      for (int m = 0; m < R; m++) {
        const __m512 xb = _mm512_set1_ps(x[m * ldx + k]);
        for (int g = 0; g < G; g++) acc[g][m] = _mm512_fmadd_ps(wv[g], xb, acc[g][m]);
      }
    }
    for (int g = 0; g < G; g++)
      for (int m = 0; m < R; m++) total[g][m] = _mm512_add_ps(total[g][m], acc[g][m]);
  }
  for (int g = 0; g < G; g++)
    for (int m = 0; m < R; m++) storeRows16(out + m * ldo + 16 * g, total[g][m], rows - 16 * g);
}

using TileFn = void (*)(const void*, int64_t, const float*, int64_t, float*, int64_t, int);

template <class W, int G, int R>
void tileFn(const void* w, int64_t K, const float* x, int64_t ldx, float* out, int64_t ldo, int rows) {
  tile<W, G, R>(static_cast<const W*>(w), K, x, ldx, out, ldo, rows);
}

template <class W, int G, int... Rs>
constexpr std::array<TileFn, MR> tileRow(std::integer_sequence<int, Rs...>) {
  return {tileFn<W, G, Rs + 1>...};
}

template <class W>
struct Tiles {
  static constexpr std::array<TileFn, MR> fns[GMAX] = {
      tileRow<W, 1>(std::make_integer_sequence<int, MR>{}), tileRow<W, 2>(std::make_integer_sequence<int, MR>{}),
      tileRow<W, 3>(std::make_integer_sequence<int, MR>{}), tileRow<W, 4>(std::make_integer_sequence<int, MR>{}),
  };
};

}  // namespace

void matmulX16(Context& ctx, float* out, const float* x, const uint8_t* w, DType dt, int64_t N, int64_t K, int64_t M) {
  const WeightPart part{w, N, out};
  matmulX16Parts(ctx, &part, 1, x, dt, K, M);
}

void matmulX16Parts(Context& ctx, const WeightPart* parts, int nParts, const float* x, DType dt, int64_t K, int64_t M) {
  const auto& fns = dt == DType::F32_X16 ? Tiles<float>::fns : dt == DType::F16_X16 ? Tiles<Half>::fns : Tiles<BHalf>::fns;
  const size_t groupBytes = static_cast<size_t>(K) * 16 * (dt == DType::F32_X16 ? 4 : 2);
  // 4 groups x 6 rows: at one to a few activation rows the 4 weight streams and chains keep memory
  // busy; at many, it ran as fast as 2 groups x 12 rows (measured), so one shape serves every M.
  const PartGroups pg(parts, nParts, GMAX);
  // Rows m0..m1-1 times groups gA..gB-1 of part i, in tiles of up to GMAX groups.
  const auto multiply = [&](int64_t m0, int64_t m1, int i, int64_t gA, int64_t gB) {
    const WeightPart& p = parts[i];
    for (int64_t g0 = gA; g0 < gB; g0 += GMAX) {
      const int ng = static_cast<int>(std::min<int64_t>(GMAX, gB - g0));
      const int rows = static_cast<int>(std::min<int64_t>(16 * ng, p.rows - 16 * g0));
      for (int64_t m = m0; m < m1; m += MR) {
        const int r = static_cast<int>(std::min<int64_t>(MR, m1 - m));
        fns[ng - 1][r - 1](p.w + static_cast<size_t>(g0) * groupBytes, K, x + m * K, K, p.out + m * p.rows + 16 * g0, p.rows, rows);
      }
    }
  };
  if (M == 1) {
    // One row (decode): one run of consecutive groups per thread, as qmatmulX16Parts does; 12
    // groups (768 rows) as 3 tiles would leave one of two threads a third of the work.
    const int64_t tasks = std::min(pg.groups(), static_cast<int64_t>(ctx.pool.size()));
    ctx.pool.parallelFor(tasks, [&](int64_t task, int) {
      pg.forGroups(pg.groups() * task / tasks, pg.groups() * (task + 1) / tasks, [&](int i, int64_t gA, int64_t gB) { multiply(0, 1, i, gA, gB); });
    });
    return;
  }
  const int64_t chunks = (M + MC - 1) / MC, tiles = pg.tiles();
  ctx.pool.parallelFor(chunks * tiles, [&](int64_t task, int) {
    const int64_t m0 = (task / tiles) * MC;
    pg.forTile(task % tiles, [&](int i, int64_t gA, int64_t gB) { multiply(m0, std::min(M, m0 + MC), i, gA, gB); });
  });
}

}  // namespace stepwise

#endif
