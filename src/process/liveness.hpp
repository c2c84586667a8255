// Private (not installed): is a process, or one of its threads, still running?
//
// One query with three answers. "unknown" is the honest answer when /proc does not tell (hidepid,
// another PID namespace, an unreadable entry): each caller decides what unknown means for it,
// and says so where it calls — usually "alive", since treating a live holder as dead (taking its
// lock, its end, its name) does harm, while treating a dead one as alive only waits longer.
#pragma once

#include <cstdint>
#include <sys/types.h>

namespace multiproc::detail {

enum class Liveness { alive, dead, unknown };

//! Whether the process (pid, start_time) still runs. dead: no such process, a pid <= 0, another
//! start time (the pid was reused; not checked when start_time is 0), or a zombie — unless it is
//! a leader that exited while other threads run, which is alive. unknown: it exists but /proc
//! does not show it to us.
Liveness process_liveness(pid_t pid, std::uint64_t start_time) noexcept;

//! Whether thread `tid` of process `pid` still runs. dead: pid or tid <= 0, no such process or
//! thread, another start time of the process (not checked when start_time is 0), a zombie
//! thread. unknown: /proc does not show the process or the thread to us.
Liveness thread_liveness(pid_t pid, pid_t tid, std::uint64_t start_time) noexcept;

//! The start time of `pid` in clock ticks since boot (field 22 of /proc/<pid>/stat), or 0 if
//! unknown. Together with the pid it identifies a process across pid reuse.
std::uint64_t process_start_time(pid_t pid) noexcept;

}  // namespace multiproc::detail
