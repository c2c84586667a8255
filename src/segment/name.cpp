// Segments: names — validation (Name), persistent(), remove(), exists(), Segment::unlink, and
// how a user's name is spelled in /dev/shm.
#include "segment_impl.hpp"

#include <cerrno>
#include <cstdio>
#include <sys/mman.h>
#include <sys/stat.h>

namespace multiproc {
namespace detail::seg {

namespace {
constexpr const char* kPrefix = "mp.";
}  // namespace

std::string shm_name(const std::string& name) { return kPrefix + name; }  // Boost adds the '/'
std::string shm_path(const std::string& name) { return "/dev/shm/" + shm_name(name); }

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

bool remove(const Name& name) {
  if (::shm_unlink(("/" + shm_name(name.str())).c_str()) == 0) return true;
  if (errno == ENOENT) return false;
  throw Error::from_errno(errno, "multiproc: cannot remove '" + name.str() + "'");
}

bool exists(const Name& name) {
  struct stat st {};
  return ::stat(shm_path(name.str()).c_str(), &st) == 0;
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

}  // namespace multiproc
