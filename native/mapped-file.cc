// Memory mapping of model files (private, copy-on-write; nothing writes), shared by every thread
// of the process.
//
// A model file is mapped once per process: the main thread and the compute worker each ask for it
// by path, and a registry keyed by the file's identity (device, inode, size, modification time)
// hands both the same mapping, so the weights sit in memory once (in the page cache) and no thread
// copies them. Tensors are exposed as external ArrayBuffers over the mapping — one per tensor,
// since one typed array may not exceed 4 GiB in this Node while model files can. Each buffer keeps
// the mapping alive through its finalizer; the mapping is unmapped when the last buffer and the
// last MappedFile object holding it are gone.
#include <napi.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define STEPWISE_HAVE_MMAP 1
#else
#define STEPWISE_HAVE_MMAP 0
#endif

namespace stepwise {
namespace {

struct Mapping {
  void* base = nullptr;
  size_t size = 0;
  ~Mapping() {
#if STEPWISE_HAVE_MMAP
    if (base != nullptr && size > 0) munmap(base, size);
#endif
  }
};

using FileKey = std::tuple<uint64_t, uint64_t, uint64_t, int64_t, int64_t>;

std::mutex gRegistryMutex;
std::map<FileKey, std::weak_ptr<Mapping>>& registry() {
  static auto* r = new std::map<FileKey, std::weak_ptr<Mapping>>();  // never destroyed: outlives every thread
  return *r;
}

/** The process's mapping of `path`, creating it if no live one exists. Throws a JS Error saying why. */
std::shared_ptr<Mapping> acquire(const Napi::Env& env, const std::string& path) {
#if STEPWISE_HAVE_MMAP
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    Napi::Error e = Napi::Error::New(env, std::string("cannot open for mapping: ") + std::strerror(err));
    e.Set("code", Napi::String::New(env, err == ENOENT ? "ENOENT" : err == EACCES ? "EACCES" : err == EISDIR ? "EISDIR" : "EIO"));
    throw e;
  }
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    close(fd);
    throw Napi::Error::New(env, std::string("cannot stat: ") + std::strerror(errno));
  }
  if (S_ISDIR(st.st_mode)) {
    close(fd);
    Napi::Error e = Napi::Error::New(env, "is a directory");
    e.Set("code", Napi::String::New(env, "EISDIR"));
    throw e;
  }
#if defined(__APPLE__)
  const FileKey key{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino), static_cast<uint64_t>(st.st_size),
                    static_cast<int64_t>(st.st_mtimespec.tv_sec), static_cast<int64_t>(st.st_mtimespec.tv_nsec)};
#else
  const FileKey key{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino), static_cast<uint64_t>(st.st_size),
                    static_cast<int64_t>(st.st_mtim.tv_sec), static_cast<int64_t>(st.st_mtim.tv_nsec)};
#endif
  std::lock_guard<std::mutex> lock(gRegistryMutex);
  auto it = registry().find(key);
  if (it != registry().end()) {
    if (auto live = it->second.lock()) {
      close(fd);
      return live;
    }
  }
  auto m = std::make_shared<Mapping>();
  m->size = static_cast<size_t>(st.st_size);
  if (m->size > 0) {
    // Private and writable: a stray write into a weight copies one page instead of crashing the
    // process; nothing writes, so every page stays the page cache's, shared.
    void* p = mmap(nullptr, m->size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      close(fd);
      throw Napi::Error::New(env, std::string("mmap failed: ") + std::strerror(err));
    }
    m->base = p;
  }
  close(fd);  // the mapping stays valid without the descriptor
  registry()[key] = m;
  return m;
#else
  (void)path;
  throw Napi::Error::New(env, "memory mapping is not available on this platform");
#endif
}

class MappedFile : public Napi::ObjectWrap<MappedFile> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "MappedFile",
                       {
                           InstanceAccessor<&MappedFile::Size>("size"),
                           InstanceAccessor<&MappedFile::Address>("address"),
                           InstanceMethod<&MappedFile::View>("view"),
                           InstanceMethod<&MappedFile::Close>("close"),
                       });
  }

  explicit MappedFile(const Napi::CallbackInfo& info) : Napi::ObjectWrap<MappedFile>(info) {
    if (!info[0].IsString()) throw Napi::TypeError::New(info.Env(), "path must be a string");
    mapping_ = acquire(info.Env(), info[0].As<Napi::String>().Utf8Value());
  }

 private:
  Mapping& mapping(const Napi::Env& env) {
    if (!mapping_) throw Napi::Error::New(env, "this mapped file was closed");
    return *mapping_;
  }

  Napi::Value Size(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(mapping(info.Env()).size)); }

  // The mapping's address, so tests can tell two threads share one mapping.
  Napi::Value Address(const Napi::CallbackInfo& info) {
    return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(reinterpret_cast<uintptr_t>(mapping(info.Env()).base)));
  }

  // view(offset, length): an ArrayBuffer over bytes offset..offset+length-1 of the file, no copy.
  Napi::Value View(const Napi::CallbackInfo& info) {
    const Napi::Env env = info.Env();
    Mapping& m = mapping(env);
    if (!info[0].IsNumber() || !info[1].IsNumber()) throw Napi::TypeError::New(env, "offset and length must be numbers");
    const double off = info[0].As<Napi::Number>().DoubleValue();
    const double len = info[1].As<Napi::Number>().DoubleValue();
    if (!(off >= 0 && len >= 0 && off == static_cast<double>(static_cast<uint64_t>(off)) && len == static_cast<double>(static_cast<uint64_t>(len)) &&
          off + len <= static_cast<double>(m.size))) {
      throw Napi::RangeError::New(env, "view " + std::to_string(off) + "+" + std::to_string(len) + " is outside the file's " + std::to_string(m.size) + " bytes");
    }
    if (len == 0) return Napi::ArrayBuffer::New(env, 0);
    auto* keep = new std::shared_ptr<Mapping>(mapping_);
    return Napi::ArrayBuffer::New(env, static_cast<uint8_t*>(m.base) + static_cast<size_t>(off), static_cast<size_t>(len),
                                  [](Napi::Env, void*, std::shared_ptr<Mapping>* hint) { delete hint; }, keep);
  }

  // close(): drops this object's hold; views made from it stay valid.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    mapping_.reset();
    return info.Env().Undefined();
  }

  std::shared_ptr<Mapping> mapping_;
};

}  // namespace

void defineMappedFile(Napi::Env env, Napi::Object exports) { exports.Set("MappedFile", MappedFile::Define(env)); }

}  // namespace stepwise
