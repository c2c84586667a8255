// Private helpers over Linux process facts. Not installed.
//
// The process module lives in src/process/ and multiproc/detail/this_process.hpp: identity
// caches, the ordered fork-hook list (fork_hooks.hpp), the liveness query. This header gathers
// what the rest of src/ asks of it, plus the sleep slices and two small OS helpers. It includes
// no lock header.
#pragma once

#include <multiproc/detail/this_process.hpp>  // current_pid(), current_tid()

#include "process/liveness.hpp"  // Liveness, process_liveness(), thread_liveness()

#include <chrono>
#include <cstdint>
#include <string>
#include <sys/types.h>
#include <vector>

namespace multiproc::detail {

//! This process's start time (cached per pid, so correct in forked children).
inline std::uint64_t self_start_time() noexcept { return current_start_time(); }

//! CPUs this process may run on (sched_getaffinity), at least 1.
int available_cpus() noexcept;

//! Sends sig to each child of this process started with Process whose pid is in pids and that
//! has not been reaped — never to a process that took a reaped child's pid (process.cpp).
void signal_children(const std::vector<pid_t>& pids, int sig) noexcept;

// ---- sleep slices ----------------------------------------------------------------------------
//
// A waiter that can miss its wake-up (its waker died in between, or nothing can wake it) sleeps
// in slices and looks again. The one slice length is kLivenessSlice (100 ms), with next_slice()
// the one helper (both in multiproc/detail/futex.hpp, which every waiter already includes): a
// dead process is noticed within 100 ms, and a sleeper costs 10 wake-ups a second. The lengths
// that differ, and why:
//   exit_poll_slice (below)        1..16 ms: a child's exit has no futex to wake on without a
//                                  pidfd, and join() should return promptly when it ends.
//   kPeerScanInterval (pipe)       20 ms: not a sleep — the most often one process rescans a
//                                  pipe peer's holders, so a busy poll() does not live in /proc.
//   kUnwatchedWordSlice (wait.cpp) 1 ms: without futex_waitv, wait() sleeps on one word only and
//                                  must look at the others that often.

//! How long a waiter that cannot be woken when a child ends (no pidfd) sleeps before it looks at
//! the child's exit status again, in its `round`-th sleep of one wait: 1, 2, 4, 8, then 16 ms.
//! Short at first (a child that ends at once is seen at once), bounded so a long wait costs
//! about 60 wake-ups a second.
inline std::chrono::milliseconds exit_poll_slice(unsigned round) noexcept {
  return std::chrono::milliseconds(1u << (round < 4 ? round : 4));
}

//! In a Process child whose crash signals were reset to their defaults: puts back multiproc's
//! SIGBUS handler for truncated segments (src/segment/fault_guard.cpp), if the parent had it,
//! now chaining to the default action. Async-signal-safe.
void rearm_segment_fault_handler() noexcept;

//! The demangled name of a mangled type name ("i" → "int"); the input if demangling fails.
std::string demangle(const char* mangled);

}  // namespace multiproc::detail
