# The native kernels addon (see native/), built by scripts/build-native.mjs during `npm install`.
#
# One addon per instruction-set level, all from the same sources, so one install runs well on any
# x86-64 machine (llama.cpp's GGML_CPU_ALL_VARIANTS does the same): src/model/kernels/native.ts
# asks the generic build which features this CPU has, then loads the best variant it can run.
#   generic: no ISA flags (scalar code; the only variant on arm64 and other architectures)
#   avx2:    AVX2 + FMA + F16C (x86-64 since 2013)
#   avx512:  AVX-512 F/BW/VL/DQ + VNNI + BF16 (Sapphire Rapids, Zen 4/5), when the compiler has them
# -ffp-contract=off keeps the compiler from fusing a*b+c on its own, so every kernel's arithmetic is
# exactly what its source says.
{
  "variables": {
    "kernel_sources": [
      "native/addon.cc",
      "native/attention.cc",
      "native/dequant.cc",
      "native/elementwise.cc",
      "native/kv-buffer.cc",
      "native/kv-cache.cc",
      "native/mapped-file.cc",
      "native/matmul.cc",
      "native/matmul-x16.cc",
      "native/qmatmul.cc",
      "native/qmatmul-x16.cc",
      "native/qrepack.cc",
      "native/qunpack.cc",
      "native/thread-pool.cc"
    ],
    "has_avx512": "<!(node scripts/build-native.mjs --probe avx512)",
    "has_avx2": "<!(node scripts/build-native.mjs --probe avx2)"
  },
  "target_defaults": {
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
    "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
    "cflags!": ["-fno-exceptions"],
    "cflags_cc!": ["-fno-exceptions"],
    "cflags_cc": ["-std=c++17", "-O3", "-ffp-contract=off", "-Wall", "-Wextra"],
    "xcode_settings": {
      "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
      "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
      "OTHER_CPLUSPLUSFLAGS": ["-O3", "-ffp-contract=off"]
    }
  },
  "targets": [
    {
      "target_name": "stepwise_kernels_generic",
      "sources": ["<@(kernel_sources)"]
    }
  ],
  "conditions": [
    ["has_avx2==1", {
      "targets": [
        {
          "target_name": "stepwise_kernels_avx2",
          "sources": ["<@(kernel_sources)"],
          "cflags_cc": ["-mavx2", "-mfma", "-mf16c"],
          "xcode_settings": { "OTHER_CPLUSPLUSFLAGS": ["-mavx2", "-mfma", "-mf16c"] }
        }
      ]
    }],
    ["has_avx512==1", {
      "targets": [
        {
          "target_name": "stepwise_kernels_avx512",
          "sources": ["<@(kernel_sources)"],
          "cflags_cc": ["-mavx2", "-mfma", "-mf16c", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512vnni", "-mavx512bf16", "-mavx512vbmi"],
          "xcode_settings": {
            "OTHER_CPLUSPLUSFLAGS": ["-mavx2", "-mfma", "-mf16c", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512vnni", "-mavx512bf16", "-mavx512vbmi"]
          }
        }
      ]
    }]
  ]
}
