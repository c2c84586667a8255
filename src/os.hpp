// Private helpers over Linux process facts. Not installed.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <sys/types.h>

#include <multiproc/detail/mutex_state.hpp>  // current_pid(), current_tid()

namespace multiproc::detail {

//! The start time of `pid` in clock ticks since boot (field 22 of /proc/<pid>/stat), or 0 if
//! unknown. Together with the pid it identifies a process across pid reuse.
std::uint64_t process_start_time(pid_t pid) noexcept;

//! This process's start time (cached per pid, so correct in forked children).
std::uint64_t self_start_time() noexcept;

//! Whether the process (pid, start_time) still runs: it exists, is not a zombie (a leader that
//! exited while other threads run still counts as running), and — when start_time is not 0 —
//! started at that time (so a reused pid does not count).
bool process_alive(pid_t pid, std::uint64_t start_time) noexcept;

//! CPUs this process may run on (sched_getaffinity), at least 1.
int available_cpus() noexcept;

//! Whether thread `tid` of process `pid` still runs (not exited, not a zombie).
bool thread_alive(pid_t pid, pid_t tid) noexcept;

//! How long a waiter that cannot be woken when a child ends (no pidfd) sleeps before it looks at
//! the child's exit status again, in its `round`-th sleep of one wait: 1, 2, 4, 8, then 16 ms.
//! Short at first (a child that ends at once is seen at once), bounded so a long wait costs
//! about 60 wake-ups a second.
inline std::chrono::milliseconds exit_poll_slice(unsigned round) noexcept {
  return std::chrono::milliseconds(1u << (round < 4 ? round : 4));
}

//! The demangled name of a mangled type name ("i" → "int"); the input if demangling fails.
std::string demangle(const char* mangled);

}  // namespace multiproc::detail
