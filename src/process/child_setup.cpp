// The system-call steps of a child's setup (child_setup.hpp; ChildOptions in
// multiproc/process.hpp).
#include "child_setup.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace multiproc::detail {

// ChildOptions step 1: handlers become SIG_DFL (and ignored signals too when asked).
void reset_signal_dispositions(bool handlers, bool ignored) noexcept {
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    struct sigaction old {};
    if (::sigaction(sig, nullptr, &old) != 0) continue;  // glibc's reserved signals: EINVAL
    const bool ign = !(old.sa_flags & SA_SIGINFO) && old.sa_handler == SIG_IGN;
    const bool dfl = !(old.sa_flags & SA_SIGINFO) && old.sa_handler == SIG_DFL;
    if (dfl || (ign && !ignored) || (!ign && !handlers)) continue;
    struct sigaction sa {};
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    ::sigaction(sig, &sa, nullptr);
  }
}

// ChildOptions step 3: closes every descriptor from 3 up except those in `keep`.
void close_fds_except(std::vector<int> keep) noexcept {
  std::sort(keep.begin(), keep.end());
  unsigned from = 3;
  auto close_span = [](unsigned lo, unsigned hi) {  // [lo, hi]
    if (lo > hi) return;
#ifdef SYS_close_range
    if (::syscall(SYS_close_range, lo, hi, 0) == 0) return;
#endif
    const long max = ::sysconf(_SC_OPEN_MAX);
    const unsigned top = std::min<unsigned>(hi, max > 0 ? static_cast<unsigned>(max) : 65536u);
    for (unsigned fd = lo; fd <= top && fd >= lo; ++fd) ::close(static_cast<int>(fd));
  };
  for (int k : keep) {
    if (k < 0 || static_cast<unsigned>(k) < from) continue;
    close_span(from, static_cast<unsigned>(k) - 1);
    from = static_cast<unsigned>(k) + 1;
  }
  close_span(from, ~0u);
}

// ChildOptions step 4: comm, and the command-line area ps -o args shows.
void set_process_title(const std::string& title) noexcept {
  ::prctl(PR_SET_NAME, title.c_str(), 0, 0, 0);  // the kernel keeps the first 15 bytes
  // /proc/self/stat fields 48 and 49 (Linux >= 3.5) are the start and end of the argv strings.
  char buf[4096];
  const int fd = ::open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ssize_t n = 0;
  for (;;) {
    n = ::read(fd, buf, sizeof buf - 1);
    if (n >= 0 || errno != EINTR) break;
  }
  ::close(fd);
  if (n <= 0) return;
  buf[n] = '\0';
  const char* p = std::strrchr(buf, ')');  // the name may hold spaces and ')'
  if (p == nullptr) return;
  ++p;
  unsigned long long field[2] = {0, 0};
  for (int i = 3; i <= 49; ++i) {  // field 3 (state) is the first after the name
    while (*p == ' ') ++p;
    if (*p == '\0') return;
    char* end = nullptr;
    const unsigned long long v = std::strtoull(p, &end, 10);
    if (i >= 48) field[i - 48] = v;
    while (*p != ' ' && *p != '\0') ++p;
  }
  if (field[0] == 0 || field[1] <= field[0]) return;
  char* area = reinterpret_cast<char*>(static_cast<std::uintptr_t>(field[0]));
  const std::size_t size = static_cast<std::size_t>(field[1] - field[0]);
  // The last byte stays NUL: the kernel then shows exactly the area, up to its first NUL.
  const std::size_t k = std::min(title.size(), size - 1);
  std::memcpy(area, title.data(), k);
  std::memset(area + k, 0, size - k);
}

}  // namespace multiproc::detail
