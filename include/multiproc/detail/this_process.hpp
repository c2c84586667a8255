// multiproc/detail/this_process.hpp — who the calling thread and process are, cached. Private.
//
// getpid() and gettid() are system calls, and the Mutex lock fast path needs the thread id on
// every lock: so both are cached, and so is this process's start time (which, with the pid,
// names this process across pid reuse). A forked child must not keep its parent's values: the
// identity stage of the fork-hook list (fork_hooks.hpp), the first stage to run in every child,
// clears the caches, and the next call refills them.
#pragma once

#include <atomic>
#include <cstdint>
#include <sys/types.h>

//! Marks process-wide state that inline code compiled into a user's objects shares with the
//! library (the caches here, the robust-list head, the fence mode): one object per process even
//! when the user builds with -fvisibility=hidden (otherwise the user's copy and the shared
//! library's copy would differ, and a forked child would keep its parent's thread id in one).
#define MULTIPROC_PROCESS_WIDE [[gnu::visibility("default")]]

namespace multiproc::detail {

//! The calling thread's id (cached per thread, refreshed in forked children).
MULTIPROC_PROCESS_WIDE inline thread_local pid_t tls_tid = 0;
pid_t current_tid_slow() noexcept;
inline pid_t current_tid() noexcept {
  const pid_t t = tls_tid;
  return t != 0 ? t : current_tid_slow();
}

//! This process's pid and start time (cached: getpid() is a system call; refreshed in forked
//! children). Together they name this process across pid reuse.
MULTIPROC_PROCESS_WIDE inline std::atomic<pid_t> g_cached_pid{0};
MULTIPROC_PROCESS_WIDE inline std::atomic<std::uint64_t> g_cached_start{0};
pid_t current_pid_slow() noexcept;
inline pid_t current_pid() noexcept {
  // acquire: pairs with the release in current_pid_slow(); the start time is then set too.
  const pid_t p = g_cached_pid.load(std::memory_order_acquire);
  return p != 0 ? p : current_pid_slow();
}
inline std::uint64_t current_start_time() noexcept {
  (void)current_pid();  // fills both caches
  return g_cached_start.load(std::memory_order_relaxed);
}

//! Clears the caches (the identity stage of a fork, in the child). Async-signal-safe.
void forget_identity() noexcept;

}  // namespace multiproc::detail
