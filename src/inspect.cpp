// multiproc::inspect / list_objects / remove_stale (inspect.hpp): the library side of
// multiproc-ls. Reads files in /dev/shm with pread() only — never mapped, never written — and
// judges every byte it reads: a header must pass the same validation an open does before any of
// its fields is used, and kind-specific fields are read only when the body is long enough.
#include <multiproc/inspect.hpp>

#include "os.hpp"
#include "segment/segment_impl.hpp"

#include <multiproc/detail/channel.hpp>
#include <multiproc/detail/mutex_state.hpp>
#include <multiproc/detail/locked_object.hpp>
#include <multiproc/detail/shared_object.hpp>
#include <multiproc/detail/sync_state.hpp>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sys/stat.h>
#include <unistd.h>

namespace multiproc {
namespace {

using detail::Liveness;
using detail::SegmentHeader;

ProcessState state_of(Liveness l) noexcept {
  switch (l) {
    case Liveness::alive: return ProcessState::alive;
    case Liveness::dead: return ProcessState::dead;
    case Liveness::unknown: break;
  }
  return ProcessState::unknown;
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// Reads exactly n bytes at off; false on a short file or an error.
bool read_at(int fd, void* out, std::size_t n, std::uint64_t off) {
  std::size_t done = 0;
  while (done < n) {
    const ssize_t r = ::pread(fd, static_cast<char*>(out) + done, n - done,
                              static_cast<off_t>(off + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    done += static_cast<std::size_t>(r);
  }
  return true;
}

// The thread group of a thread (Tgid in /proc/<tid>/status), 0 if unknown.
int thread_group(int tid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/status", tid);
  FILE* f = std::fopen(path, "re");
  if (f == nullptr) return 0;
  char line[256];
  int tgid = 0;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::sscanf(line, "Tgid: %d", &tgid) == 1) break;
  }
  std::fclose(f);
  return tgid;
}

LockInfo lock_info(const detail::MutexState& m) {
  LockInfo l;
  l.word = m.word.load(std::memory_order_relaxed);  // a private copy
  l.holder_tid = static_cast<int>(l.word & FUTEX_TID_MASK);
  l.owner_died = (l.word & FUTEX_OWNER_DIED) != 0;
  l.waiters = (l.word & FUTEX_WAITERS) != 0 || m.sleepers.load(std::memory_order_relaxed) != 0;
  const std::uint32_t inc = m.inconsistent.load(std::memory_order_relaxed);
  l.inconsistent = (inc & 1u) != 0;
  l.recoveries = inc >> 1;
  if (l.holder_tid == 0) {
    l.holder = ProcessState::dead;
    return l;
  }
  l.holder_pid = thread_group(l.holder_tid);
  if (l.holder_pid == 0) {
    // No /proc/<tid>: gone (or hidden: kill(0) tells them apart).
    l.holder = state_of(detail::process_liveness(l.holder_tid, 0) == Liveness::dead
                            ? Liveness::dead
                            : Liveness::unknown);
  } else {
    l.holder = state_of(detail::thread_liveness(l.holder_pid, l.holder_tid, 0));
  }
  l.dead_holder_unmarked = l.holder == ProcessState::dead && !l.owner_died;
  return l;
}

// Kind-specific fields, from the body at h.body_offset (checked to lie in the file).
void read_body(int fd, const SegmentHeader& h, ObjectInfo& info) {
  const std::uint64_t body = h.body_offset;
  const auto kind = static_cast<Kind>(h.kind);
  auto read_lock = [&](std::uint64_t offset) {
    detail::MutexState m;
    if (offset + sizeof m <= h.body_size && read_at(fd, &m, sizeof m, body + offset)) {
      info.lock = lock_info(m);
    }
  };
  switch (kind) {
    case Kind::mutex:
    case Kind::recursive_mutex: read_lock(0); break;
    case Kind::condition: read_lock(offsetof(detail::ConditionCore, lock)); break;
    case Kind::value:
    case Kind::array: {
      detail::LockedHead head;
      if (sizeof head > h.body_size || !read_at(fd, &head, sizeof head, body)) break;
      if (head.lock_kind == static_cast<std::uint32_t>(detail::LockKind::own)) {
        info.lock = lock_info(head.mutex);
      } else if (h.elem_align != 0 && h.elem_size != 0) {
        // The external lock's name is the tail, after the elements (shared_array.hpp's layout).
        const std::uint64_t data =
            (sizeof head + h.elem_align - 1) / h.elem_align * h.elem_align;
        const std::uint64_t tail = data + h.count * h.elem_size;
        char name[detail::kLockNameSize];
        if (h.count <= h.body_size && tail + sizeof name <= h.body_size &&
            read_at(fd, name, sizeof name, body + tail)) {
          name[sizeof name - 1] = '\0';
          info.external_lock = name;
        }
      }
      break;
    }
    case Kind::semaphore:
    case Kind::bounded_semaphore: {
      detail::SemaphoreCore s;
      if (sizeof s <= h.body_size && read_at(fd, &s, sizeof s, body)) {
        info.value = s.count.load(std::memory_order_relaxed);
      }
      break;
    }
    case Kind::event: {
      detail::EventCore e;
      if (sizeof e <= h.body_size && read_at(fd, &e, sizeof e, body)) {
        info.value = e.word.load(std::memory_order_relaxed) & 1u;
      }
      break;
    }
    case Kind::queue:
    case Kind::joinable_queue:
    case Kind::simple_queue: {
      std::uint64_t producer = 0, consumer = 0;
      std::uint32_t closed = 0;
      if (sizeof(detail::ChannelState) <= h.body_size &&
          read_at(fd, &producer, sizeof producer,
                  body + offsetof(detail::ChannelState, producer) +
                      offsetof(detail::EndState, cursor)) &&
          read_at(fd, &consumer, sizeof consumer,
                  body + offsetof(detail::ChannelState, consumer) +
                      offsetof(detail::EndState, cursor)) &&
          read_at(fd, &closed, sizeof closed, body + offsetof(detail::ChannelState, closed))) {
        info.depth = detail::records_between(consumer, producer);
        info.closed = (closed & detail::kClosed) != 0;
      }
      break;
    }
    default: break;
  }
}

// The attach table, as remove_if_stale() reads it (a copy: nothing is reaped).
void read_attached(int fd, ObjectInfo& info) {
  detail::AttachTable table;
  if (read_at(fd, &table, sizeof table, detail::kAttachOffset)) {
    info.attached = detail::seg::attached_pids(table, false);
    info.attach_overflow = table.overflow.load(std::memory_order_relaxed);
  }
}

}  // namespace

const char* to_string(ProcessState l) noexcept {
  switch (l) {
    case ProcessState::alive: return "alive";
    case ProcessState::dead: return "dead";
    case ProcessState::unknown: break;
  }
  return "unknown";
}

const char* to_string(ObjectInfo::Status s) noexcept {
  switch (s) {
    case ObjectInfo::Status::ok: return "ok";
    case ObjectInfo::Status::initializing: return "initializing";
    case ObjectInfo::Status::foreign: return "foreign";
    case ObjectInfo::Status::corrupt: break;
  }
  return "corrupt";
}

bool ObjectInfo::stale() const noexcept {
  return (status == Status::ok || status == Status::initializing) && !persistent &&
         creator == ProcessState::dead && attached.empty() && attach_overflow == 0;
}

ObjectInfo inspect_file(const std::string& file) {
  if (file.empty() || file.find('/') != std::string::npos || file == "." || file == "..") {
    throw Error(errc::invalid_argument, "multiproc: '" + file + "' is not a file name in /dev/shm");
  }
  ObjectInfo info;
  info.file = file;
  info.name = file.compare(0, 3, "mp.") == 0 ? file.substr(3) : file;
  const std::string path = detail::seg::file_path(file);
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) throw Error(errc::not_found, "multiproc: no file " + path);
    throw Error::from_errno(errno, "multiproc: cannot look at " + path);
  }
  info.uid = st.st_uid;
  info.mode = st.st_mode & 07777;
  info.file_size = static_cast<std::uint64_t>(st.st_size);
  if (!S_ISREG(st.st_mode)) {
    info.problem = "not a regular file";
    return info;
  }
  // O_NONBLOCK and O_NOFOLLOW: a file swapped for a FIFO or a link meanwhile does not hang us.
  Fd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (fd.get() < 0) {
    if (errno == ENOENT) throw Error(errc::not_found, "multiproc: no file " + path);
    info.problem = std::string("cannot be read here: ") + std::strerror(errno);
    return info;
  }
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    info.problem = "not a regular file";
    return info;
  }
  info.file_size = static_cast<std::uint64_t>(st.st_size);
  SegmentHeader h;
  if (!read_at(fd.get(), &h, sizeof h, 0)) {
    info.problem = std::to_string(info.file_size) + " bytes, too short to be a multiproc object";
    return info;
  }
  if (h.magic != detail::kSegmentMagic) {
    info.problem = "not a multiproc object (bad magic number)";
    return info;
  }
  if (h.layout_version != detail::kLayoutVersion) {
    info.problem = "segment layout version " + std::to_string(h.layout_version) +
                   ", this build reads " + std::to_string(detail::kLayoutVersion);
    return info;
  }
  const std::uint32_t state = h.state.load(std::memory_order_relaxed);  // a private copy
  if (state == detail::kStateInitializing) {
    info.status = ObjectInfo::Status::initializing;
    info.creator_pid = h.creator_pid;  // may be half-written: judged by liveness only
    info.creator = state_of(detail::process_liveness(h.creator_pid, 0));
    info.problem = "not published yet";
    read_attached(fd.get(), info);
    return info;
  }
  if (state != detail::kStateReady) {
    info.status = ObjectInfo::Status::corrupt;
    info.problem = "bad state word";
    return info;
  }
  try {
    // The checks an open makes, except the kind: whatever kind it states.
    detail::seg::validate(h, static_cast<std::size_t>(info.file_size), "'" + info.name + "'",
                          static_cast<Kind>(h.kind), nullptr);
  } catch (const Error& e) {
    info.status = ObjectInfo::Status::corrupt;
    info.problem = e.what();
    return info;
  }
  info.status = ObjectInfo::Status::ok;
  info.kind = static_cast<Kind>(h.kind);
  info.kind_name = kind_name(info.kind);
  info.element = detail::element_from_header(h);
  info.type = detail::object_type_name(info.kind, &info.element);
  info.count = h.count;
  info.body_size = h.body_size;
  info.persistent = (h.flags & detail::kFlagPersistent) != 0;
  info.generation = h.generation;
  info.created_ns = h.created_ns;
  info.creator_pid = h.creator_pid;
  info.creator = state_of(detail::process_liveness(h.creator_pid, h.creator_start_time));
  if (info.creator != ProcessState::dead) info.creator_program = detail::seg::program_of(h.creator_pid);
  read_attached(fd.get(), info);
  read_body(fd.get(), h, info);
  return info;
}

std::vector<ObjectInfo> list_objects() {
  DIR* dir = ::opendir("/dev/shm");
  if (dir == nullptr) throw Error::from_errno(errno, "multiproc: cannot list /dev/shm");
  std::vector<std::string> files;
  while (const dirent* e = ::readdir(dir)) {
    if (std::strncmp(e->d_name, "mp.", 3) == 0) files.emplace_back(e->d_name);
  }
  ::closedir(dir);
  std::sort(files.begin(), files.end());
  std::vector<ObjectInfo> out;
  for (const auto& f : files) {
    try {
      out.push_back(inspect_file(f));
    } catch (const Error& e) {
      if (e.code() == make_error_code(errc::not_found)) continue;  // removed meanwhile
      ObjectInfo bad;  // cannot even be looked at: listed, with the reason
      bad.file = f;
      bad.name = f.substr(3);
      bad.problem = e.what();
      out.push_back(std::move(bad));
    }
  }
  return out;
}

std::optional<ObjectInfo> inspect(const Name& name) {
  try {
    return inspect_file(detail::seg::shm_name(name));
  } catch (const Error& e) {
    if (e.code() == make_error_code(errc::not_found)) return std::nullopt;
    throw;
  }
}

bool remove_stale(const ObjectInfo& info) {
  const int r = detail::seg::remove_if_stale(info.file);
  if (r < 0) throw Error::from_errno(-r, "multiproc: cannot remove " + detail::seg::file_path(info.file));
  return r > 0;
}

}  // namespace multiproc
