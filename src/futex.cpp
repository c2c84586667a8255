// Shared futex wait/wake with absolute CLOCK_MONOTONIC deadlines.
#include <multiproc/detail/futex.hpp>

#include <cerrno>
#include <climits>
#include <ctime>
#include <linux/futex.h>
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

}  // namespace multiproc::detail
