// N-API surface of the kernels: a `NativeKernels` class (one thread pool per instance) whose
// methods take typed arrays and plain numbers, check that every size and index fits, and call the
// C++ kernels synchronously. src/model/kernels/native.ts adapts it to the `Kernels` interface.
//
// Node-API modules are context-aware, and all state lives in the instance, so the addon can be
// loaded in several worker threads at once; each instance must be used from the thread that
// created it (a JS object cannot leave its isolate anyway).
#include <napi.h>

#include <cmath>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "kernels.h"
#include "simd.h"

namespace stepwise {
namespace {

std::string str(int64_t v) { return std::to_string(v); }

/** Product of sizes, saturating instead of overflowing (it is only compared with array lengths). */
int64_t prod(std::initializer_list<int64_t> factors) {
  int64_t p = 1;
  for (int64_t f : factors) {
    if (__builtin_mul_overflow(p, f, &p)) return INT64_MAX;
  }
  return p;
}

[[noreturn]] void fail(const Napi::Env& env, const std::string& msg) { throw Napi::RangeError::New(env, msg); }

[[noreturn]] void failType(const Napi::Env& env, const std::string& msg) { throw Napi::TypeError::New(env, msg); }

template <class T>
struct ArrayArg {
  T* data;
  int64_t length;
  const uint8_t* begin() const { return reinterpret_cast<const uint8_t*>(data); }
  const uint8_t* end() const { return reinterpret_cast<const uint8_t*>(data + length); }
};

template <class T>
ArrayArg<T> typedArg(const Napi::CallbackInfo& info, size_t i, const char* name, napi_typedarray_type type,
                     const char* typeName) {
  const Napi::Value v = info[i];
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type) {
    failType(info.Env(), std::string(name) + " must be a " + typeName);
  }
  auto a = v.As<Napi::TypedArrayOf<T>>();
  return {a.Data(), static_cast<int64_t>(a.ElementLength())};
}

/** typedArg for an element of an array argument. */
template <class T>
ArrayArg<T> typedValue(const Napi::Env& env, const Napi::Value& v, const std::string& name, napi_typedarray_type type,
                       const char* typeName) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type) failType(env, name + " must be a " + typeName);
  auto a = v.As<Napi::TypedArrayOf<T>>();
  return {a.Data(), static_cast<int64_t>(a.ElementLength())};
}

ArrayArg<float> f32Arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return typedArg<float>(info, i, name, napi_float32_array, "Float32Array");
}
ArrayArg<int32_t> i32Arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return typedArg<int32_t>(info, i, name, napi_int32_array, "Int32Array");
}
ArrayArg<uint8_t> u8Arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  return typedArg<uint8_t>(info, i, name, napi_uint8_array, "Uint8Array");
}

/** A whole number >= min (and small enough that products of sizes cannot overflow). */
int64_t intArg(const Napi::CallbackInfo& info, size_t i, const char* name, int64_t min) {
  const Napi::Value v = info[i];
  if (!v.IsNumber()) failType(info.Env(), std::string(name) + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d == static_cast<double>(static_cast<int64_t>(d))) || d < static_cast<double>(min) || d > 2147483647.0) {
    fail(info.Env(), std::string(name) + " must be an integer >= " + str(min) + ", got " + v.ToString().Utf8Value());
  }
  return static_cast<int64_t>(d);
}

double numArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  const Napi::Value v = info[i];
  if (!v.IsNumber()) failType(info.Env(), std::string(name) + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) fail(info.Env(), std::string(name) + " must be finite, got " + v.ToString().Utf8Value());
  return d;
}

KvDtype kvDtypeArg(const Napi::CallbackInfo& info, size_t i) {
  const int64_t code = intArg(info, i, "KV cache dtype code", 0);
  if (code > 2) fail(info.Env(), "unknown KV cache dtype code " + str(code));
  return static_cast<KvDtype>(code);
}

/** A weight type code: a file type, or with `repacked` also a code repack() returned. */
DType dtypeArg(const Napi::CallbackInfo& info, size_t i, bool repacked = false) {
  const int64_t code = intArg(info, i, "dtype code", 0);
  if (code >= (repacked ? kNumDTypes : kNumFileDTypes)) fail(info.Env(), "unknown dtype code " + str(code));
  return static_cast<DType>(code);
}

template <class A, class B>
bool overlaps(const ArrayArg<A>& a, const ArrayArg<B>& b) {
  return a.begin() < b.end() && b.begin() < a.end();
}

void needLength(const Napi::Env& env, const char* name, int64_t have, int64_t need, const std::string& why) {
  if (have < need) fail(env, std::string(name) + " holds " + str(have) + " elements, " + why + " need " + str(need));
}

/** Checks a weight's shape against its bytes; returns the bytes of one row. */
size_t checkWeight(const Napi::Env& env, const std::string& label, DType dt, int64_t rows, int64_t cols,
                   const ArrayArg<uint8_t>& data) {
  const DTypeInfo& di = dtypeInfo(dt);
  if (cols % di.blockSize != 0) {
    fail(env, label + " has " + str(cols) + " columns, not a multiple of the " + di.name + " block size " +
                  str(di.blockSize));
  }
  const size_t rb = rowBytes(dt, cols);
  const int64_t need = prod({storedRows(dt, rows), static_cast<int64_t>(rb)});
  if (data.length < need) {
    fail(env, label + " holds " + str(data.length) + " bytes, " + di.name + " " + str(rows) + "x" + str(cols) +
                  " needs " + str(need));
  }
  return rb;
}

std::string weightLabel(const Napi::CallbackInfo& info, size_t i) {
  const Napi::Value v = info[i];
  return "weight " + (v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string("(unnamed)"));
}

class NativeKernels : public Napi::ObjectWrap<NativeKernels> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeKernels",
                       {
                           InstanceAccessor<&NativeKernels::Threads>("threads"),
                           InstanceMethod<&NativeKernels::Matmul>("matmul"),
                           InstanceMethod<&NativeKernels::MatmulParts>("matmulParts"),
                           InstanceMethod<&NativeKernels::Repack>("repack"),
                           InstanceMethod<&NativeKernels::Rmsnorm>("rmsnorm"),
                           InstanceMethod<&NativeKernels::Rope>("rope"),
                           InstanceMethod<&NativeKernels::SiluMul>("siluMul"),
                           InstanceMethod<&NativeKernels::GeluMul>("geluMul"),
                           InstanceMethod<&NativeKernels::AddBias>("addBias"),
                           InstanceMethod<&NativeKernels::Add>("add"),
                           InstanceMethod<&NativeKernels::Embed>("embed"),
                           InstanceMethod<&NativeKernels::WriteKv>("writeKv"),
                           InstanceMethod<&NativeKernels::Attention>("attention"),
                           InstanceMethod<&NativeKernels::ReadBuffer>("readBuffer"),
                           InstanceMethod<&NativeKernels::Close>("close"),
                       });
  }

  explicit NativeKernels(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeKernels>(info) {
    const int64_t threads = intArg(info, 0, "threads", 1);
    if (threads > 256) fail(info.Env(), "threads must be at most 256, got " + str(threads));
    ctx_ = std::make_unique<Context>(static_cast<int>(threads));
  }

 private:
  Context& ctx(const Napi::Env& env) {
    if (!ctx_) throw Napi::Error::New(env, "these native kernels were closed");
    return *ctx_;
  }

  Napi::Value Threads(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), ctx_ ? ctx_->pool.size() : 0);
  }

  // matmul(out, x, wData, dtype, rows, cols, M, wName)
  // repack(data, dtype, rows, cols): { data, dtype } of the repacked weight, or null when this
  // build has no repacked form of it (qrepack.cc). Pass both to matmul instead of the original.
  Napi::Value Repack(const Napi::CallbackInfo& info) {
    const Napi::Env env = info.Env();
    auto w = u8Arg(info, 0, "weight data");
    const DType dt = dtypeArg(info, 1);
    const int64_t rows = intArg(info, 2, "weight rows", 1);
    const int64_t cols = intArg(info, 3, "weight cols", 1);
    checkWeight(env, "weight", dt, rows, cols, w);
    DType rt;
    if (!repackedType(dt, cols, &rt)) return env.Null();
    auto out = Napi::Uint8Array::New(env, static_cast<size_t>(storedRows(rt, rows)) * rowBytes(rt, cols));
    repackRows(ctx(env), dt, w.data, rows, cols, out.Data());
    Napi::Object o = Napi::Object::New(env);
    o.Set("data", out);
    o.Set("dtype", Napi::Number::New(env, static_cast<int>(rt)));
    return o;
  }

  Napi::Value Matmul(const Napi::CallbackInfo& info) {
    const Napi::Env env = info.Env();
    auto out = f32Arg(info, 0, "out");
    auto x = f32Arg(info, 1, "x");
    auto w = u8Arg(info, 2, "weight data");
    const DType dt = dtypeArg(info, 3, /*repacked=*/true);
    const int64_t rows = intArg(info, 4, "weight rows", 1);
    const int64_t cols = intArg(info, 5, "weight cols", 1);
    const int64_t M = intArg(info, 6, "M", 0);
    checkWeight(env, weightLabel(info, 7), dt, rows, cols, w);
    needLength(env, "x", x.length, M * cols, str(M) + " rows of " + weightLabel(info, 7) + "'s input width " + str(cols));
    needLength(env, "out", out.length, M * rows, str(M) + " rows of " + weightLabel(info, 7) + "'s output width " + str(rows));
    if (M > 0 && overlaps(out, x)) fail(env, "out and x overlap");
    matmul(ctx(env), out.data, x.data, w.data, dt, rows, cols, M);
    return env.Undefined();
  }

  // matmulParts(outs, x, datas, dtype, rows, cols, M, names): matmul of x with each of 1-8 weights of
  // one dtype and width (a layer's q/k/v, its gate/up); outs[i] gets weight i's M x rows[i].
  Napi::Value MatmulParts(const Napi::CallbackInfo& info) {
    const Napi::Env env = info.Env();
    if (!info[0].IsArray() || !info[2].IsArray() || !info[4].IsArray() || !info[7].IsArray()) {
      failType(env, "outs, weight data, rows and names must be arrays");
    }
    const auto outs = info[0].As<Napi::Array>(), datas = info[2].As<Napi::Array>(), rowsOf = info[4].As<Napi::Array>(),
               names = info[7].As<Napi::Array>();
    auto x = f32Arg(info, 1, "x");
    const DType dt = dtypeArg(info, 3, /*repacked=*/true);
    const int64_t cols = intArg(info, 5, "weight cols", 1);
    const int64_t M = intArg(info, 6, "M", 0);
    const uint32_t n = outs.Length();
    if (n < 1 || n > static_cast<uint32_t>(kMaxWeightParts) || datas.Length() != n || rowsOf.Length() != n || names.Length() != n) {
      fail(env, "matmulParts takes 1 to " + str(kMaxWeightParts) + " weights with as many outputs, row counts and names, got " + str(n) + " outputs");
    }
    std::vector<WeightPart> parts(n);
    std::vector<ArrayArg<float>> outArgs;
    for (uint32_t i = 0; i < n; i++) {
      const Napi::Value name = names[i];
      const std::string label = "weight " + (name.IsString() ? name.As<Napi::String>().Utf8Value() : std::string("(unnamed)"));
      const Napi::Value rv = rowsOf[i];
      const double rd = rv.IsNumber() ? rv.As<Napi::Number>().DoubleValue() : -1;
      if (!(rd >= 1 && rd <= 2147483647.0 && rd == static_cast<double>(static_cast<int64_t>(rd)))) fail(env, label + "'s rows must be an integer >= 1");
      const int64_t rows = static_cast<int64_t>(rd);
      auto w = typedValue<uint8_t>(env, datas[i], label + "'s data", napi_uint8_array, "Uint8Array");
      auto out = typedValue<float>(env, outs[i], "out for " + label, napi_float32_array, "Float32Array");
      checkWeight(env, label, dt, rows, cols, w);
      needLength(env, "out", out.length, M * rows, str(M) + " rows of " + label + "'s output width " + str(rows));
      if (M > 0 && overlaps(out, x)) fail(env, "out for " + label + " and x overlap");
      for (const auto& o : outArgs)
        if (M > 0 && overlaps(out, o)) fail(env, "out for " + label + " overlaps another output");
      outArgs.push_back(out);
      parts[i] = {w.data, rows, out.data};
    }
    needLength(env, "x", x.length, M * cols, str(M) + " rows of the input width " + str(cols));
    matmulParts(ctx(env), parts.data(), static_cast<int>(n), x.data, dt, cols, M);
    return env.Undefined();
  }

  // rmsnorm(out, x, weight, M, dim, eps)
  Napi::Value Rmsnorm(const Napi::CallbackInfo& info) {
    const Napi::Env env = info.Env();
    auto out = f32Arg(info, 0, "out");
    auto x = f32Arg(info, 1, "x");
    auto weight = f32Arg(info, 2, "weight");
    const int64_t M = intArg(info, 3, "M", 0);
    const int64_t dim = intArg(info, 4, "dim", 1);
    const double eps = numArg(info, 5, "eps");
    if (eps < 0) fail(env, "eps must be >= 0");
    needLength(env, "x", x.length, M * dim, str(M) + " rows of " + str(dim));
    needLength(env, "out", out.length, M * dim, str(M) + " rows of " + str(dim));
    needLength(env, "weight", weight.length, dim, "dim " + str(dim));
    // In place is fine (each element reads x before writing out); a shifted overlap is not.
    if (overlaps(out, x) && out.data != x.data) fail(env, "out overlaps x without being the same array");
    rmsnorm(ctx(env), out.data, x.data, weight.data, M, dim, eps);
    return env.Undefined();
  }

  // rope(x, positions, M, nHeads, headDim, ropeDim, theta[, neox, freqScale, freqFactors | null])
  Napi::Value Rope(const Napi::CallbackInfo& info) {
    const Napi::Env env = info.Env();
    auto x = f32Arg(info, 0, "x");
    auto positions = i32Arg(info, 1, "positions");
    const int64_t M = intArg(info, 2, "M", 0);
    const int64_t nHeads = intArg(info, 3, "nHeads", 1);
    const int64_t headDim = intArg(info, 4, "headDim", 1);
    const int64_t ropeDim = intArg(info, 5, "ropeDim", 0);
    const double theta = numArg(info, 6, "theta");
    if (ropeDim % 2 != 0 || ropeDim > headDim) {
      fail(env, "ropeDim " + str(ropeDim) + " must be even and at most headDim " + str(headDim));
    }
    if (theta <= 0) fail(env, "theta must be > 0");
    needLength(env, "x", x.length, prod({M, nHeads, headDim}), str(M) + " rows of " + str(nHeads) + "x" + str(headDim));
    needLength(env, "positions", positions.length, M, str(M) + " rows");
    const bool neox = info.Length() > 7 && info[7].ToBoolean().Value();
    const double freqScale = info.Length() > 8 && !info[8].IsUndefined() ? numArg(info, 8, "freqScale") : 1.0;
    if (!(freqScale > 0)) fail(env, "freqScale must be > 0");
    const float* factors = nullptr;
    if (info.Length() > 9 && !info[9].IsUndefined() && !info[9].IsNull()) {
      auto ff = f32Arg(info, 9, "freqFactors");
      needLength(env, "freqFactors", ff.length, ropeDim / 2, str(ropeDim / 2) + " rotated pairs");
      factors = ff.data;
    }
    rope(ctx(env), x.data, positions.data, M, nHeads, headDim, ropeDim, theta, neox, freqScale, factors);
    return env.Undefined();
  }

  // geluMul(out, gate, up, n)
  Napi::Value GeluMul(const Napi::CallbackInfo& info) { return GatedMul(info, geluMul); }

  // addBias(x, bias, M, width)
  Napi::Value AddBias(const Napi::CallbackInfo& info) {
    const Napi::Env env = info.Env();
    auto x = f32Arg(info, 0, "x");
    auto bias = f32Arg(info, 1, "bias");
    const int64_t M = intArg(info, 2, "M", 0);
    const int64_t width = intArg(info, 3, "width", 1);
    needLength(env, "x", x.length, prod({M, width}), str(M) + " rows of " + str(width));
    needLength(env, "bias", bias.length, width, "width " + str(width));
    if (M > 0 && overlaps(x, bias)) fail(env, "x overlaps bias");
    addBias(ctx(env), x.data, bias.data, M, width);
    return env.Undefined();
  }

  // siluMul(out, gate, up, n)
  Napi::Value SiluMul(const Napi::CallbackInfo& info) { return GatedMul(info, siluMul); }

  /** The gated activations' shared argument checks: out[i] = act(gate[i]) * up[i], out may alias an input exactly. */
  Napi::Value GatedMul(const Napi::CallbackInfo& info, void (*kernel)(Context&, float*, const float*, const float*, int64_t)) {
    const Napi::Env env = info.Env();
    auto out = f32Arg(info, 0, "out");
    auto gate = f32Arg(info, 1, "gate");
    auto up = f32Arg(info, 2, "up");
    const int64_t n = intArg(info, 3, "n", 0);
    needLength(env, "out", out.length, n, "n=" + str(n));
    needLength(env, "gate", gate.length, n, "n=" + str(n));
    needLength(env, "up", up.length, n, "n=" + str(n));
    if (n > 0 && ((overlaps(out, gate) && out.data != gate.data) || (overlaps(out, up) && out.data != up.data))) {
      fail(env, "out overlaps an input without being the same array");
    }
    kernel(ctx(env), out.data, gate.data, up.data, n);
    return env.Undefined();
  }

  // add(out, a, n)
  Napi::Value Add(const Napi::CallbackInfo& info) {
    const Napi::Env env = info.Env();
    auto out = f32Arg(info, 0, "out");
    auto a = f32Arg(info, 1, "a");
    const int64_t n = intArg(info, 2, "n", 0);
    needLength(env, "out", out.length, n, "n=" + str(n));
    needLength(env, "a", a.length, n, "n=" + str(n));
    if (n > 0 && overlaps(out, a) && out.data != a.data) fail(env, "out overlaps a without being the same array");
    add(ctx(env), out.data, a.data, n);
    return env.Undefined();
  }

  // embed(out, tableData, dtype, rows, cols, tokens, M, tableName)
  Napi::Value Embed(const Napi::CallbackInfo& info) {
    const Napi::Env env = info.Env();
    auto out = f32Arg(info, 0, "out");
    auto table = u8Arg(info, 1, "table data");
    const DType dt = dtypeArg(info, 2);
    const int64_t rows = intArg(info, 3, "table rows", 1);
    const int64_t cols = intArg(info, 4, "table cols", 1);
    auto tokens = i32Arg(info, 5, "tokens");
    const int64_t M = intArg(info, 6, "M", 0);
    checkWeight(env, weightLabel(info, 7), dt, rows, cols, table);
    needLength(env, "tokens", tokens.length, M, str(M) + " rows");
    needLength(env, "out", out.length, M * cols, str(M) + " rows of " + str(cols));
    for (int64_t m = 0; m < M; m++) {
      if (tokens.data[m] < 0 || tokens.data[m] >= rows) {
        fail(env, "token id " + str(tokens.data[m]) + " at row " + str(m) + " is outside the vocabulary (0.." +
                      str(rows - 1) + ")");
      }
    }
    embed(ctx(env), out.data, table.data, dt, cols, tokens.data, M);
    return env.Undefined();
  }

  // writeKv(kLayer, vLayer, kvDtype, numSlots, kvDim, k, v, numRows, slotMapping): the caches as bytes.
  Napi::Value WriteKv(const Napi::CallbackInfo& info) {
    const Napi::Env env = info.Env();
    auto kc = u8Arg(info, 0, "K cache");
    auto vc = u8Arg(info, 1, "V cache");
    const KvDtype dt = kvDtypeArg(info, 2);
    const int64_t numSlots = intArg(info, 3, "numSlots", 0);
    const int64_t kvDim = intArg(info, 4, "kvDim", 1);
    auto k = f32Arg(info, 5, "k");
    auto v = f32Arg(info, 6, "v");
    const int64_t numRows = intArg(info, 7, "numRows", 0);
    auto slots = i32Arg(info, 8, "slotMapping");
    if (dt == KvDtype::Q8_0 && kvDim % 32 != 0) fail(env, "a q8_0 KV cache needs rows that are a multiple of 32 wide, got " + str(kvDim));
    const int64_t cacheBytes = prod({numSlots, kvRowBytes(dt, kvDim)});
    needLength(env, "K cache", kc.length, cacheBytes, str(numSlots) + " slots of " + str(kvDim));
    needLength(env, "V cache", vc.length, cacheBytes, str(numSlots) + " slots of " + str(kvDim));
    needLength(env, "slotMapping", slots.length, numRows, str(numRows) + " rows");
    needLength(env, "k", k.length, numRows * kvDim, str(numRows) + " rows of " + str(kvDim));
    needLength(env, "v", v.length, numRows * kvDim, str(numRows) + " rows of " + str(kvDim));
    for (int64_t r = 0; r < numRows; r++) {
      const int32_t s = slots.data[r];
      if (s != -1 && (s < 0 || s >= numSlots)) {
        fail(env, "row " + str(r) + " maps to KV slot " + str(s) + ", outside 0.." + str(numSlots - 1));
      }
    }
    writeKv(kc.data, vc.data, dt, kvDim, k.data, v.data, numRows, slots.data);
    return env.Undefined();
  }

  // attention(out, q, kLayer, vLayer, kvDtype, numBlocks, blockSize, nKvHeads, headDim,
  //           numRows, positions, rowSeq, blockTables, maxBlocksPerSeq, nHeads[, scale, window])
  Napi::Value Attention(const Napi::CallbackInfo& info) {
    const Napi::Env env = info.Env();
    auto out = f32Arg(info, 0, "out");
    auto q = f32Arg(info, 1, "q");
    auto kc = u8Arg(info, 2, "K cache");
    auto vc = u8Arg(info, 3, "V cache");
    const KvDtype dt = kvDtypeArg(info, 4);
    const int64_t numBlocks = intArg(info, 5, "numBlocks", 1);
    const int64_t blockSize = intArg(info, 6, "blockSize", 1);
    const int64_t nKvHeads = intArg(info, 7, "nKvHeads", 1);
    const int64_t headDim = intArg(info, 8, "headDim", 1);
    const int64_t numRows = intArg(info, 9, "numRows", 0);
    auto positions = i32Arg(info, 10, "positions");
    auto rowSeq = i32Arg(info, 11, "rowSeq");
    auto blockTables = i32Arg(info, 12, "blockTables");
    const int64_t maxBlocks = intArg(info, 13, "maxBlocksPerSeq", 1);
    const int64_t nHeads = intArg(info, 14, "nHeads", 1);
    if (nHeads % nKvHeads != 0) fail(env, "nHeads " + str(nHeads) + " is not a multiple of nKvHeads " + str(nKvHeads));
    if (dt == KvDtype::Q8_0 && headDim % 32 != 0) fail(env, "a q8_0 KV cache needs a head dimension that is a multiple of 32, got " + str(headDim));
    const int64_t cacheBytes = prod({numBlocks, blockSize, kvRowBytes(dt, nKvHeads * headDim)});
    needLength(env, "K cache", kc.length, cacheBytes, str(numBlocks) + " blocks of " + str(blockSize) + " slots");
    needLength(env, "V cache", vc.length, cacheBytes, str(numBlocks) + " blocks of " + str(blockSize) + " slots");
    needLength(env, "q", q.length, prod({numRows, nHeads, headDim}), str(numRows) + " rows of " + str(nHeads) + " heads");
    needLength(env, "out", out.length, prod({numRows, nHeads, headDim}), str(numRows) + " rows of " + str(nHeads) + " heads");
    needLength(env, "positions", positions.length, numRows, str(numRows) + " rows");
    needLength(env, "rowSeq", rowSeq.length, numRows, str(numRows) + " rows");
    if (numRows > 0 && (overlaps(out, q) || overlaps(out, kc) || overlaps(out, vc))) {
      fail(env, "out overlaps q or the KV cache");
    }
    const int64_t numSeqs = blockTables.length / maxBlocks;
    for (int64_t r = 0; r < numRows; r++) {
      const int64_t pos = positions.data[r];
      const int64_t seq = rowSeq.data[r];
      if (pos < 0) fail(env, "row " + str(r) + " has negative position " + str(pos));
      if (seq < 0 || seq >= numSeqs) {
        fail(env, "row " + str(r) + " belongs to sequence " + str(seq) + ", but block tables hold " + str(numSeqs));
      }
      const int64_t nb = pos / blockSize + 1;
      if (nb > maxBlocks) {
        fail(env, "row " + str(r) + " at position " + str(pos) + " needs " + str(nb) + " blocks, block tables hold " +
                      str(maxBlocks));
      }
      for (int64_t b = 0; b < nb; b++) {
        const int32_t id = blockTables.data[seq * maxBlocks + b];
        if (id < 0 || id >= numBlocks) {
          fail(env, "row " + str(r) + " (sequence " + str(seq) + ") uses block " + str(id) + " at table index " +
                        str(b) + ", outside 0.." + str(numBlocks - 1));
        }
      }
    }
    const float scale = info.Length() > 15 && !info[15].IsUndefined()
                            ? static_cast<float>(numArg(info, 15, "scale"))
                            : static_cast<float>(1.0 / std::sqrt(static_cast<double>(headDim)));
    const int64_t window = info.Length() > 16 && !info[16].IsUndefined() ? intArg(info, 16, "window", 0) : 0;
    const PagedKv kv{kc.data, vc.data, dt, blockSize, nKvHeads, headDim};
    const AttentionRows rows{numRows, positions.data, rowSeq.data, blockTables.data, maxBlocks};
    attention(ctx(env), out.data, q.data, kv, rows, nHeads, scale, window);
    return env.Undefined();
  }

  // readBuffer(buf, reps): reads the whole buffer reps times across the pool (bandwidth probe).
  Napi::Value ReadBuffer(const Napi::CallbackInfo& info) {
    const Napi::Env env = info.Env();
    auto buf = f32Arg(info, 0, "buf");
    const int64_t reps = intArg(info, 1, "reps", 1);
    return Napi::Number::New(env, readBuffer(ctx(env), buf.data, buf.length, static_cast<int>(reps)));
  }

  // close(): stops the pool's threads now rather than at garbage collection.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    ctx_.reset();
    return info.Env().Undefined();
  }

  std::unique_ptr<Context> ctx_;
};

}  // namespace
}  // namespace stepwise

namespace stepwise {
void defineMappedFile(Napi::Env env, Napi::Object exports);  // mapped-file.cc
void defineKvBuffer(Napi::Env env, Napi::Object exports);     // kv-buffer.cc
}

/**
 * The instruction-set extensions this CPU (and its OS: the compiler's check includes the saved
 * register state) supports, for native.ts to pick the addon variant to load. Only the generic
 * variant's answer is used, so no wider instruction has run before the choice is made.
 */
static Napi::Object cpuFeatures(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  o.Set("avx2", Napi::Boolean::New(env, __builtin_cpu_supports("avx2")));
  o.Set("fma", Napi::Boolean::New(env, __builtin_cpu_supports("fma")));
  o.Set("f16c", Napi::Boolean::New(env, __builtin_cpu_supports("f16c")));
  o.Set("avx512f", Napi::Boolean::New(env, __builtin_cpu_supports("avx512f")));
  o.Set("avx512bw", Napi::Boolean::New(env, __builtin_cpu_supports("avx512bw")));
  o.Set("avx512vl", Napi::Boolean::New(env, __builtin_cpu_supports("avx512vl")));
  o.Set("avx512dq", Napi::Boolean::New(env, __builtin_cpu_supports("avx512dq")));
  o.Set("avx512vnni", Napi::Boolean::New(env, __builtin_cpu_supports("avx512vnni")));
  o.Set("avx512bf16", Napi::Boolean::New(env, __builtin_cpu_supports("avx512bf16")));
  o.Set("avx512vbmi", Napi::Boolean::New(env, __builtin_cpu_supports("avx512vbmi")));
#endif
  return o;
}

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeKernels", stepwise::NativeKernels::Define(env));
  stepwise::defineMappedFile(env, exports);
  stepwise::defineKvBuffer(env, exports);
  exports.Set("simd", Napi::String::New(env, stepwise::kSimdName));
  exports.Set("cpu", cpuFeatures(env));
  return exports;
}

NODE_API_MODULE(NODE_GYP_MODULE_NAME, InitAddon)
