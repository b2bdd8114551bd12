// The kernel entry points the N-API layer calls. Arguments are already validated there: sizes
// fit the buffers and every index is in range.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "dtypes.h"
#include "qblocks.h"
#include "thread-pool.h"

namespace stepwise {

/** Per-thread scratch memory, grown on demand and reused across calls. */
struct Scratch {
  std::vector<float> a;
  std::vector<float> b;
  float* need(std::vector<float>& v, size_t n) {
    if (v.size() < n) v.resize(n);
    return v.data();
  }
};

/**
 * cos/sin of pos * freq[i] for positions 0..n-1, i < ropeDim/2, row-major by position, where
 * freq[i] = freqScale * theta^(-2i/ropeDim) / factor[i] (the factors are Llama 3.1's rope_freqs).
 */
struct RopeTable {
  double theta = 0;
  int64_t ropeDim = -1;
  double freqScale = 1;
  std::vector<float> factors;  // empty: all 1
  int64_t positions = 0;
  std::vector<double> cos, sin;
};

struct Context {
  explicit Context(int threads) : pool(threads), scratch(static_cast<size_t>(pool.size())) {}
  ThreadPool pool;
  std::vector<Scratch> scratch;
  // A few tables, most recently used first: models whose layers alternate RoPE bases (Gemma 3's
  // sliding and global layers) would otherwise rebuild one table on every call.
  std::vector<RopeTable> ropeTables;
  // The activations of the current quantized GEMM (qmatmul.cc), shared by its threads.
  std::vector<QActBlock> qact;
  std::vector<uint8_t> qsummary;  // and what the interleaved GEMM derives from them (qmatmul-x16.cc)
};

/** out[m*N + n] = sum_k x[m*K + k] * W[n][k] for m < M; W is N x K of type dt. */
void matmul(Context& ctx, float* out, const float* x, const uint8_t* w, DType dt, int64_t N, int64_t K, int64_t M);

/** matmul for integer-capable weight types (qtypeInfo(dt).integer): int8 activations, integer dot products. */
void qmatmul(Context& ctx, float* out, const float* x, const uint8_t* w, DType dt, int64_t N, int64_t K, int64_t M);

/** qmatmul for the interleaved forms (qrepack.cc, qmatmul-x16.cc; AVX-512 build only). */
void qmatmulX16(Context& ctx, float* out, const float* x, const uint8_t* w, DType dt, int64_t N, int64_t K, int64_t M);

/** The most weights one multi-weight GEMM takes (a layer's q/k/v is 3). */
inline constexpr int kMaxWeightParts = 8;

/** One weight of a multi-weight GEMM: rows x K of the call's type, and its M x rows output. */
struct WeightPart {
  const uint8_t* w;
  int64_t rows;
  float* out;
};

/**
 * The groups of 16 rows of 1..kMaxWeightParts weights, and their tiles of up to `perTile` groups
 * (a tile never spans two weights), numbered across the weights in order: how a multi-weight GEMM
 * hands them out to threads as if they were one tensor.
 */
class PartGroups {
 public:
  PartGroups(const WeightPart* parts, int nParts, int64_t perTile) : n_(nParts), perTile_(perTile) {
    for (int i = 0; i < nParts; i++) {
      const int64_t g = (parts[i].rows + 15) / 16;
      group_[i + 1] = group_[i] + g;
      tile_[i + 1] = tile_[i] + (g + perTile - 1) / perTile;
    }
  }
  int64_t groups() const { return group_[n_]; }
  int64_t tiles() const { return tile_[n_]; }
  /** fn(part, gA, gB) for tile t: groups gA..gB-1 of that part. */
  template <class F>
  void forTile(int64_t t, F&& fn) const {
    int i = 0;
    while (t >= tile_[i + 1]) i++;
    const int64_t g0 = (t - tile_[i]) * perTile_;
    fn(i, g0, std::min(group_[i + 1] - group_[i], g0 + perTile_));
  }
  /** fn(part, gA, gB) for every part's share of the groups a..b-1 of all parts, in order. */
  template <class F>
  void forGroups(int64_t a, int64_t b, F&& fn) const {
    for (int i = 0; i < n_; i++) {
      const int64_t lo = std::max(a, group_[i]), hi = std::min(b, group_[i + 1]);
      if (lo < hi) fn(i, lo - group_[i], hi - group_[i]);
    }
  }

 private:
  int n_;
  int64_t perTile_;
  // On the stack: this is made on every call.
  std::array<int64_t, kMaxWeightParts + 1> group_{}, tile_{};
};

/**
 * qmatmulX16 for several weights of one interleaved type and width that multiply the same
 * activations (a layer's q/k/v, its gate/up): the activations are quantized once and all the parts'
 * tiles share one round of the pool. Each output has the bits a call of its own gives.
 */
void qmatmulX16Parts(Context& ctx, const WeightPart* parts, int nParts, const float* x, DType dt, int64_t K, int64_t M);  // nParts <= kMaxWeightParts

/**
 * matmul for several weights of type dt and width K over the same activations x: one
 * qmatmulX16Parts or matmulX16Parts call for an interleaved type, else one matmul per part.
 */
void matmulParts(Context& ctx, const WeightPart* parts, int nParts, const float* x, DType dt, int64_t K, int64_t M);

/** matmul for the interleaved float forms (qrepack.cc, matmul-x16.cc; AVX-512 build only). */
void matmulX16(Context& ctx, float* out, const float* x, const uint8_t* w, DType dt, int64_t N, int64_t K, int64_t M);

/** matmulX16 for several weights of one float form and width, in one round of the pool (as qmatmulX16Parts). */
void matmulX16Parts(Context& ctx, const WeightPart* parts, int nParts, const float* x, DType dt, int64_t K, int64_t M);  // nParts <= kMaxWeightParts

/** The repacked form of t for rows of K (qrepack.cc), when this build has one: true and *out set. */
bool repackedType(DType t, int64_t K, DType* out);

/** Writes rows x K of t (src) in its repacked form to dst (rowBytes(repacked type, K) per row). */
void repackRows(Context& ctx, DType t, const uint8_t* src, int64_t rows, int64_t K, uint8_t* dst);

void rmsnorm(Context& ctx, float* out, const float* x, const float* weight, int64_t M, int64_t dim, double eps);

/** RoPE of one style: pairs (2i, 2i+1) when !neox, (i, i+ropeDim/2) when neox. freqFactors: ropeDim/2 floats or null. */
void rope(Context& ctx, float* x, const int32_t* positions, int64_t M, int64_t nHeads, int64_t headDim,
          int64_t ropeDim, double theta, bool neox, double freqScale, const float* freqFactors);

void siluMul(Context& ctx, float* out, const float* gate, const float* up, int64_t n);

/** out[i] = gelu_tanh(gate[i]) * up[i]. */
void geluMul(Context& ctx, float* out, const float* gate, const float* up, int64_t n);

/** x[m*width + i] += bias[i]. */
void addBias(Context& ctx, float* x, const float* bias, int64_t M, int64_t width);

void add(Context& ctx, float* out, const float* a, int64_t n);

void embed(Context& ctx, float* out, const uint8_t* table, DType dt, int64_t cols, const int32_t* tokens, int64_t M);

// KV cache element types; numbering shared with src/model/kernels/native.ts (KV_DTYPE_CODES).
enum class KvDtype : int { F32 = 0, F16 = 1, Q8_0 = 2 };

/** Bytes of one KV row of `width` elements (q8_0: width is a multiple of 32). */
inline int64_t kvRowBytes(KvDtype t, int64_t width) {
  return t == KvDtype::F32 ? 4 * width : t == KvDtype::F16 ? 2 * width : width / 32 * 34;
}

struct PagedKv {
  const uint8_t* k;
  const uint8_t* v;
  KvDtype dtype;
  int64_t blockSize;
  int64_t nKvHeads;
  int64_t headDim;
};

/**
 * Encodes rows r < numRows of k and v (kvDim floats each) into KV slots slots[r] (-1: skip):
 * f16 rounds to nearest even; q8_0 per 32 elements as src/model/quant.ts's encodeQ8_0.
 */
void writeKv(uint8_t* kc, uint8_t* vc, KvDtype dt, int64_t kvDim, const float* k, const float* v, int64_t numRows,
             const int32_t* slots);

/** Elements [off, off+n) of a KV row as floats into out (q8_0: off and n multiples of 32). */
void readKvRow(KvDtype dt, const uint8_t* row, int64_t off, int64_t n, float* out);

struct AttentionRows {
  int64_t numRows;
  const int32_t* positions;
  const int32_t* rowSeq;
  const int32_t* blockTables;
  int64_t maxBlocksPerSeq;
};

/** scale multiplies q.k; window > 0 limits a row at position p to keys p-window+1..p. */
void attention(Context& ctx, float* out, const float* q, const PagedKv& kv, const AttentionRows& rows, int64_t nHeads,
               float scale, int64_t window);

/** Reads `bytes` of buf `reps` times across the pool; returns a checksum so the reads stay. */
double readBuffer(Context& ctx, const float* buf, int64_t n, int reps);

}  // namespace stepwise
