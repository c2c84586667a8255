// Segments: names — validation (Name), persistent(), remove(), exists(), Segment::unlink, the
// application's name prefix, and how a user's name is spelled in /dev/shm.
#include "segment_impl.hpp"

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <chrono>
#include <cstdio>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace multiproc {
namespace detail::seg {

namespace {
constexpr const char* kPrefix = "mp.";
constexpr std::size_t kMaxPrefixLength = 48;  // "mp." + 48 + a 200-character name < NAME_MAX

// The application's prefix: an immutable string, replaced whole by set_name_prefix (the old one
// is kept: a reader may still be copying it; prefixes change a few times per process at most).
// No lock, so a fork while another thread sets it leaves nothing locked in the child.
std::atomic<const std::string*> g_prefix{nullptr};

// Every prefix string ever made, on a list that stays reachable from this global (so that the
// ones replaced are kept, and a leak checker sees them as kept rather than lost).
struct KeptPrefix {
  std::string text;
  KeptPrefix* next;
};
std::atomic<KeptPrefix*> g_kept{nullptr};

// A new immutable prefix string, kept for the life of the process.
const std::string* keep_prefix(std::string text) {
  auto* k = new KeptPrefix{std::move(text), g_kept.load(std::memory_order_relaxed)};
  // release: the node is complete before it is reachable from g_kept (only kept, never read).
  while (!g_kept.compare_exchange_weak(k->next, k, std::memory_order_release,
                                       std::memory_order_relaxed)) {
  }
  return &k->text;
}

std::string checked_prefix(std::string_view prefix, const char* source) {
  auto bad = [&](const std::string& why) {
    throw Error(errc::invalid_argument, std::string("multiproc: name prefix '") +
                                            std::string(prefix.substr(0, 64)) + "' (" + source +
                                            "): " + why);
  };
  if (prefix.size() > kMaxPrefixLength) {
    bad("longer than " + std::to_string(kMaxPrefixLength) + " characters");
  }
  if (prefix.find('/') != std::string_view::npos) bad("contains '/'");
  if (prefix.find('\0') != std::string_view::npos) bad("contains a NUL character");
  return std::string(prefix);
}

const std::string& current_prefix() {
  // acquire: pairs with the release in set_name_prefix() and below; the string is complete.
  const std::string* p = g_prefix.load(std::memory_order_acquire);
  if (p != nullptr) return *p;
  const char* env = std::getenv("MULTIPROC_PREFIX");
  const std::string* fresh =
      keep_prefix(checked_prefix(env != nullptr ? env : "", "MULTIPROC_PREFIX"));
  const std::string* expected = nullptr;
  // release: publishes *fresh; pairs with the acquire above.
  if (g_prefix.compare_exchange_strong(expected, fresh, std::memory_order_acq_rel)) return *fresh;
  return *expected;  // another thread was first (ours stays kept, unused)
}
}  // namespace

// "mp." + prefix + name (Boost and shm_open add the '/').
std::string shm_name(const std::string& name) { return kPrefix + current_prefix() + name; }
std::string shm_path(const std::string& name) { return "/dev/shm/" + shm_name(name); }
std::string shm_name(const Name& name) {
  const std::string* fixed = name.fixed_prefix();
  return fixed != nullptr ? kPrefix + *fixed + name.str() : shm_name(name.str());
}
std::string shm_path(const Name& name) { return "/dev/shm/" + shm_name(name); }
std::string file_path(const std::string& file) { return "/dev/shm/" + file; }

// Removes the name while it refers to file (dev, ino). Every multiproc remover that checks
// identity (this, the creator's last handle, stale-name reclaim) holds an exclusive flock() of
// the file while it checks and removes, so none can remove a successor that another linked after
// the check. (A plain multiproc::remove(name) or a foreign unlink is not serialised: it may remove
// the object between the check and the removal, and a new object be created under the name; the
// window is the few instructions between stat() and shm_unlink().)
int remove_if_same(const std::string& file, dev_t dev, ino_t ino) {
  const std::string path = file_path(file);
  const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return errno == ENOENT ? 0 : -errno;
  struct stat mine {};
  if (::fstat(fd, &mine) != 0 || mine.st_dev != dev || mine.st_ino != ino) {
    ::close(fd);
    return 0;  // the name refers to another object (or we cannot tell): not ours to remove
  }
  // Bounded: a process that holds the lock for good (it cannot be multiproc, which holds it for a
  // few system calls) does not wedge a destructor; after 1 s the check is made without it.
  bool locked = false;
  for (int i = 0; i < 1000 && !locked; ++i) {
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) {
      locked = true;
    } else if (errno == EWOULDBLOCK) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    } else if (errno != EINTR) {
      break;
    }
  }
  struct stat current {};
  int result = 0;
  if (::stat(path.c_str(), &current) == 0 && current.st_dev == dev && current.st_ino == ino) {
    result = ::shm_unlink(("/" + file).c_str()) == 0 ? 1 : (errno == ENOENT ? 0 : -errno);
  }
  if (locked) ::flock(fd, LOCK_UN);
  ::close(fd);
  return result;
}

}  // namespace detail::seg

using detail::seg::kMaxNameLength;
using detail::seg::shm_name;
using detail::seg::shm_path;

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

Name allow_foreign(Name name) {
  name.foreign_allowed_ = true;
  return name;
}

Name with_prefix(Name name, std::string_view prefix) {
  name.prefix_ = detail::seg::checked_prefix(prefix, "with_prefix");
  return name;
}

void set_name_prefix(std::string_view prefix) {
  const std::string* fresh =
      detail::seg::keep_prefix(detail::seg::checked_prefix(prefix, "set_name_prefix"));
  // release: publishes *fresh; pairs with the acquire in current_prefix(). The old string stays
  // allocated (see g_kept).
  detail::seg::g_prefix.store(fresh, std::memory_order_release);
}

std::string name_prefix() { return detail::seg::current_prefix(); }

bool remove(const Name& name) {
  if (::shm_unlink(("/" + shm_name(name)).c_str()) == 0) return true;
  if (errno == ENOENT) return false;
  throw Error::from_errno(errno, "multiproc: cannot remove '" + name.str() + "'");
}

bool exists(const Name& name) {
  struct stat st {};
  return ::stat(shm_path(name).c_str(), &st) == 0;
}

bool Segment::unlink(const Name& name, FileId id) {
  // Same check as the creator's destructor: remove only while the name refers to that file.
  const int r = detail::seg::remove_if_same(shm_name(name), static_cast<dev_t>(id.dev),
                                            static_cast<ino_t>(id.ino));
  if (r < 0) throw Error::from_errno(-r, "multiproc: cannot remove '" + name.str() + "'");
  return r > 0;
}

}  // namespace multiproc
