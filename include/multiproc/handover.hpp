// multiproc/handover.hpp — in a program started by Process(Command) (process.hpp), getting back
// the objects and descriptors its parent handed over with pass() and pass_fd(), by key.
//
//   // parent                                      // the exec'd program
//   mp::Queue<int> jobs(mp::create_only, "app.jobs", 64);
//   mp::Process w(mp::Command{"/usr/bin/worker"});  auto jobs = mp::inherited<mp::Queue<int>>("jobs");
//   w.pass("jobs", jobs).pass_fd("listen", sock);  int sock = mp::inherited_fd("listen");
//   w.start();
//
// inherited<T>(key) opens the object as T(open_only, name) — so the element type and kind are
// checked as any open checks them — or, for T = Connection, the pipe end that was passed. Each
// call opens a new handle to the same object (cheap: one mapping per object per process).
// inherited_fd(key) returns the descriptor (not close-on-exec; the program owns it).
//
// Format. The parent puts one environment variable in the child's environment:
//   MULTIPROC_HANDOVER=1;<entry>;<entry>...
// where "1" is the format version and each entry is one of
//   o,<key>,<name>[,<prefix>]        a multiproc object, opened by its name
//   c,<key>,<end>,<name>[,<prefix>]  one end of a named Pipe: <end> is 0 (PipeEnd::first) or 1
//   f,<key>,<fd>                     a file descriptor, inherited under that number
// <prefix> is the name prefix the object's file is spelled with in the parent (Segment::prefix),
// which the program uses for it whatever its own MULTIPROC_PREFIX (an object made under another
// prefix, or before set_name_prefix() changed it, was not found); without it (a handover written
// by an older build), the program's own prefix.
// Keys and names are percent-encoded: every byte but A-Z a-z 0-9 . _ - is written %XX (upper-
// case hex), so ',' ';' and '%' never appear inside a field. A Command's own MULTIPROC_HANDOVER
// entry is replaced (a program started with no objects gets none); the variable is left in the
// program's environment, so a program it starts with a plain exec (not Process) would inherit a
// description that is no longer true there.
//
// Throws (all three): Error(errc::not_found) naming the key — and the keys there are — when it was
// not handed over, or when this process was not started with a handover at all;
// Error(errc::wrong_kind) when the key names a descriptor and an object is asked for, or the
// reverse; Error(errc::corrupt) when the variable does not follow the format; what the open
// throws (not_found if the object's name is gone, type_mismatch for another T, ...);
// inherited_fd: Error(EBADF) naming the key if the descriptor is no longer open.
#pragma once

#include <multiproc/pipe.hpp>
#include <multiproc/process.hpp>
#include <multiproc/segment.hpp>

#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace multiproc {

//! The environment variable that carries the handover (see the format above).
inline constexpr const char* kHandoverVariable = "MULTIPROC_HANDOVER";

namespace detail {
//! The format's text for these entries (without the variable name).
std::string encode_handover(const std::vector<HandoverEntry>& entries);
//! Parses the format. Throws: Error(errc::corrupt) naming what is wrong.
std::vector<HandoverEntry> decode_handover(std::string_view text);
//! The entry of this process's handover under `key`, which must be of kind `kind` ('o' for an
//! object or pipe end, 'f' for a descriptor). Throws: as the header comment says.
HandoverEntry inherited_entry(std::string_view key, char kind);
//! The name to open a handed-over object by: spelled with the prefix its file had in the parent
//! when the entry says it (else this process's prefix).
inline Name handed_name(const HandoverEntry& e) {
  return e.prefix ? with_prefix(Name(e.name), *e.prefix) : Name(e.name);
}
}  // namespace detail

//! Returns: the object handed over under `key`, opened as T (a Connection for a pipe end).
template <class T>
T inherited(std::string_view key) {
  const detail::HandoverEntry e = detail::inherited_entry(key, 'o');
  if constexpr (std::is_same_v<T, Connection>) {
    if (e.kind != 'c') {
      throw Error(errc::wrong_kind, "handover '" + std::string(key) +
                                        "': an object, not a pipe end (open it as its own type)");
    }
    return Connection(open_only, detail::handed_name(e), e.end == 0 ? PipeEnd::first : PipeEnd::second);
  } else {
    if (e.kind == 'c') {
      throw Error(errc::wrong_kind, "handover '" + std::string(key) +
                                        "': a pipe end: use inherited<Connection>");
    }
    return T(open_only, detail::handed_name(e));
  }
}

//! Returns: the file descriptor handed over under `key`.
int inherited_fd(std::string_view key);

//! Returns: every key handed to this process, in the order they were passed (empty when none).
std::vector<std::string> inherited_keys();

}  // namespace multiproc
