// Segments: atomic publishing of named objects and reclaim of stale names.
//
// A named object is built in an unnamed tmpfs file (O_TMPFILE) and linked under its name only
// when header and body are complete, so a name never shows half an object and a creator killed at
// any instruction leaves either nothing or a whole object behind. A name whose creator died
// without removing it (and that is not persistent) is reclaimed by the next create.
#include "segment_impl.hpp"

#include "../os.hpp"

#include <boost/interprocess/shared_memory_object.hpp>

#include <cerrno>
#include <cstdio>
#include <sys/mman.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysinfo.h>
#include <unistd.h>

namespace multiproc::detail::seg {
namespace {

constexpr unsigned kPermissions = 0600;  // owner only, as Python's shared_memory

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

// Reads the header of an existing object (with pread, not a mapping: a file shrunk meanwhile is
// a short read, not a SIGBUS). Returns false when fewer than its 256 bytes are there.
bool read_header(int fd, SegmentHeader* h) noexcept {
  const ssize_t n = ::pread(fd, static_cast<void*>(h), detail::kHeaderSize, 0);
  return n == static_cast<ssize_t>(detail::kHeaderSize);
}

// Judges from its header whether an object is stale: its creator is dead and it is not
// persistent. False when the object cannot be judged (too short, foreign, not published yet by a
// live creator). *generation: the object's generation when it is stale and published.
bool creator_is_gone(int fd, std::uint64_t* generation) {
  SegmentHeader h;
  if (!read_header(fd, &h)) return false;
  const std::uint32_t state = h.state.load(std::memory_order_relaxed);  // a private copy
  if (state == detail::kStateReady) {
    if (h.magic != detail::kSegmentMagic || h.checksum != detail::header_checksum(h)) return false;
    if ((h.flags & detail::kFlagPersistent) != 0) return false;
    // unknown: not stale (never reclaim a name whose creator may be alive).
    if (process_liveness(h.creator_pid, h.creator_start_time) != Liveness::dead) return false;
    if (generation != nullptr && h.layout_version == detail::kLayoutVersion) {
      *generation = h.generation;
    }
    return true;
  }
  if (state == detail::kStateInitializing) {
    const pid_t creator = h.creator_pid;
    return creator != 0 && process_liveness(creator, 0) == Liveness::dead;  // unknown: as above
  }
  return false;
}

// Whether a live (or unknown) process has attached to the object `fd` (read with pread; a
// short file has no table: nobody).
bool anyone_attached(int fd) {
  AttachTable table;
  const ssize_t n = ::pread(fd, static_cast<void*>(&table), sizeof table,
                            static_cast<off_t>(detail::kAttachOffset));
  if (n != static_cast<ssize_t>(sizeof table)) return false;
  return !attached_pids(table, false).empty();
}

// Removes `file` if it still is the object `fd` (same device and inode), holding an exclusive
// flock() of it as every identity-checked remover does. Returns: whether it removed the name.
bool remove_locked(int fd, const std::string& file, int* error = nullptr) {
  while (::flock(fd, LOCK_EX) != 0 && errno == EINTR) {
  }
  struct stat mine {}, current {};
  bool removed = false;
  if (::fstat(fd, &mine) == 0 && ::stat(file_path(file).c_str(), &current) == 0 &&
      mine.st_ino == current.st_ino && mine.st_dev == current.st_dev) {
    removed = ::shm_unlink(("/" + file).c_str()) == 0;
    if (!removed && error != nullptr) *error = errno;
  }
  ::flock(fd, LOCK_UN);
  return removed;
}

// If the name's creator is dead and the object is not persistent, removes the name and returns
// true (the caller retries its create; Error(errc::already_exists) naming the file's owner when this
// user may not remove it); *generation is then the removed object's generation (left
// as it was when unknown). Concurrent reclaimers serialise on flock() of the old object and only
// remove the name while it still refers to that object, so a fresh object made by another process
// in between is never removed.
bool reclaim_if_stale(const std::string& file, std::uint64_t* generation, const std::string& what) {
  const int fd = ::open(file_path(file).c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return errno == ENOENT;  // gone meanwhile: create again
  const bool gone = creator_is_gone(fd, generation);
  int error = 0;
  struct stat st {};
  // Removed by us or by another reclaimer: either way, try to create again. But a name this user
  // may not remove (another user's file in the sticky /dev/shm) would only be found again.
  if (gone && !remove_locked(fd, file, &error) && (error == EPERM || error == EACCES) &&
      ::fstat(fd, &st) == 0) {
    ::close(fd);
    throw Error(errc::already_exists,
                what + ": the name is left by a process that died, but its file belongs to uid " +
                    std::to_string(st.st_uid) +
                    ", which this user may not remove (/dev/shm is sticky): remove it as that "
                    "user or as root (mp::remove or rm /dev/shm/" + file + ")");
  }
  ::close(fd);
  return gone;
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


}  // namespace

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

// persistent one).
std::shared_ptr<SegmentImpl> try_create(const Name& name, const SegmentLayout& layout,
                                        const Segment::Init& init, const std::string& what) {
  const std::size_t total = total_size_for(layout, what);
  const std::size_t body_offset = body_offset_for(layout);
  const std::string file = shm_name(name);
  const std::string path = file_path(file);
  std::uint64_t generation = 0;  // of the object this create reclaimed the name from

  for (int attempt = 0; attempt < kCreateAttempts; ++attempt) {
    struct stat existing {};
    if (::stat(path.c_str(), &existing) == 0) {
      if (reclaim_if_stale(file, &generation, what)) continue;
      return nullptr;
    }
    check_space(what, total);
    // Build the whole object in an unnamed file, then link it under its name: the name appears
    // complete or not at all, whatever instruction the creator is killed at.
    Descriptor fd(::open("/dev/shm", O_TMPFILE | O_RDWR | O_CLOEXEC, kPermissions));
    if (fd.get() < 0) {
      throw Error::from_errno(errno, what + ": cannot create an unnamed file in /dev/shm");
    }
    apply_permissions(fd.get(), name, what);  // mode and group (segment.cpp), before linking
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
    impl->guard = guard_mapping(impl->region.get_address(), impl->region.get_size());
    initialise(impl->region.get_address(), layout, body_offset, true, name.persistent(), init,
               generation + 1);
    copy_header(impl->region.get_address(), &impl->header);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) throw Error::from_errno(errno, what + ": fstat failed");
    impl->dev = st.st_dev;
    impl->ino = st.st_ino;
    impl->name = name.str();
    impl->file = file;
    impl->what = what;
    impl->owns_name = !name.persistent();
    impl->owner_pid = ::getpid();
    if (!link_descriptor(fd.get(), path, what)) continue;  // lost a race: look again
    attach(*impl);
    register_impl(impl);
    return impl;
  }
  throw Error(errc::already_exists,
              what + ": the name keeps being re-created by other processes; giving up");
}

std::string program_of(int pid) {
  if (pid <= 0) return "";
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/comm", pid);
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  char buf[64];
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return "";
  std::string comm(buf, static_cast<std::size_t>(n));
  while (!comm.empty() && (comm.back() == '\n' || comm.back() == '\0')) comm.pop_back();
  return comm;
}

std::string taken_by(const std::string& file) {
  const int fd = ::open(file_path(file).c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return "another object (" + file_path(file) + ", unreadable here)";
  SegmentHeader h;
  const bool read = read_header(fd, &h);
  ::close(fd);
  if (!read || h.magic != detail::kSegmentMagic || h.checksum != detail::header_checksum(h)) {
    return "a file that is not a readable multiproc object (" + file_path(file) + ")";
  }
  const int pid = h.creator_pid;
  const Liveness l = process_liveness(pid, h.creator_start_time);
  std::string who = "pid " + std::to_string(pid);
  if (l != Liveness::dead) {
    const std::string prog = program_of(pid);
    if (!prog.empty()) who += " (" + prog + ")";
  }
  const bool persistent = (h.flags & detail::kFlagPersistent) != 0;
  std::string s = persistent ? "a persistent object created by " + who : who;
  s += l == Liveness::alive ? ", alive" : l == Liveness::dead ? ", which has exited" : ", alive or hidden";
  return s;
}

int remove_if_stale(const std::string& file) {
  const int fd = ::open(file_path(file).c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return errno == ENOENT ? 0 : -errno;
  int result = 0;
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && creator_is_gone(fd, nullptr) &&
      !anyone_attached(fd)) {
    result = remove_locked(fd, file) ? 1 : 0;
  }
  ::close(fd);
  return result;
}

}  // namespace multiproc::detail::seg
