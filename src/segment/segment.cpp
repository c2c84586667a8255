// Segments: the Segment handle — anonymous create, open (map + validate), open_or_create — and
// the Boost glue. The other jobs live next to it (see segment_impl.hpp): the header, atomic
// publishing and stale-name reclaim, the per-process registry, names.
//
// Boost.Interprocess does the mapping (shared_memory_object, mapped_region,
// anonymous_shared_memory). What it leaves to us:
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
#include "segment_impl.hpp"

#include <multiproc/detail/shared_object.hpp>

#include <boost/interprocess/anonymous_shared_memory.hpp>
#include <boost/interprocess/shared_memory_object.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <grp.h>
#include <optional>
#include <pwd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace multiproc {
namespace detail::seg {

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

void copy_header(const void* mapped, SegmentHeader* out) noexcept {
  std::memcpy(static_cast<void*>(out), mapped, detail::kHeaderSize);
}

// "uid 33 (www-data)": a uid and, when it has one, its user name.
std::string describe_user(uid_t uid) {
  std::string s = "uid " + std::to_string(uid);
  struct passwd pw {};
  struct passwd* found = nullptr;
  std::vector<char> buf(4096);
  if (::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) == 0 && found != nullptr) {
    s += std::string(" (") + found->pw_name + ")";
  }
  return s;
}

// Refuses a file another user owns or others may write, unless the name allows it: with
// trust_owner(name, u), a file of u (or ours) that its group may write is accepted.
void check_owner(const struct stat& st, const Name& name, const std::string& what) {
  if (name.foreign_allowed()) return;
  const uid_t me = ::geteuid();
  const std::optional<uid_t> trusted = name.trusted_owner();
  const bool foreign = st.st_uid != me && !(trusted && st.st_uid == *trusted);
  const bool group_writable = (st.st_mode & S_IWGRP) != 0;
  const bool others_writable = (st.st_mode & S_IWOTH) != 0;
  const bool writable = others_writable || (group_writable && !trusted);
  if (!foreign && !writable) return;
  const std::string owner = describe_user(st.st_uid);
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  std::string msg = what + ": refusing to open " + shm_path(name) + ": it belongs to " +
                    owner + ", mode " + mode;
  if (foreign) msg += "; this process runs as uid " + std::to_string(me);
  if (trusted) msg += " and trusts " + describe_user(*trusted);
  if (writable) msg += trusted ? "; others may write it" : "; group or others may write it";
  if (!trusted || foreign) {
    msg += " (to share it on purpose, open it as multiproc::trust_owner(name, " +
           std::to_string(st.st_uid) + "); multiproc::allow_foreign(name) opens it anyway)";
  } else {
    msg += " (multiproc::allow_foreign(name) opens it anyway)";
  }
  throw Error(std::error_code(EACCES, std::system_category()), msg);
}

void apply_permissions(int fd, const Name& name, const std::string& what) {
  const Permissions& p = name.permissions();
  if (const std::optional<gid_t> group = p.group()) {
    if (::fchown(fd, static_cast<uid_t>(-1), *group) != 0) {
      throw Error::from_errno(errno, what + ": cannot give the new segment to group " +
                                         std::to_string(*group) +
                                         " (needs root or membership of the group)");
    }
  }
  // fchmod, not the mode given to open(): the umask does not apply to it.
  if (::fchmod(fd, p.mode()) != 0) {
    throw Error::from_errno(errno, what + ": cannot set the new segment's mode");
  }
}

}  // namespace detail::seg

namespace {

// A number written in decimal, or nothing.
std::optional<unsigned long> decimal(const std::string& s) {
  if (s.empty() || s.size() > 10 || s.find_first_not_of("0123456789") != std::string::npos) {
    return std::nullopt;
  }
  return std::stoul(s);
}

}  // namespace

Permissions::Permissions(unsigned mode) : mode_(mode) {
  if (mode != 0600 && mode != 0660 && mode != 0606 && mode != 0666) {
    char shown[16];
    std::snprintf(shown, sizeof shown, "%04o", mode);
    throw Error(errc::invalid_argument,
                std::string("multiproc::Permissions: mode ") + shown +
                    ": objects are opened read-write, so the mode is 0600, 0660, 0606 or 0666");
  }
}

Permissions::Permissions(unsigned mode, gid_t group) : Permissions(mode) { group_ = group; }

Permissions::Permissions(unsigned mode, const std::string& group) : Permissions(mode) {
  struct group gr {};
  struct group* found = nullptr;
  std::vector<char> buf(16384);
  if (::getgrnam_r(group.c_str(), &gr, buf.data(), buf.size(), &found) == 0 && found != nullptr) {
    group_ = found->gr_gid;
  } else if (const auto n = decimal(group)) {
    group_ = static_cast<gid_t>(*n);
  } else {
    throw Error(errc::not_found, "multiproc::Permissions: no group called '" + group + "'");
  }
}

Name with_permissions(Name name, const Permissions& permissions) {
  name.permissions_ = permissions;
  return name;
}

Name trust_owner(Name name, uid_t owner) {
  name.trusted_owner_ = owner;
  return name;
}

Name trust_owner(Name name, const std::string& user) {
  struct passwd pw {};
  struct passwd* found = nullptr;
  std::vector<char> buf(16384);
  if (::getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &found) == 0 && found != nullptr) {
    return trust_owner(std::move(name), found->pw_uid);
  }
  if (const auto n = decimal(user)) return trust_owner(std::move(name), static_cast<uid_t>(*n));
  throw Error(errc::not_found, "multiproc::trust_owner: no user called '" + user + "' (to trust '" +
                                   name.str() + "')");
}

namespace {

using detail::SegmentHeader;
using detail::SegmentImpl;
using namespace detail::seg;

[[noreturn]] void fail_truncated(SegmentImpl& impl, const std::string& what, long long file_size) {
  mark_truncated(impl.guard);
  std::string msg = what + ": truncated by another process while mapped";
  if (file_size >= 0) {
    msg += " (the file now has " + std::to_string(file_size) + " bytes, the object " +
           std::to_string(impl.region.get_size()) + ")";
  }
  throw Error(errc::corrupt, msg + "; what it held is lost: remove and re-create it");
}

// Opens and validates; nullptr when the name does not exist.
std::shared_ptr<SegmentImpl> try_open(const Name& name, Kind kind, const ElementType* element,
                                      const std::string& what) {
  const std::string sname = shm_name(name);
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
  check_owner(st, name, what);
  // Already mapped in this process (created or opened here): share that mapping, if the file and
  // its header are still what this process validated.
  bool shared = true;
  if (auto impl = registered(st.st_dev, st.st_ino)) {
    if (impl->truncated()) fail_truncated(*impl, what, static_cast<long long>(st.st_size));
    if (st.st_size < static_cast<off_t>(impl->region.get_size())) {
      fail_truncated(*impl, what, static_cast<long long>(st.st_size));
    }
    SegmentHeader now;
    copy_header(impl->region.get_address(), &now);
    if (impl->truncated()) fail_truncated(*impl, what, -1);  // shrunk since the fstat
    const auto* a = reinterpret_cast<const unsigned char*>(&now);
    const auto* b = reinterpret_cast<const unsigned char*>(&impl->header);
    if (std::memcmp(a + detail::kChecksumBegin, b + detail::kChecksumBegin,
                    detail::kHeaderSize - detail::kChecksumBegin) == 0) {
      validate(impl->header, impl->region.get_size(), what, kind, element);
      return impl;
    }
    // Someone wrote over the header since this process mapped it. The handles open here keep the
    // copy they validated; this open judges the header as it is now, as an unrelated process
    // would, through a mapping of its own (not shared, and never owning the name).
    shared = false;
  }
  // multiproc publishes only complete objects, but a foreign or damaged file may be anything.
  const auto size = static_cast<bip::offset_t>(st.st_size);
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
  impl->guard = guard_mapping(impl->region.get_address(), impl->region.get_size());
  impl->what = what;
  wait_ready(*static_cast<const SegmentHeader*>(impl->region.get_address()), what);
  copy_header(impl->region.get_address(), &impl->header);
  if (impl->truncated()) fail_truncated(*impl, what, -1);
  // The copy is what this process uses from now on: validate it, not the mapped bytes.
  validate(impl->header, impl->region.get_size(), what, kind, element);
  impl->name = name.str();
  impl->file = sname;
  impl->dev = st.st_dev;
  impl->ino = st.st_ino;
  attach(*impl);
  if (shared) register_impl(impl);
  return impl;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Segment

Segment::Segment(std::shared_ptr<detail::SegmentImpl> impl)
    : impl_(std::move(impl)),
      body_(static_cast<char*>(impl_->region.get_address()) + impl_->header.body_offset) {}

Segment Segment::create_anonymous(const SegmentLayout& layout, const Init& init) {
  const std::string what = detail::describe_object(layout.kind, &layout.element, "");
  const std::size_t total = total_size_for(layout, what);
  check_memory(what, total);
  auto impl = new_impl();
  try {
    bip::mapped_region region = bip::anonymous_shared_memory(total);
    impl->region.swap(region);
  } catch (const bip::interprocess_exception& e) {
    rethrow_boost(e, what, "cannot map anonymous shared memory");
  }
  impl->guard = guard_mapping(impl->region.get_address(), impl->region.get_size());
  impl->what = what;
  initialise(impl->region.get_address(), layout, body_offset_for(layout), false, false, init);
  copy_header(impl->region.get_address(), &impl->header);
  return Segment(std::move(impl));
}

Segment Segment::create(const Name& name, const SegmentLayout& layout, const Init& init) {
  const std::string what = detail::describe_object(layout.kind, &layout.element, name.str());
  auto impl = try_create(name, layout, init, what);
  if (!impl) {
    throw Error(errc::already_exists,
                what + ": cannot create: the name is taken by " + taken_by(shm_name(name)) +
                    " (use open_only or open_or_create to share it, or multiproc::remove to "
                    "discard it)");
  }
  return Segment(std::move(impl));
}

Segment Segment::open(const Name& name, Kind kind, const ElementType* element) {
  const std::string what = detail::describe_object(kind, element, name.str());
  auto impl = try_open(name, kind, element, what);
  if (!impl) throw Error(errc::not_found, what + ": cannot open: no object of that name exists");
  return Segment(std::move(impl));
}

Segment Segment::open_or_create(const Name& name, const SegmentLayout& layout, const Init& init,
                                bool* created) {
  const std::string what = detail::describe_object(layout.kind, &layout.element, name.str());
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

const detail::SegmentHeader& Segment::header() const noexcept { return impl_->header; }
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
std::string Segment::prefix() const {
  // file is "mp." + prefix + name (shm_name).
  const std::string& f = impl_->file;
  const std::size_t head = 3, tail = impl_->name.size();
  if (impl_->name.empty() || f.size() < head + tail) return {};
  return f.substr(head, f.size() - head - tail);
}
bool Segment::owns_name() const noexcept {
  return impl_->owns_name && impl_->owner_pid == ::getpid();
}
const std::string& Segment::describe() const noexcept { return impl_->what; }

Segment::FileId Segment::file_id() const noexcept {
  if (!named()) return {};
  return {static_cast<std::uint64_t>(impl_->dev), static_cast<std::uint64_t>(impl_->ino)};
}

bool Segment::stale() const {
  if (!impl_ || impl_->file.empty()) return false;
  struct stat st {};
  if (::stat(file_path(impl_->file).c_str(), &st) != 0) {
    if (errno == ENOENT) return true;  // removed
    throw Error::from_errno(errno, impl_->what + ": cannot look at its name");
  }
  return st.st_dev != impl_->dev || st.st_ino != impl_->ino;  // another object has the name now
}

std::uint64_t Segment::generation() const noexcept { return impl_ ? header().generation : 0; }

std::vector<int> Segment::attached_pids() const {
  if (!impl_ || impl_->file.empty() || impl_->region.get_size() < detail::kPrefixSize) return {};
  auto* table = reinterpret_cast<detail::AttachTable*>(
      static_cast<char*>(impl_->region.get_address()) + detail::kAttachOffset);
  return detail::seg::attached_pids(*table, true);
}


void Segment::fail(errc code, const std::string& message) const {
  throw Error(code, (impl_ ? impl_->what : std::string("multiproc: empty handle")) + ": " + message);
}

bool Segment::truncated() const noexcept { return impl_ && impl_->truncated(); }

void Segment::check_intact() const {
  if (truncated()) {
    fail(errc::corrupt, "truncated by another process while mapped; what it held is lost: "
                        "remove and re-create it");
  }
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
