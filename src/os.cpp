#include "os.hpp"

#include <multiproc/detail/mutex_state.hpp>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cxxabi.h>
#include <fcntl.h>
#include <memory>
#include <pthread.h>
#include <sched.h>
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

bool thread_alive(pid_t pid, pid_t tid) noexcept {
  char path[96];
  std::snprintf(path, sizeof path, "/proc/%d/task/%d/stat", static_cast<int>(pid), static_cast<int>(tid));
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno != ENOENT && errno != ESRCH;
  char buf[512];
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  const char* p = std::strrchr(buf, ')');
  return p == nullptr || p[1] != ' ' || (p[2] != 'Z' && p[2] != 'X');
}

std::uint64_t process_start_time(pid_t pid) noexcept {
  char state = 0;
  std::uint64_t start = 0;
  return read_stat(pid, &state, &start) ? start : 0;
}

namespace {
void forget_pid() noexcept { g_cached_pid.store(0, std::memory_order_relaxed); }
}  // namespace

pid_t current_pid_slow() noexcept {
  static const bool registered = [] {
    ::pthread_atfork(nullptr, nullptr, &forget_pid);
    return true;
  }();
  (void)registered;
  const pid_t pid = ::getpid();
  g_cached_start.store(process_start_time(pid), std::memory_order_relaxed);
  g_cached_pid.store(pid, std::memory_order_release);  // release: the start time is set first
  return pid;
}

std::uint64_t self_start_time() noexcept { return current_start_time(); }

bool process_alive(pid_t pid, std::uint64_t start_time) noexcept {
  if (pid <= 0) return false;
  if (::kill(pid, 0) != 0 && errno == ESRCH) return false;
  char state = 0;
  std::uint64_t start = 0;
  if (!read_stat(pid, &state, &start)) return true;  // exists but unreadable: assume alive
  if (start_time != 0 && start != start_time) return false;  // the pid was reused
  if (state == 'Z' || state == 'X') return live_threads(pid) > 1;  // a leader that exited while
  return true;                                                     // other threads run is alive
}

int available_cpus() noexcept {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  const long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

std::string demangle(const char* mangled) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> out(abi::__cxa_demangle(mangled, nullptr, nullptr, &status),
                                             std::free);
  return status == 0 && out ? std::string(out.get()) : std::string(mangled);
}

}  // namespace multiproc::detail
