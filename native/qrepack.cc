// Repacking of q4_0 and q4_k weights, once per tensor, into forms the AVX-512 GEMMs read without
// unpacking (what llama.cpp's CPU "repack" buffer types do for the same formats). Unpacking a
// superblock into the lane order of qblocks.h costs ~55 vector instructions against 4 dot
// products, which bound the decode of one sequence at a quarter of the memory bandwidth; the
// repacked form stores the nibbles already in lane order (byte p: lane bytes p and p + 128) and
// the scales as plain bytes, in about the file's size (148 bytes per 256 elements for q4_k, 144
// for q4_0), so a superblock is 2 loads and 4 masks before the dot products.
#include <cstring>

#include "ggml-blocks.h"
#include "kernels.h"
#include "qblocks.h"

namespace stepwise {

bool repackedType(DType t, int64_t K, DType* out) {
#if STEPWISE_AVX512
  if (K % QK != 0) return false;
  if (t == DType::Q4_K) return *out = DType::Q4_K_R, true;
  if (t == DType::Q4_0) return *out = DType::Q4_0_R, true;
#else
  (void)t;
  (void)K;
  (void)out;
#endif
  return false;
}

void repackRows(Context& ctx, DType t, const uint8_t* src, int64_t rows, int64_t K, uint8_t* dst) {
  DType rt;
  if (!repackedType(t, K, &rt)) return;
  const size_t srb = rowBytes(t, K), drb = rowBytes(rt, K);
  const int64_t nsb = K / QK;
  ctx.pool.parallelFor(rows, [&](int64_t r, int) {
    QWeightBlock wb;
    for (int64_t s = 0; s < nsb; s++) {
      const uint8_t* row = src + static_cast<size_t>(r) * srb;
      uint8_t* o = dst + static_cast<size_t>(r) * drb + static_cast<size_t>(s) * static_cast<size_t>(dtypeInfo(rt).blockBytes);
      unpackWeightBlock(t, row, K, s, &wb);  // lane-ordered bytes, 0..15
      for (int p = 0; p < 128; p++) o[p] = static_cast<uint8_t>(wb.u[p] | (wb.u[p + 128] << 4));
      if (t == DType::Q4_K) {
        const uint8_t* b = row + s * 144;
        std::memcpy(o + 128, b, 4);  // f16 d, f16 dmin
        for (int j = 0; j < 8; j++) {
          int sc, m;
          ggml::q4kScaleMin(b + 4, j, &sc, &m);
          o[132 + j] = static_cast<uint8_t>(sc);
          o[140 + j] = static_cast<uint8_t>(m);
        }
      } else {
        for (int j = 0; j < 8; j++) std::memcpy(o + 128 + 2 * j, row + (s * 8 + j) * 18, 2);  // f16 d of each block
      }
    }
  });
}

}  // namespace stepwise
