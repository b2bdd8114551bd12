// The kernel entry points the N-API layer calls. Arguments are already validated there: sizes
// fit the buffers and every index is in range.
#pragma once

#include <cstdint>
#include <vector>

#include "dtypes.h"
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

/** cos/sin of pos * theta^(-2i/ropeDim) for positions 0..n-1, i < ropeDim/2, row-major by position. */
struct RopeTable {
  double theta = 0;
  int64_t ropeDim = -1;
  int64_t positions = 0;
  std::vector<double> cos, sin;
};

struct Context {
  explicit Context(int threads) : pool(threads), scratch(static_cast<size_t>(pool.size())) {}
  ThreadPool pool;
  std::vector<Scratch> scratch;
  RopeTable rope;
};

/** out[m*N + n] = sum_k x[m*K + k] * W[n][k] for m < M; W is N x K of type dt. */
void matmul(Context& ctx, float* out, const float* x, const uint8_t* w, DType dt, int64_t N, int64_t K, int64_t M);

void rmsnorm(Context& ctx, float* out, const float* x, const float* weight, int64_t M, int64_t dim, double eps);

void rope(Context& ctx, float* x, const int32_t* positions, int64_t M, int64_t nHeads, int64_t headDim,
          int64_t ropeDim, double theta);

void siluMul(Context& ctx, float* out, const float* gate, const float* up, int64_t n);

void add(Context& ctx, float* out, const float* a, int64_t n);

void embed(Context& ctx, float* out, const uint8_t* table, DType dt, int64_t cols, const int32_t* tokens, int64_t M);

struct PagedKv {
  const float* k;
  const float* v;
  int64_t blockSize;
  int64_t nKvHeads;
  int64_t headDim;
};

struct AttentionRows {
  int64_t numRows;
  const int32_t* positions;
  const int32_t* rowSeq;
  const int32_t* blockTables;
  int64_t maxBlocksPerSeq;
};

void attention(Context& ctx, float* out, const float* q, const PagedKv& kv, const AttentionRows& rows, int64_t nHeads);

/** Reads `bytes` of buf `reps` times across the pool; returns a checksum so the reads stay. */
double readBuffer(Context& ctx, const float* buf, int64_t n, int reps);

}  // namespace stepwise
