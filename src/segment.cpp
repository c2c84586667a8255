// Segments: creation, validation on open, stale-name reclamation and name lifetime.
//
// Boost.Interprocess does the mapping (shared_memory_object, mapped_region,
// anonymous_shared_memory). What it leaves to us, and this file adds:
// - a header that is validated on every open, so a wrong or damaged object is a clear Error;
// - atomic creation: a named object is built in an unnamed tmpfs file (O_TMPFILE) and linked
//   under its name only when header and body are complete, so a name never shows half an object
//   and a creator killed at any instruction leaves either nothing or a whole object behind;
// - name ownership: the creating process removes the name when its last handle goes (opens of the
//   same object in that process share one mapping through a registry), and a name whose creator
//   died without removing it is reclaimed by the next create;
// - mappings that stay while this process holds a robust lock inside them, because glibc's
//   per-thread robust-lock list points into them and the kernel walks that list when the thread
//   dies: unmapping under it would stop the walk and strand every other lock the thread holds.
#include <multiproc/segment.hpp>

#include <multiproc/detail/futex.hpp>
#include <multiproc/detail/segment_header.hpp>

#include "os.hpp"

#include <boost/interprocess/anonymous_shared_memory.hpp>
#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <limits>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysinfo.h>
#include <mutex>
#include <map>
#include <thread>
#include <vector>
#include <sys/mman.h>
#include <unistd.h>

namespace bip = boost::interprocess;

namespace multiproc {
namespace detail {

class SegmentImpl {
 public:
  bip::mapped_region region;
  std::string name;      // the user's name; empty when anonymous
  std::string what;      // describe(): "SharedValue<int> 'counter'"
  bool owns_name = false;
  pid_t owner_pid = 0;   // the process whose last handle removes the name
  dev_t dev = 0;         // identity of the named object, so we never remove a successor and
  ino_t ino = 0;         // so opens in one process share one mapping
  std::vector<const std::atomic<std::int32_t>*> lock_owners;  // tid words of robust locks inside
  std::mutex lock_owners_mutex;

  ~SegmentImpl();
  bool lock_held_in_this_process();
};

}  // namespace detail

namespace {

using detail::SegmentHeader;
using detail::SegmentImpl;

constexpr std::size_t kMaxNameLength = 200;
constexpr const char* kPrefix = "mp.";
constexpr auto kInitWait = std::chrono::seconds(2);
constexpr unsigned kPermissions = 0600;  // owner only, as Python's shared_memory
constexpr int kCreateAttempts = 8;

std::string shm_name(const std::string& name) { return kPrefix + name; }  // Boost adds the '/'
std::string shm_path(const std::string& name) { return "/dev/shm/" + shm_name(name); }

std::string type_display(Kind kind, const ElementType* element) {
  std::string s = kind_name(kind);
  if (element != nullptr && element->size != 0) s += "<" + element->name + ">";
  return s;
}

std::string describe_object(Kind kind, const ElementType* element, const std::string& name) {
  return type_display(kind, element) + (name.empty() ? " (anonymous)" : " '" + name + "'");
}

// Translates a Boost.Interprocess exception into an Error naming the object.
[[noreturn]] void rethrow_boost(const bip::interprocess_exception& e, const std::string& what,
                                const char* action) {
  const int native = e.get_native_error();
  switch (e.get_error_code()) {
    case bip::not_found_error:
      throw Error(errc::not_found, what + ": " + action + ": no object of that name exists");
    case bip::already_exists_error:
      throw Error(errc::already_exists, what + ": " + action + ": the name is taken");
    default:
      if (native != 0) throw Error::from_errno(native, what + ": " + action);
      throw Error(errc::invalid_argument, what + ": " + action + ": " + e.what());
  }
}

bool is_boost_error(const bip::interprocess_exception& e, bip::error_code_t code) {
  return e.get_error_code() == code;
}

std::size_t body_offset_for(const SegmentLayout& layout) {
  return std::max<std::size_t>(detail::kHeaderSize,
                               (layout.body_alignment + 63) / 64 * 64);
}

// Total bytes of a segment, or an Error for an absurd layout.
std::size_t total_size_for(const SegmentLayout& layout, const std::string& what) {
  if (layout.body_alignment == 0 || (layout.body_alignment & (layout.body_alignment - 1)) != 0 ||
      layout.body_alignment > 4096) {
    throw Error(errc::invalid_argument,
                what + ": body alignment " + std::to_string(layout.body_alignment) +
                    " is not a power of two up to 4096");
  }
  const std::size_t offset = body_offset_for(layout);
  // Keep sizes far from overflow and from what mmap can ever give: 2^46 bytes (64 TiB).
  constexpr std::size_t kMax = std::size_t{1} << 46;
  if (layout.body_size > kMax - offset) {
    throw Error(errc::invalid_argument,
                what + ": " + std::to_string(layout.body_size) +
                    " bytes is too large for a shared segment");
  }
  return offset + layout.body_size;
}

void write_header(SegmentHeader* h, const SegmentLayout& layout, std::size_t body_offset,
                  bool named, bool persistent) {
  // The region is zero-filled, and state is still kStateInitializing (0).
  h->layout_version = detail::kLayoutVersion;
  h->magic = detail::kSegmentMagic;
  h->kind = static_cast<std::uint32_t>(layout.kind);
  h->type_code = layout.element.code;
  h->flags = static_cast<std::uint8_t>((named ? detail::kFlagNamed : 0) |
                                       (persistent ? detail::kFlagPersistent : 0));
  h->elem_size = layout.element.size;
  h->elem_align = layout.element.alignment;
  h->count = layout.count;
  h->body_offset = body_offset;
  h->body_size = layout.body_size;
  h->type_hash = layout.element.hash;
  h->creator_pid = static_cast<std::int32_t>(::getpid());
  h->creator_start_time = detail::self_start_time();
  std::snprintf(h->type_name, sizeof h->type_name, "%s", layout.element.name.c_str());
  h->checksum = detail::header_checksum(*h);
}

// Initialises header and body, then publishes the segment.
void initialise(void* base, const SegmentLayout& layout, std::size_t body_offset, bool named,
                bool persistent, const Segment::Init& init) {
  auto* h = static_cast<SegmentHeader*>(base);
  write_header(h, layout, body_offset, named, persistent);
  if (init) init(static_cast<char*>(base) + body_offset);
  // release: pairs with the acquire in wait_ready(); publishes the header and the body.
  h->state.store(detail::kStateReady, std::memory_order_release);
  detail::futex_wake(&h->state, std::numeric_limits<int>::max());
}

std::string element_describe_from_header(const SegmentHeader& h) {
  ElementType e;
  e.code = h.type_code;
  e.size = h.elem_size;
  e.alignment = h.elem_align;
  e.name = std::string(h.type_name, strnlen(h.type_name, sizeof h.type_name));
  return e.describe();
}

// Checks a ready header against what the opener expects. Throws Error naming the object.
void validate(const SegmentHeader& h, std::size_t mapped, const std::string& what, Kind kind,
              const ElementType* element) {
  if (h.magic != detail::kSegmentMagic) {
    throw Error(errc::corrupt, what + ": not a multiproc segment (bad magic number)");
  }
  if (h.layout_version != detail::kLayoutVersion) {
    throw Error(errc::corrupt, what + ": segment layout version " +
                                   std::to_string(h.layout_version) + ", this build reads " +
                                   std::to_string(detail::kLayoutVersion));
  }
  if (h.checksum != detail::header_checksum(h)) {
    throw Error(errc::corrupt, what + ": the segment header is damaged (checksum mismatch)");
  }
  if (h.body_offset < detail::kHeaderSize || h.body_offset % 64 != 0 ||
      h.body_size > mapped || h.body_offset > mapped - h.body_size) {
    throw Error(errc::corrupt, what + ": the segment is truncated or damaged (its header promises " +
                                   std::to_string(h.body_offset) + " + " +
                                   std::to_string(h.body_size) + " bytes, it has " +
                                   std::to_string(mapped) + ")");
  }
  if (h.kind != static_cast<std::uint32_t>(kind)) {
    std::string held = kind_name(static_cast<Kind>(h.kind));
    if (h.elem_size != 0) held += "<" + std::string(h.type_name, strnlen(h.type_name, sizeof h.type_name)) + ">";
    throw Error(errc::wrong_kind, what + ": the name holds a " + held + ", not a " + kind_name(kind));
  }
  if (element != nullptr &&
      (h.type_code != element->code || h.elem_size != element->size ||
       h.elem_align != element->alignment || h.type_hash != element->hash)) {
    throw Error(errc::type_mismatch, what + ": created with element type " +
                                         element_describe_from_header(h) + ", opened as " +
                                         element->describe());
  }
}

std::int32_t relaxed_load(const std::int32_t* p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }

// Waits until the creator publishes the header (bounded), or throws if it never will.
void wait_ready(const SegmentHeader& h, const std::string& what) {
  const auto deadline = detail::Clock::now() + kInitWait;
  for (;;) {
    // acquire: pairs with the release in initialise(); makes header and body visible.
    const std::uint32_t state = h.state.load(std::memory_order_acquire);
    if (state == detail::kStateReady) return;
    if (state != detail::kStateInitializing) {
      throw Error(errc::corrupt, what + ": not a multiproc segment (bad state word)");
    }
    const pid_t creator = relaxed_load(&h.creator_pid);
    if (creator != 0 && !detail::process_alive(creator, 0)) {
      throw Error(errc::corrupt, what + ": its creator (pid " + std::to_string(creator) +
                                     ") died while initialising it; the next create of the "
                                     "name reclaims it, or multiproc::remove clears it");
    }
    const auto now = detail::Clock::now();
    if (now >= deadline) {
      throw Error(errc::corrupt,
                  what + ": still not initialised after 2 s (is it a multiproc segment?)");
    }
    const auto slice = std::min(deadline, now + std::chrono::milliseconds(50));
    detail::futex_wait(&h.state, detail::kStateInitializing, &slice);
  }
}

// Space check before a named segment is sized, so an absurd size is an Error now instead of a
// SIGBUS on first touch (tmpfs allocates lazily).
void check_space(const std::string& what, std::size_t total) {
  struct statvfs fs {};
  if (::statvfs("/dev/shm", &fs) == 0) {
    const unsigned long long avail =
        static_cast<unsigned long long>(fs.f_bavail) * static_cast<unsigned long long>(fs.f_frsize);
    if (total > avail) {
      throw Error(errc::invalid_argument, what + ": needs " + std::to_string(total) +
                                              " bytes but /dev/shm has only " +
                                              std::to_string(avail) + " free");
    }
  }
}

void check_memory(const std::string& what, std::size_t total) {
  struct sysinfo si {};
  if (::sysinfo(&si) == 0) {
    const unsigned long long ram =
        static_cast<unsigned long long>(si.totalram) * si.mem_unit +
        static_cast<unsigned long long>(si.totalswap) * si.mem_unit;
    if (total > ram) {
      throw Error(errc::invalid_argument, what + ": needs " + std::to_string(total) +
                                              " bytes, more than this machine's memory (" +
                                              std::to_string(ram) + ")");
    }
  }
}

// Maps only the header of an existing object, to judge whether it is stale. Returns false when the
// object cannot be judged (too short, foreign, not published yet by a live creator).
bool creator_is_gone(bip::shared_memory_object& shm) {
  bip::offset_t size = 0;
  if (!shm.get_size(size) || size < static_cast<bip::offset_t>(detail::kHeaderSize)) return false;
  bip::mapped_region region(shm, bip::read_only, 0, detail::kHeaderSize);
  const auto& h = *static_cast<const SegmentHeader*>(region.get_address());
  const std::uint32_t state = h.state.load(std::memory_order_acquire);
  if (state == detail::kStateReady) {
    if (h.magic != detail::kSegmentMagic || h.checksum != detail::header_checksum(h)) return false;
    if ((h.flags & detail::kFlagPersistent) != 0) return false;
    return !detail::process_alive(h.creator_pid, h.creator_start_time);
  }
  if (state == detail::kStateInitializing) {
    const pid_t creator = relaxed_load(&h.creator_pid);
    return creator != 0 && !detail::process_alive(creator, 0);
  }
  return false;
}

// If the name's creator is dead and the object is not persistent, removes the name and returns
// true (the caller retries its create). Concurrent reclaimers serialise on flock() of the old
// object and only remove the name while it still refers to that object, so a fresh object made by
// another process in between is never removed.
bool reclaim_if_stale(const std::string& name) {
  const std::string sname = shm_name(name);
  try {
    bip::shared_memory_object shm(bip::open_only, sname.c_str(), bip::read_only);
    if (!creator_is_gone(shm)) return false;
    const int fd = shm.get_mapping_handle().handle;
    while (::flock(fd, LOCK_EX) != 0 && errno == EINTR) {
    }
    struct stat mine {}, current {};
    bool removed = false;
    if (::fstat(fd, &mine) == 0 && ::stat(shm_path(name).c_str(), &current) == 0 &&
        mine.st_ino == current.st_ino && mine.st_dev == current.st_dev) {
      removed = bip::shared_memory_object::remove(sname.c_str());
    }
    ::flock(fd, LOCK_UN);
    (void)removed;
    return true;  // removed by us or by another reclaimer: either way, try to create again
  } catch (const bip::interprocess_exception& e) {
    return is_boost_error(e, bip::not_found_error);  // gone meanwhile: create again
  }
}

// Process-local registry of the named objects this process has mapped, by file identity, so that
// every handle in one process — created or opened — shares one SegmentImpl (one mapping, and the
// creator's ownership of the name).
struct Registry {
  std::mutex mutex;
  std::map<std::pair<dev_t, ino_t>, std::weak_ptr<SegmentImpl>> impls;
};

Registry& registry() {
  static Registry* r = [] {
    auto* created = new Registry;  // never destroyed: handles may outlive static destruction
    // A fork while another thread held the registry's mutex would leave it locked in the child.
    ::pthread_atfork(nullptr, nullptr, [] { new (&registry().mutex) std::mutex(); });
    return created;
  }();
  return *r;
}

std::shared_ptr<SegmentImpl> registered(dev_t dev, ino_t ino) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto it = r.impls.find({dev, ino});
  if (it == r.impls.end()) return nullptr;
  auto impl = it->second.lock();
  if (!impl) r.impls.erase(it);
  return impl;
}

void register_impl(const std::shared_ptr<SegmentImpl>& impl) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  for (auto it = r.impls.begin(); it != r.impls.end();) {  // drop the expired while here
    it = it->second.expired() ? r.impls.erase(it) : std::next(it);
  }
  r.impls[{impl->dev, impl->ino}] = impl;
}

// The deleter of every SegmentImpl: keeps the mapping when a thread of this process still holds a
// robust lock inside it (see the file comment), with a warning, instead of unmapping under it.
void release_impl(SegmentImpl* impl) noexcept {
  if (impl->lock_held_in_this_process()) {
    std::fprintf(stderr,
                 "multiproc: warning: the last handle to %s was destroyed while this process "
                 "holds its lock; its memory stays mapped so that the lock stays recoverable\n",
                 impl->what.c_str());
    return;
  }
  delete impl;
}

std::shared_ptr<SegmentImpl> new_impl() {
  return std::shared_ptr<SegmentImpl>(new SegmentImpl, &release_impl);
}

// Lets Boost's mapped_region map a descriptor opened here (an O_TMPFILE file has no name to give
// to shared_memory_object).
class DescriptorMapping {
 public:
  explicit DescriptorMapping(int fd) : fd_(fd) {}
  bip::mapping_handle_t get_mapping_handle() const {
    return bip::ipcdetail::mapping_handle_from_file_handle(fd_);
  }
  bip::mode_t get_mode() const { return bip::read_write; }

 private:
  int fd_;
};

class Descriptor {
 public:
  explicit Descriptor(int fd) : fd_(fd) {}
  ~Descriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// Publishes the unnamed file `fd` under `path`. Returns false if the name is taken.
bool link_descriptor(int fd, const std::string& path, const std::string& what) {
  const std::string proc = "/proc/self/fd/" + std::to_string(fd);
  if (::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, path.c_str(), AT_SYMLINK_FOLLOW) == 0) return true;
  if (errno == EEXIST) return false;
  if (errno == ENOENT) {  // no /proc: the direct form (needs CAP_DAC_READ_SEARCH)
    if (::linkat(fd, "", AT_FDCWD, path.c_str(), AT_EMPTY_PATH) == 0) return true;
    if (errno == EEXIST) return false;
  }
  throw Error::from_errno(errno, what + ": cannot publish the new segment under its name");
}

// Creates and publishes a named object; nullptr when the name is taken by a live object (or a
// persistent one).
std::shared_ptr<SegmentImpl> try_create(const Name& name, const SegmentLayout& layout,
                                        const Segment::Init& init, const std::string& what) {
  const std::size_t total = total_size_for(layout, what);
  const std::size_t body_offset = body_offset_for(layout);
  const std::string path = shm_path(name.str());

  for (int attempt = 0; attempt < kCreateAttempts; ++attempt) {
    struct stat existing {};
    if (::stat(path.c_str(), &existing) == 0) {
      if (reclaim_if_stale(name.str())) continue;
      return nullptr;
    }
    check_space(what, total);
    // Build the whole object in an unnamed file, then link it under its name: the name appears
    // complete or not at all, whatever instruction the creator is killed at.
    Descriptor fd(::open("/dev/shm", O_TMPFILE | O_RDWR | O_CLOEXEC, kPermissions));
    if (fd.get() < 0) {
      throw Error::from_errno(errno, what + ": cannot create an unnamed file in /dev/shm");
    }
    ::fchmod(fd.get(), kPermissions);
    if (::ftruncate(fd.get(), static_cast<off_t>(total)) != 0) {
      throw Error::from_errno(errno, what + ": cannot size the new segment");
    }
    auto impl = new_impl();
    try {
      bip::mapped_region region(DescriptorMapping(fd.get()), bip::read_write);
      impl->region.swap(region);
    } catch (const bip::interprocess_exception& e) {
      rethrow_boost(e, what, "cannot map the new segment");
    }
    initialise(impl->region.get_address(), layout, body_offset, true, name.persistent(), init);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) throw Error::from_errno(errno, what + ": fstat failed");
    impl->dev = st.st_dev;
    impl->ino = st.st_ino;
    impl->name = name.str();
    impl->what = what;
    impl->owns_name = !name.persistent();
    impl->owner_pid = ::getpid();
    if (!link_descriptor(fd.get(), path, what)) continue;  // lost a race: look again
    register_impl(impl);
    return impl;
  }
  throw Error(errc::already_exists,
              what + ": the name keeps being re-created by other processes; giving up");
}

// Opens and validates; nullptr when the name does not exist.
std::shared_ptr<SegmentImpl> try_open(const Name& name, Kind kind, const ElementType* element,
                                      const std::string& what) {
  const std::string sname = shm_name(name.str());
  bip::shared_memory_object shm;
  try {
    bip::shared_memory_object opened(bip::open_only, sname.c_str(), bip::read_write);
    shm.swap(opened);
  } catch (const bip::interprocess_exception& e) {
    if (is_boost_error(e, bip::not_found_error)) return nullptr;
    rethrow_boost(e, what, "cannot open");
  }
  struct stat st {};
  if (::fstat(shm.get_mapping_handle().handle, &st) != 0) {
    throw Error::from_errno(errno, what + ": fstat failed");
  }
  // Already mapped in this process (created or opened here): share that mapping.
  if (auto impl = registered(st.st_dev, st.st_ino)) {
    const auto& h = *static_cast<const SegmentHeader*>(impl->region.get_address());
    validate(h, impl->region.get_size(), what, kind, element);
    return impl;
  }
  // multiproc publishes only complete objects, but a foreign or damaged file may be anything.
  bip::offset_t size = 0;
  if (!shm.get_size(size)) throw Error::from_errno(errno, what + ": cannot read its size");
  if (size == 0) {
    throw Error(errc::corrupt, what + ": the segment is empty (not made by multiproc?); "
                                      "multiproc::remove() clears it");
  }
  if (size < static_cast<bip::offset_t>(detail::kHeaderSize)) {
    throw Error(errc::corrupt, what + ": " + std::to_string(size) +
                                   " bytes, too short to be a multiproc segment");
  }
  auto impl = new_impl();
  try {
    bip::mapped_region region(shm, bip::read_write);
    impl->region.swap(region);
  } catch (const bip::interprocess_exception& e) {
    rethrow_boost(e, what, "cannot map");
  }
  const auto& h = *static_cast<const SegmentHeader*>(impl->region.get_address());
  wait_ready(h, what);
  validate(h, impl->region.get_size(), what, kind, element);
  impl->name = name.str();
  impl->what = what;
  impl->dev = st.st_dev;
  impl->ino = st.st_ino;
  register_impl(impl);
  return impl;
}

}  // namespace

namespace detail {

bool SegmentImpl::lock_held_in_this_process() {
  std::lock_guard<std::mutex> lock(lock_owners_mutex);
  for (const auto* owner : lock_owners) {
    const std::int32_t tid = owner->load(std::memory_order_relaxed);
    if (tid <= 0) continue;
    const std::string task = "/proc/self/task/" + std::to_string(tid);
    if (::access(task.c_str(), F_OK) == 0) return true;
  }
  return false;
}

SegmentImpl::~SegmentImpl() {
  // Only the creating process removes the name — never a forked child holding a copy — and only
  // while the name still refers to the object we created.
  if (!owns_name || ::getpid() != owner_pid) return;
  struct stat st {};
  if (::stat(shm_path(name).c_str(), &st) == 0 && (st.st_ino != ino || st.st_dev != dev)) return;
  try {
    bip::shared_memory_object::remove(shm_name(name).c_str());
  } catch (...) {  // destructors never throw
  }
}

ElementType make_element_type(char code, std::size_t size, std::size_t alignment,
                              const std::type_info& type) {
  ElementType e;
  e.code = code;
  e.size = static_cast<std::uint32_t>(size);
  e.alignment = static_cast<std::uint32_t>(alignment);
  if (code != 0) {
    const char key[] = {'t', 'c', ':', code, '\0'};
    e.hash = fnv1a64(key);
    e.name = type_info(code).c_type;
  } else {
    e.hash = fnv1a64(type.name());
    e.name = demangle(type.name());
  }
  if (e.name.size() >= kTypeNameSize) e.name.resize(kTypeNameSize - 1);
  return e;
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Name

Name::Name(std::string_view name) : name_(name) {
  auto bad = [&](const std::string& why) {
    std::string shown;  // control characters escaped, so the message survives as a C string
    for (char c : name_.substr(0, 64)) {
      if (static_cast<unsigned char>(c) < 0x20) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(c));
        shown += buf;
      } else {
        shown += c;
      }
    }
    if (name_.size() > 64) shown += "...";
    throw Error(errc::invalid_argument, "multiproc: invalid object name '" + shown + "': " + why);
  };
  if (name_.empty()) bad("empty");
  if (name_.size() > kMaxNameLength) {
    bad("longer than " + std::to_string(kMaxNameLength) + " characters");
  }
  if (name_.find('/') != std::string::npos) bad("contains '/'");
  if (name_.find('\0') != std::string::npos) bad("contains a NUL character");
  if (name_ == "." || name_ == "..") bad("reserved");
}

Name persistent(std::string_view name) {
  Name n(name);
  n.persistent_ = true;
  return n;
}

bool remove(const Name& name) {
  if (::shm_unlink(("/" + shm_name(name.str())).c_str()) == 0) return true;
  if (errno == ENOENT) return false;
  throw Error::from_errno(errno, "multiproc: cannot remove '" + name.str() + "'");
}

bool exists(const Name& name) {
  struct stat st {};
  return ::stat(shm_path(name.str()).c_str(), &st) == 0;
}

std::string kind_name(Kind kind) {
  switch (kind) {
    case Kind::value: return "SharedValue";
    case Kind::raw_value: return "RawValue";
    case Kind::array: return "SharedArray";
    case Kind::raw_array: return "RawArray";
    case Kind::mutex: return "Mutex";
    case Kind::recursive_mutex: return "RecursiveMutex";
    case Kind::semaphore: return "Semaphore";
    case Kind::bounded_semaphore: return "BoundedSemaphore";
    case Kind::condition: return "Condition";
    case Kind::event: return "Event";
    case Kind::barrier: return "Barrier";
    case Kind::queue: return "Queue";
    case Kind::joinable_queue: return "JoinableQueue";
    case Kind::simple_queue: return "SimpleQueue";
    case Kind::pipe: return "Pipe";
    case Kind::pool: return "Pool";
    case Kind::shared_memory: return "SharedMemory";
    case Kind::shareable_list: return "ShareableList";
    case Kind::user: break;
  }
  return "Segment#" + std::to_string(static_cast<std::uint32_t>(kind));
}

std::string ElementType::describe() const {
  std::string s = name.empty() ? "?" : name;
  s += " (";
  if (code != 0) s += std::string("'") + code + "', ";
  s += std::to_string(size) + (size == 1 ? " byte)" : " bytes)");
  return s;
}

// ---------------------------------------------------------------------------------------------
// Segment

Segment::Segment(std::shared_ptr<detail::SegmentImpl> impl)
    : impl_(std::move(impl)),
      body_(static_cast<char*>(impl_->region.get_address()) +
            static_cast<const SegmentHeader*>(impl_->region.get_address())->body_offset) {}

Segment Segment::create_anonymous(const SegmentLayout& layout, const Init& init) {
  const std::string what = describe_object(layout.kind, &layout.element, "");
  const std::size_t total = total_size_for(layout, what);
  check_memory(what, total);
  auto impl = new_impl();
  try {
    bip::mapped_region region = bip::anonymous_shared_memory(total);
    impl->region.swap(region);
  } catch (const bip::interprocess_exception& e) {
    rethrow_boost(e, what, "cannot map anonymous shared memory");
  }
  impl->what = what;
  initialise(impl->region.get_address(), layout, body_offset_for(layout), false, false, init);
  return Segment(std::move(impl));
}

Segment Segment::create(const Name& name, const SegmentLayout& layout, const Init& init) {
  const std::string what = describe_object(layout.kind, &layout.element, name.str());
  auto impl = try_create(name, layout, init, what);
  if (!impl) {
    throw Error(errc::already_exists,
                what + ": cannot create: the name is taken (use open_only or open_or_create to "
                       "share it, or multiproc::remove to discard it)");
  }
  return Segment(std::move(impl));
}

Segment Segment::open(const Name& name, Kind kind, const ElementType* element) {
  const std::string what = describe_object(kind, element, name.str());
  auto impl = try_open(name, kind, element, what);
  if (!impl) throw Error(errc::not_found, what + ": cannot open: no object of that name exists");
  return Segment(std::move(impl));
}

Segment Segment::open_or_create(const Name& name, const SegmentLayout& layout, const Init& init,
                                bool* created) {
  const std::string what = describe_object(layout.kind, &layout.element, name.str());
  const ElementType* element = layout.element.size != 0 ? &layout.element : nullptr;
  for (int attempt = 0; attempt < kCreateAttempts; ++attempt) {
    // Open first: an existing object needs no space check and no construction.
    auto impl = try_open(name, layout.kind, element, what);
    if (!impl) {
      if (auto made = try_create(name, layout, init, what)) {
        if (created != nullptr) *created = true;
        return Segment(std::move(made));
      }
      impl = try_open(name, layout.kind, element, what);  // taken meanwhile
    }
    if (impl) {
      Segment seg(std::move(impl));
      const auto& h = seg.header();
      if (h.count != layout.count || h.body_size != layout.body_size) {
        seg.fail(errc::type_mismatch,
                 "exists with count " + std::to_string(h.count) + " (" +
                     std::to_string(h.body_size) + " bytes), asked for count " +
                     std::to_string(layout.count) + " (" + std::to_string(layout.body_size) +
                     " bytes)");
      }
      if (created != nullptr) *created = false;
      return seg;
    }
    // Removed between our create and open attempts: try again.
  }
  throw Error(errc::already_exists,
              what + ": the name keeps being created and removed by other processes; giving up");
}

const detail::SegmentHeader& Segment::header() const noexcept {
  return *static_cast<const SegmentHeader*>(impl_->region.get_address());
}
Kind Segment::kind() const noexcept { return static_cast<Kind>(header().kind); }
std::uint64_t Segment::count() const noexcept { return header().count; }
std::size_t Segment::body_size() const noexcept { return header().body_size; }

void Segment::prefault() const noexcept {
#ifdef MADV_POPULATE_WRITE
  const long page = ::sysconf(_SC_PAGESIZE);
  auto begin = reinterpret_cast<std::uintptr_t>(body_);
  const std::uintptr_t end = begin + body_size();
  begin &= ~static_cast<std::uintptr_t>(page - 1);
  // EINVAL on kernels without it; the pages then fault in on first use as usual.
  (void)::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_WRITE);
#endif
}
bool Segment::named() const noexcept { return !impl_->name.empty(); }
const std::string& Segment::name() const noexcept { return impl_->name; }
bool Segment::owns_name() const noexcept {
  return impl_->owns_name && impl_->owner_pid == ::getpid();
}
const std::string& Segment::describe() const noexcept { return impl_->what; }

Segment::FileId Segment::file_id() const noexcept {
  if (!named()) return {};
  return {static_cast<std::uint64_t>(impl_->dev), static_cast<std::uint64_t>(impl_->ino)};
}

bool Segment::unlink(const Name& name, FileId id) {
  // Same check as the creator's destructor: remove only while the name refers to that file.
  struct stat st {};
  if (::stat(shm_path(name.str()).c_str(), &st) != 0) {
    if (errno == ENOENT) return false;
    throw Error::from_errno(errno, "multiproc: cannot look up '" + name.str() + "'");
  }
  if (static_cast<std::uint64_t>(st.st_dev) != id.dev ||
      static_cast<std::uint64_t>(st.st_ino) != id.ino) {
    return false;
  }
  return remove(name);
}

void Segment::fail(errc code, const std::string& message) const {
  throw Error(code, (impl_ ? impl_->what : std::string("multiproc: empty handle")) + ": " + message);
}

void Segment::track_lock_owner(const std::atomic<std::int32_t>* owner) const {
  std::lock_guard<std::mutex> lock(impl_->lock_owners_mutex);
  auto& owners = impl_->lock_owners;
  if (std::find(owners.begin(), owners.end(), owner) == owners.end()) owners.push_back(owner);
}

void Segment::expect_body_size(std::size_t expected) const {
  if (body_size() != expected) {
    fail(errc::corrupt, "its header claims count " + std::to_string(count()) + " and " +
                            std::to_string(body_size()) + " body bytes, which should be " +
                            std::to_string(expected));
  }
}

}  // namespace multiproc
