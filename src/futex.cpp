// Shared futex wait/wake with absolute CLOCK_MONOTONIC deadlines.
#include <multiproc/detail/futex.hpp>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <climits>
#include <ctime>
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace multiproc::detail {

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t),
              "a futex word is a plain 32-bit integer");

bool futex_wait(const std::atomic<std::uint32_t>* word, std::uint32_t expected,
                const Clock::time_point* deadline) noexcept {
  return futex_wait_bitset(word, expected, FUTEX_BITSET_MATCH_ANY, deadline);
}

bool futex_wait_bitset(const std::atomic<std::uint32_t>* word, std::uint32_t expected,
                       std::uint32_t bitset, const Clock::time_point* deadline) noexcept {
  timespec ts{};
  const timespec* tsp = nullptr;
  if (deadline != nullptr && *deadline != Clock::time_point::max()) {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                        deadline->time_since_epoch())
                        .count();
    if (ns <= 0) return false;
    ts.tv_sec = static_cast<time_t>(ns / 1000000000);
    ts.tv_nsec = static_cast<long>(ns % 1000000000);
    tsp = &ts;
  }
  // FUTEX_WAIT_BITSET takes an absolute deadline on CLOCK_MONOTONIC (steady_clock), so a wait
  // that is interrupted and restarted never stretches the caller's timeout.
  const long rc = ::syscall(SYS_futex, const_cast<std::atomic<std::uint32_t>*>(word),
                            FUTEX_WAIT_BITSET, expected, tsp, nullptr, bitset);
  if (rc == -1 && errno == ETIMEDOUT) return false;
  return true;  // woken, EAGAIN (value changed) or EINTR: the caller re-checks
}

int futex_wake_bitset(const std::atomic<std::uint32_t>* word, int count,
                      std::uint32_t mask) noexcept {
  const long rc = ::syscall(SYS_futex, const_cast<std::atomic<std::uint32_t>*>(word),
                            FUTEX_WAKE_BITSET, count, nullptr, nullptr, mask);
  return rc < 0 ? 0 : static_cast<int>(rc);
}

int futex_wake(const std::atomic<std::uint32_t>* word, int count) noexcept {
  const long rc = ::syscall(SYS_futex, const_cast<std::atomic<std::uint32_t>*>(word), FUTEX_WAKE,
                            count, nullptr, nullptr, 0);
  return rc < 0 ? 0 : static_cast<int>(rc);
}

namespace {

// Whether more threads are running than this process may use CPUs, sampled from /proc/loadavg's
// "running/total" field at most every kOversubscriptionCheck (opening and reading it costs a few
// microseconds; a sched_yield() costs a microsecond or more on a VM with page-table isolation, and
// yielding in every long wait made a 2-process pipe round trip ~7 % slower on such a VM).
constexpr std::int64_t kOversubscriptionCheck = 10'000'000;  // ns

bool sample_oversubscribed() noexcept {
  const int fd = ::open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[128];
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  // "0.00 0.01 0.05 3/123 4567": the fourth field's numerator
  const char* p = buf;
  for (int field = 0; field < 3 && p != nullptr; ++field) {
    p = std::strchr(p, ' ');
    if (p != nullptr) ++p;
  }
  if (p == nullptr) return false;
  const long running = std::strtol(p, nullptr, 10);
  cpu_set_t set;
  CPU_ZERO(&set);
  long cpus = ::sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 0;
  if (cpus <= 0) cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  return cpus > 0 && running > cpus;
}

}  // namespace

bool cpus_oversubscribed() noexcept {
  static std::atomic<std::int64_t> next_sample{0};
  static std::atomic<bool> oversubscribed{false};
  const std::int64_t now =
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
  if (now >= next_sample.load(std::memory_order_relaxed)) {
    next_sample.store(now + kOversubscriptionCheck, std::memory_order_relaxed);
    oversubscribed.store(sample_oversubscribed(), std::memory_order_relaxed);
  }
  return oversubscribed.load(std::memory_order_relaxed);
}

void yield_cpu() noexcept { ::sched_yield(); }

}  // namespace multiproc::detail
