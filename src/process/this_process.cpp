// The identity caches of multiproc/detail/this_process.hpp: filling them, and clearing them in a
// forked child (the identity stage of the fork-hook list).
#include <multiproc/detail/this_process.hpp>

#include <multiproc/detail/fork_hooks.hpp>

#include "liveness.hpp"

#include <sys/syscall.h>
#include <unistd.h>

namespace multiproc::detail {

void forget_identity() noexcept {
  tls_tid = 0;  // the only thread of a child is the one that forked: its cache is the parent's
  g_cached_pid.store(0, std::memory_order_relaxed);
}

pid_t current_tid_slow() noexcept {
  install_fork_hooks();  // a cache is about to be filled: a child must clear it
  tls_tid = static_cast<pid_t>(::syscall(SYS_gettid));
  return tls_tid;
}

pid_t current_pid_slow() noexcept {
  install_fork_hooks();
  const pid_t pid = ::getpid();
  g_cached_start.store(process_start_time(pid), std::memory_order_relaxed);
  g_cached_pid.store(pid, std::memory_order_release);  // release: the start time is set first
  return pid;
}

}  // namespace multiproc::detail
