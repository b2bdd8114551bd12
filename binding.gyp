# The native kernels addon (see native/). Built by scripts/build-native.mjs during `npm install`;
# flags for the build machine's CPU come from `build-native.mjs --cflags` (-march=native and the
# AVX2/FMA/F16C switches when this CPU has them). -ffp-contract=off keeps the compiler from fusing
# a*b+c on its own, so every kernel's arithmetic is exactly what its source says.
{
  "targets": [
    {
      "target_name": "stepwise_kernels",
      "sources": [
        "native/addon.cc",
        "native/attention.cc",
        "native/dequant.cc",
        "native/elementwise.cc",
        "native/mapped-file.cc",
        "native/matmul.cc",
        "native/thread-pool.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-O3", "-ffp-contract=off", "-Wall", "-Wextra", "<!@(node scripts/build-native.mjs --cflags)"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "OTHER_CPLUSPLUSFLAGS": ["-O3", "-ffp-contract=off", "<!@(node scripts/build-native.mjs --cflags)"]
      }
    }
  ]
}
