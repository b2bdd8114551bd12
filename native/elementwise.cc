// The per-row and per-element kernels: rmsnorm, rope, siluMul, add, embed, and the read loop the
// benchmark uses to measure memory bandwidth. Each row's result depends only on that row, so rows
// (or element ranges) can go to any thread.
//
// rmsnorm and rope follow the TypeScript reference's arithmetic (double sums and angles, float32
// rounding at the same points); rmsnorm adds its squares in another order (sumSquares), within
// the last bits of a double.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels.h"
#include "simd.h"

namespace stepwise {
namespace {

// Below this much work a kernel runs on the calling thread: waking the pool costs more.
constexpr int64_t kParallelElems = 1 << 15;

/** Splits [0, n) into about `parts` ranges aligned to `align`, calling fn(begin, end) in parallel. */
template <class F>
void parallelRanges(Context& ctx, int64_t n, int64_t align, F&& fn) {
  const int64_t parts = n >= kParallelElems ? 4 * ctx.pool.size() : 1;
  int64_t chunk = (n + parts - 1) / parts;
  chunk = (chunk + align - 1) / align * align;
  const int64_t tasks = (n + chunk - 1) / chunk;
  ctx.pool.parallelFor(tasks, [&](int64_t t, int) { fn(t * chunk, std::min(n, (t + 1) * chunk)); });
}

}  // namespace

namespace {

/**
 * The sum of x[i]^2 in double (each square exact). 16 partial sums (lane j: i = j, j+16, ...), then
 * the elements past the last 16 in order, then a fixed tree over the partials: the same order in
 * every build, so a row's scale never depends on the instruction set. (One sequential chain, as
 * the reference adds, was 4 cycles per element: a tenth of a prompt's non-GEMM time.)
 */
double sumSquares(const float* x, int64_t n) {
  double part[16] = {0};
  int64_t i = 0;
#if STEPWISE_AVX512
  __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
  for (; i + 16 <= n; i += 16) {
    const __m512d lo = _mm512_cvtps_pd(_mm256_loadu_ps(x + i)), hi = _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 8));
    a0 = _mm512_add_pd(a0, _mm512_mul_pd(lo, lo));
    a1 = _mm512_add_pd(a1, _mm512_mul_pd(hi, hi));
  }
  _mm512_storeu_pd(part, a0);
  _mm512_storeu_pd(part + 8, a1);
#elif STEPWISE_AVX2
  __m256d a[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
  for (; i + 16 <= n; i += 16)
    for (int q = 0; q < 4; q++) {
      const __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4 * q));
      a[q] = _mm256_add_pd(a[q], _mm256_mul_pd(v, v));
    }
  for (int q = 0; q < 4; q++) _mm256_storeu_pd(part + 4 * q, a[q]);
#else
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; j++) part[j] += static_cast<double>(x[i + j]) * static_cast<double>(x[i + j]);
#endif
  double tail = 0;
  for (; i < n; i++) tail += static_cast<double>(x[i]) * static_cast<double>(x[i]);
  for (int w = 8; w >= 1; w /= 2)
    for (int j = 0; j < w; j++) part[j] += part[j + w];
  return part[0] + tail;
}

}  // namespace

void rmsnorm(Context& ctx, float* out, const float* x, const float* weight, int64_t M, int64_t dim, double eps) {
  const int64_t rowsPerTask = std::max<int64_t>(1, kParallelElems / std::max<int64_t>(1, dim));
  const int64_t tasks = M * dim >= kParallelElems ? (M + rowsPerTask - 1) / rowsPerTask : 1;
  const int64_t per = (M + tasks - 1) / tasks;
  ctx.pool.parallelFor(tasks, [&](int64_t t, int) {
    for (int64_t m = t * per; m < std::min(M, (t + 1) * per); m++) {
      const float* xr = x + m * dim;
      float* orow = out + m * dim;
      const float scale = static_cast<float>(1.0 / std::sqrt(sumSquares(xr, dim) / static_cast<double>(dim) + eps));
      int64_t i = 0;
#if STEPWISE_AVX512
      const __m512 sv = _mm512_set1_ps(scale);
      for (; i + 16 <= dim; i += 16)
        _mm512_storeu_ps(orow + i, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(xr + i), sv), _mm512_loadu_ps(weight + i)));
#endif
      for (; i < dim; i++) orow[i] = (xr[i] * scale) * weight[i];
    }
  });
}

namespace {

// Positions the cos/sin table may cover (16 MiB at ropeDim 128); rows beyond compute their own.
constexpr int64_t kRopeTablePositions = 1 << 14;

/** Pair i's angle per position, in double as the reference computes it. */
double ropeFreq(const RopeTable& t, int64_t i) {
  double f = std::pow(t.theta, static_cast<double>(-2 * i) / static_cast<double>(t.ropeDim));
  if (t.freqScale != 1 || !t.factors.empty()) {
    f = (t.freqScale * f) / (t.factors.empty() ? 1.0 : static_cast<double>(t.factors[static_cast<size_t>(i)]));
  }
  return f;
}

/**
 * The table for (theta, ropeDim, freqScale, factors), covering positions 0..maxPos. Angles and their
 * cos/sin are computed in double exactly as the reference does, once per position instead of once
 * per call.
 */
const RopeTable& ropeTable(Context& ctx, double theta, int64_t ropeDim, double freqScale, const float* factors,
                           int64_t maxPos) {
  const int64_t half = ropeDim / 2;
  auto& tables = ctx.ropeTables;
  auto same = [&](const RopeTable& t) {
    if (t.theta != theta || t.ropeDim != ropeDim || t.freqScale != freqScale) return false;
    if (factors == nullptr) return t.factors.empty();
    return static_cast<int64_t>(t.factors.size()) == half && std::equal(t.factors.begin(), t.factors.end(), factors);
  };
  auto it = std::find_if(tables.begin(), tables.end(), same);
  if (it == tables.end()) {
    constexpr size_t kMaxTables = 4;
    if (tables.size() >= kMaxTables) tables.pop_back();
    RopeTable t;
    t.theta = theta;
    t.ropeDim = ropeDim;
    t.freqScale = freqScale;
    if (factors != nullptr) t.factors.assign(factors, factors + half);
    tables.insert(tables.begin(), std::move(t));
  } else if (it != tables.begin()) {
    std::rotate(tables.begin(), it, it + 1);
  }
  RopeTable& t = tables.front();
  if (maxPos < t.positions) return t;
  const int64_t n = std::min(kRopeTablePositions, std::max<int64_t>(maxPos + 1, 2 * t.positions));
  std::vector<double> freqs(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; i++) freqs[static_cast<size_t>(i)] = ropeFreq(t, i);
  t.cos.resize(static_cast<size_t>(n * half));
  t.sin.resize(static_cast<size_t>(n * half));
  for (int64_t p = t.positions; p < n; p++) {
    for (int64_t i = 0; i < half; i++) {
      const double angle = static_cast<double>(p) * freqs[static_cast<size_t>(i)];
      t.cos[static_cast<size_t>(p * half + i)] = std::cos(angle);
      t.sin[static_cast<size_t>(p * half + i)] = std::sin(angle);
    }
  }
  t.positions = n;
  return t;
}

}  // namespace

void rope(Context& ctx, float* x, const int32_t* positions, int64_t M, int64_t nHeads, int64_t headDim,
          int64_t ropeDim, double theta, bool neox, double freqScale, const float* freqFactors) {
  const int64_t half = ropeDim / 2;
  // Positions the table covers read it; others (negative, or very large) compute the same values.
  int64_t maxPos = -1;
  for (int64_t m = 0; m < M; m++) maxPos = std::max<int64_t>(maxPos, positions[m]);
  const RopeTable& table = ropeTable(ctx, theta, ropeDim, freqScale, freqFactors, std::max<int64_t>(maxPos, 0));
  // Pair i is (2i, 2i+1) in the normal style and (i, i+half) in the NeoX style.
  const int64_t second = neox ? half : 1;
  const int64_t width = nHeads * headDim;
  const int64_t rowsPerTask = std::max<int64_t>(1, kParallelElems / std::max<int64_t>(1, width));
  const int64_t tasks = M * width >= kParallelElems ? (M + rowsPerTask - 1) / rowsPerTask : 1;
  const int64_t per = (M + tasks - 1) / tasks;
  ctx.pool.parallelFor(tasks, [&](int64_t t, int) {
    for (int64_t m = t * per; m < std::min(M, (t + 1) * per); m++) {
      const int64_t pos = positions[m];
      int64_t i = 0;
#if STEPWISE_AVX512
      // 8 pairs at a time, in double, with the scalar loop's operations (no fusing), so the same bits.
      if (pos >= 0 && pos < table.positions) {
        const double* cosRow = table.cos.data() + pos * half;
        const double* sinRow = table.sin.data() + pos * half;
        for (; i + 8 <= half; i += 8) {
          const __m512d c = _mm512_loadu_pd(cosRow + i), sn = _mm512_loadu_pd(sinRow + i);
          for (int64_t h = 0; h < nHeads; h++) {
            float* p = x + m * width + h * headDim;
            if (neox) {
              const __m512d a = _mm512_cvtps_pd(_mm256_loadu_ps(p + i)), b = _mm512_cvtps_pd(_mm256_loadu_ps(p + half + i));
              _mm256_storeu_ps(p + i, _mm512_cvtpd_ps(_mm512_sub_pd(_mm512_mul_pd(a, c), _mm512_mul_pd(b, sn))));
              _mm256_storeu_ps(p + half + i, _mm512_cvtpd_ps(_mm512_add_pd(_mm512_mul_pd(a, sn), _mm512_mul_pd(b, c))));
            } else {
              // Pairs (2i, 2i+1) side by side: each half of 16 floats is 4 pairs (a, b); the swapped
              // vector (b, a) meets (-s, s): a*c + b*(-s) = a*c - b*s, and b*c + a*s = a*s + b*c.
              const __m512i lowPairs = _mm512_setr_epi64(0, 0, 1, 1, 2, 2, 3, 3), highPairs = _mm512_setr_epi64(4, 4, 5, 5, 6, 6, 7, 7);
              const __m512d signs = _mm512_setr_pd(-1, 1, -1, 1, -1, 1, -1, 1);
              for (int q = 0; q < 2; q++) {
                const __m512i idx = q ? highPairs : lowPairs;
                const __m512d cc = _mm512_permutexvar_pd(idx, c), ss = _mm512_mul_pd(_mm512_permutexvar_pd(idx, sn), signs);
                float* pq = p + 2 * i + 8 * q;
                const __m512d v = _mm512_cvtps_pd(_mm256_loadu_ps(pq));
                const __m512d swapped = _mm512_permute_pd(v, 0x55);
                _mm256_storeu_ps(pq, _mm512_cvtpd_ps(_mm512_add_pd(_mm512_mul_pd(v, cc), _mm512_mul_pd(swapped, ss))));
              }
            }
          }
        }
      }
#endif
      for (; i < half; i++) {
        double c, s;
        if (pos >= 0 && pos < table.positions) {
          c = table.cos[static_cast<size_t>(pos * half + i)];
          s = table.sin[static_cast<size_t>(pos * half + i)];
        } else {
          const double angle = static_cast<double>(pos) * ropeFreq(table, i);
          c = std::cos(angle);
          s = std::sin(angle);
        }
        const int64_t first = neox ? i : 2 * i;
        for (int64_t h = 0; h < nHeads; h++) {
          float* p = x + m * width + h * headDim + first;
          const double a = p[0];
          const double b = p[second];
          p[0] = static_cast<float>(a * c - b * s);
          p[second] = static_cast<float>(a * s + b * c);
        }
      }
    }
  });
}

void geluMul(Context& ctx, float* out, const float* gate, const float* up, int64_t n) {
  // In double, rounded to float once, as the TypeScript reference does (tanh approximation, as
  // Gemma's gelu_pytorch_tanh; llama.cpp looks GELU up in an f16 table instead).
  const double k = std::sqrt(2.0 / M_PI);
  parallelRanges(ctx, n, 8, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) {
      const double x = gate[i];
      const float g = static_cast<float>(0.5 * x * (1.0 + std::tanh(k * x * (1.0 + 0.044715 * x * x))));
      out[i] = g * up[i];
    }
  });
}

void addBias(Context& ctx, float* x, const float* bias, int64_t M, int64_t width) {
  (void)ctx;
  for (int64_t m = 0; m < M; m++) {
    float* row = x + m * width;
    for (int64_t i = 0; i < width; i++) row[i] += bias[i];
  }
}

void siluMul(Context& ctx, float* out, const float* gate, const float* up, int64_t n) {
  parallelRanges(ctx, n, 16, [&](int64_t b, int64_t e) {
    int64_t i = b;
#if STEPWISE_AVX512
    const __m512 one16 = _mm512_set1_ps(1.0f);
    const auto silu16 = [&](__m512 g, __m512 u) {
      const __m512 den = _mm512_add_ps(one16, exp16(_mm512_xor_ps(g, _mm512_set1_ps(-0.0f))));
      return _mm512_mul_ps(_mm512_div_ps(g, den), u);
    };
    for (; i + 16 <= e; i += 16) _mm512_storeu_ps(out + i, silu16(_mm512_loadu_ps(gate + i), _mm512_loadu_ps(up + i)));
    if (i < e) {
      // The tail through the same 16-lane code, masked: an element's value never depends on where
      // the buffer ends.
      const __mmask16 k = static_cast<__mmask16>((1u << (e - i)) - 1);
      _mm512_mask_storeu_ps(out + i, k, silu16(_mm512_maskz_loadu_ps(k, gate + i), _mm512_maskz_loadu_ps(k, up + i)));
    }
#elif STEPWISE_AVX2
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 signBit = _mm256_set1_ps(-0.0f);
    const auto silu8 = [&](__m256 g, __m256 u) {
      const __m256 den = _mm256_add_ps(one, exp8(_mm256_xor_ps(g, signBit)));
      return _mm256_mul_ps(_mm256_div_ps(g, den), u);
    };
    for (; i + 8 <= e; i += 8) _mm256_storeu_ps(out + i, silu8(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
    if (i < e) {
      // The last few elements go through the same 8-lane code (padded), so an element's value
      // never depends on where the end of the buffer falls, i.e. on how many rows it holds.
      alignas(32) float g[8] = {0}, u[8] = {0}, o[8];
      for (int64_t j = i; j < e; j++) g[j - i] = gate[j], u[j - i] = up[j];
      _mm256_store_ps(o, silu8(_mm256_load_ps(g), _mm256_load_ps(u)));
      for (int64_t j = i; j < e; j++) out[j] = o[j - i];
    }
#else
    for (; i < e; i++) out[i] = (gate[i] / (1.0f + std::exp(-gate[i]))) * up[i];
#endif
  });
}

void add(Context& ctx, float* out, const float* a, int64_t n) {
  parallelRanges(ctx, n, 16, [&](int64_t b, int64_t e) {
    int64_t i = b;
#if STEPWISE_AVX512
    for (; i + 16 <= e; i += 16) _mm512_storeu_ps(out + i, _mm512_add_ps(_mm512_loadu_ps(out + i), _mm512_loadu_ps(a + i)));
#endif
#if STEPWISE_AVX2
    for (; i + 8 <= e; i += 8) _mm256_storeu_ps(out + i, _mm256_add_ps(_mm256_loadu_ps(out + i), _mm256_loadu_ps(a + i)));
#endif
    for (; i < e; i++) out[i] += a[i];
  });
}

void embed(Context& ctx, float* out, const uint8_t* table, DType dt, int64_t cols, const int32_t* tokens, int64_t M) {
  const size_t rb = rowBytes(dt, cols);
  const int64_t tasks = M * cols >= kParallelElems ? std::min<int64_t>(M, 4 * ctx.pool.size()) : 1;
  const int64_t per = (M + tasks - 1) / tasks;
  ctx.pool.parallelFor(tasks, [&](int64_t t, int) {
    for (int64_t m = t * per; m < std::min(M, (t + 1) * per); m++) {
      dequantizeSpan(dt, table + static_cast<size_t>(tokens[m]) * rb, 0, cols, out + m * cols);
    }
  });
}

double readBuffer(Context& ctx, const float* buf, int64_t n, int reps) {
  const int64_t parts = ctx.pool.size();
  std::vector<double> sums(static_cast<size_t>(parts) * 8, 0.0);  // one cache line per part
  const int64_t chunk = ((n + parts - 1) / parts + 7) / 8 * 8;
  for (int r = 0; r < reps; r++) {
    ctx.pool.parallelFor(parts, [&](int64_t t, int) {
      const int64_t b = t * chunk;
      const int64_t e = std::min(n, b + chunk);
      int64_t i = b;
      float s = 0;
#if STEPWISE_AVX2
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
      for (; i + 32 <= e; i += 32) {
        a0 = _mm256_add_ps(a0, _mm256_loadu_ps(buf + i));
        a1 = _mm256_add_ps(a1, _mm256_loadu_ps(buf + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_loadu_ps(buf + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_loadu_ps(buf + i + 24));
      }
      s = fold1(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
#endif
      for (; i < e; i++) s += buf[i];
      sums[static_cast<size_t>(t) * 8] += s;
    });
  }
  double total = 0;
  for (int64_t t = 0; t < parts; t++) total += sums[static_cast<size_t>(t) * 8];
  return total;
}

}  // namespace stepwise
