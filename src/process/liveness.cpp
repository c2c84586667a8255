// The liveness query (liveness.hpp): process and thread facts from kill(0) and /proc.
#include "liveness.hpp"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

namespace multiproc::detail {
namespace {

// Reads /proc/<pid>/stat; returns false if it cannot. The command name (field 2) may contain
// spaces and parentheses, so fields are counted from the last ')'.
bool read_stat(pid_t pid, char* state, std::uint64_t* start_time) noexcept {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[1024];
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr || p[1] != ' ') return false;
  p += 2;  // field 3: state
  *state = *p;
  // Field 22 (starttime) is the 20th field after the state field.
  for (int field = 3; field < 22; ++field) {
    p = std::strchr(p, ' ');
    if (p == nullptr) return false;
    ++p;
  }
  *start_time = std::strtoull(p, nullptr, 10);
  return true;
}

// Threads of the process, from /proc/<pid>/status (0 if unknown).
int live_threads(pid_t pid) noexcept {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/status", static_cast<int>(pid));
  FILE* f = std::fopen(path, "r");
  if (f == nullptr) return 0;
  char line[256];
  int threads = 0;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::sscanf(line, "Threads: %d", &threads) == 1) break;
  }
  std::fclose(f);
  return threads;
}

}  // namespace

std::uint64_t process_start_time(pid_t pid) noexcept {
  char state = 0;
  std::uint64_t start = 0;
  return read_stat(pid, &state, &start) ? start : 0;
}

Liveness process_liveness(pid_t pid, std::uint64_t start_time) noexcept {
  if (pid <= 0) return Liveness::dead;
  if (::kill(pid, 0) != 0 && errno == ESRCH) return Liveness::dead;
  char state = 0;
  std::uint64_t start = 0;
  if (!read_stat(pid, &state, &start)) return Liveness::unknown;  // exists, but /proc hides it
  if (start_time != 0 && start != start_time) return Liveness::dead;  // the pid was reused
  if (state == 'Z' || state == 'X') {
    // A leader that exited while other threads run is a zombie that still runs. (Its thread
    // count unreadable: dead, as a zombie.)
    return live_threads(pid) > 1 ? Liveness::alive : Liveness::dead;
  }
  return Liveness::alive;
}

Liveness thread_liveness(pid_t pid, pid_t tid, std::uint64_t start_time) noexcept {
  if (pid <= 0 || tid <= 0) return Liveness::dead;
  if (::kill(pid, 0) != 0 && errno == ESRCH) return Liveness::dead;
  if (start_time != 0) {
    const std::uint64_t start = process_start_time(pid);
    if (start == 0) return Liveness::unknown;  // exists, but /proc hides it
    if (start != start_time) return Liveness::dead;  // the pid was reused
  }
  char path[96];
  std::snprintf(path, sizeof path, "/proc/%d/task/%d/stat", static_cast<int>(pid), static_cast<int>(tid));
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT || errno == ESRCH ? Liveness::dead : Liveness::unknown;
  char buf[512];
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return Liveness::dead;  // the thread went between open and read (ESRCH)
  buf[n] = '\0';
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr || p[1] != ' ') return Liveness::unknown;  // not the format we know
  return p[2] == 'Z' || p[2] == 'X' ? Liveness::dead : Liveness::alive;
}

}  // namespace multiproc::detail
