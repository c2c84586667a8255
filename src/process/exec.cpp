// Exec'd children: the handover (what Process::pass and pass_fd record, its text format, and the
// child's side: inherited<T>, inherited_fd). The fork and exec themselves are in process.cpp,
// next to the forked child's.
#include <multiproc/handover.hpp>

#include <cerrno>
#include <cstdlib>
#include <fcntl.h>
#include <mutex>
#include <unistd.h>

namespace multiproc {
namespace detail {
namespace {

bool plain(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

void put_escaped(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (unsigned char c : s) {
    if (plain(c)) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
}

[[noreturn]] void malformed(const std::string& why) {
  throw Error(errc::corrupt, std::string(kHandoverVariable) + " is malformed: " + why);
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

std::string unescape(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) malformed("a cut %XX escape");
    const int hi = hex_digit(s[i + 1]), lo = hex_digit(s[i + 2]);
    if (hi < 0 || lo < 0) malformed("a bad %XX escape");
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  std::size_t from = 0;
  for (;;) {
    const std::size_t at = s.find(sep, from);
    parts.push_back(s.substr(from, at == std::string_view::npos ? std::string_view::npos : at - from));
    if (at == std::string_view::npos) return parts;
    from = at + 1;
  }
}

int parse_int(std::string_view s, int lo, int hi) {
  if (s.empty() || s.size() > 10) malformed("a bad number '" + std::string(s) + "'");
  long v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') malformed("a bad number '" + std::string(s) + "'");
    v = v * 10 + (c - '0');
  }
  if (v < lo || v > hi) malformed("number " + std::string(s) + " out of range");
  return static_cast<int>(v);
}

// This process's handover, parsed once.
const std::vector<HandoverEntry>& own_handover() {
  static const std::vector<HandoverEntry>* entries = [] {
    const char* text = std::getenv(kHandoverVariable);
    return new std::vector<HandoverEntry>(text ? decode_handover(text)
                                               : std::vector<HandoverEntry>{});
  }();
  return *entries;
}

}  // namespace

std::string encode_handover(const std::vector<HandoverEntry>& entries) {
  std::string out = "1";
  for (const auto& e : entries) {
    out += ';';
    out += e.kind;
    out += ',';
    put_escaped(out, e.key);
    out += ',';
    if (e.kind == 'f') {
      out += std::to_string(e.fd);
    } else {
      if (e.kind == 'c') out += std::to_string(e.end) + ",";
      put_escaped(out, e.name);
      if (e.prefix) {
        out += ',';
        put_escaped(out, *e.prefix);
      }
    }
  }
  return out;
}

std::vector<HandoverEntry> decode_handover(std::string_view text) {
  const auto entries = split(text, ';');
  if (entries[0] != "1") malformed("version '" + std::string(entries[0]) + "' is not 1");
  std::vector<HandoverEntry> out;
  for (std::size_t i = 1; i < entries.size(); ++i) {
    const auto f = split(entries[i], ',');
    HandoverEntry e;
    if (f[0].size() != 1) malformed("entry " + std::to_string(i) + " has no kind");
    e.kind = f[0][0];
    const std::size_t want = e.kind == 'c' ? 4 : (e.kind == 'o' || e.kind == 'f') ? 3 : 0;
    if (want == 0) malformed("entry " + std::to_string(i) + " is of unknown kind '" + e.kind + "'");
    // An object or pipe end may carry one more field: the prefix of its file.
    const bool with_prefix = e.kind != 'f' && f.size() == want + 1;
    if (f.size() != want && !with_prefix) {
      malformed("entry " + std::to_string(i) + " has " + std::to_string(f.size()) +
                " fields, not " + std::to_string(want));
    }
    if (with_prefix) e.prefix = unescape(f[want]);
    e.key = unescape(f[1]);
    if (e.key.empty()) malformed("entry " + std::to_string(i) + " has an empty key");
    if (e.kind == 'f') {
      e.fd = parse_int(f[2], 0, 1 << 30);
    } else if (e.kind == 'c') {
      e.end = parse_int(f[2], 0, 1);
      e.name = unescape(f[3]);
    } else {
      e.name = unescape(f[2]);
    }
    out.push_back(std::move(e));
  }
  return out;
}

HandoverEntry inherited_entry(std::string_view key, char kind) {
  const auto& entries = own_handover();
  for (const auto& e : entries) {
    if (e.key != key) continue;
    if ((kind == 'f') != (e.kind == 'f')) {
      throw Error(errc::wrong_kind, "handover '" + std::string(key) + "' is " +
                                        (e.kind == 'f' ? "a file descriptor: use inherited_fd"
                                                       : "an object: use inherited<T>"));
    }
    return e;
  }
  std::string have;
  for (const auto& e : entries) have += (have.empty() ? "" : ", ") + e.key;
  throw Error(errc::not_found,
              "handover '" + std::string(key) + "': not handed to this process (" +
                  (entries.empty() ? std::string("no ") + kHandoverVariable +
                                         ": not started by a Process with a Command that passed any"
                                   : "it has: " + have) +
                  ")");
}

}  // namespace detail

int inherited_fd(std::string_view key) {
  const detail::HandoverEntry e = detail::inherited_entry(key, 'f');
  if (::fcntl(e.fd, F_GETFD) < 0) {
    throw Error::from_errno(errno, "handover '" + std::string(key) + "': descriptor " +
                                       std::to_string(e.fd) + " is not open");
  }
  return e.fd;
}

std::vector<std::string> inherited_keys() {
  std::vector<std::string> keys;
  for (const auto& e : detail::own_handover()) keys.push_back(e.key);
  return keys;
}

// ---- the parent's side ------------------------------------------------------------------------

Process::Process(Command command) : Process(NoTarget{}) {
  if (command.path.empty()) {
    throw Error(errc::invalid_argument, "Process '" + name_ + "': a Command needs a path");
  }
  if (command.argv.empty()) command.argv.push_back(command.path);
  command_ = std::make_unique<Command>(std::move(command));
}

void Process::check_handover(const detail::HandoverEntry& e, const std::string* anonymous) const {
  require_open("pass()");
  if (!command_) {
    throw Error(errc::bad_state, "Process '" + name_ + "': pass('" + e.key +
                                     "'): only a Process running a Command takes a handover "
                                     "(a forked child uses the handles it captures)");
  }
  if (pid_ != 0) {
    throw Error(errc::bad_state, "Process '" + name_ + "': pass('" + e.key + "') after start()");
  }
  if (e.key.empty()) {
    throw Error(errc::invalid_argument, "Process '" + name_ + "': pass() with an empty key");
  }
  for (const auto& h : handover_) {
    if (h.key == e.key) {
      throw Error(errc::invalid_argument,
                  "Process '" + name_ + "': key '" + e.key + "' is already passed");
    }
  }
  if (anonymous != nullptr) {
    throw Error(errc::invalid_argument,
                "Process '" + name_ + "': pass('" + e.key + "'): " + *anonymous +
                    " is anonymous and cannot reach another program: create it with a name");
  }
}

Process& Process::pass_fd(std::string key, int fd) {
  detail::HandoverEntry e;
  e.kind = 'f';
  e.key = std::move(key);
  check_handover(e, nullptr);
  if (fd < 0 || ::fcntl(fd, F_GETFD) < 0) {
    throw Error::from_errno(EBADF, "Process '" + name_ + "': pass_fd('" + e.key + "', " +
                                       std::to_string(fd) + ")");
  }
  e.fd = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (e.fd < 0) {
    throw Error::from_errno(errno, "Process '" + name_ + "': pass_fd('" + e.key + "'): dup failed");
  }
  handover_.push_back(std::move(e));
  return *this;
}

void Process::close_handed_fds() noexcept {
  for (auto& e : handover_) {
    if (e.kind == 'f' && e.fd >= 0) {
      ::close(e.fd);
      e.fd = -1;
    }
  }
}

}  // namespace multiproc
